"""The admin order list's same-run reference: a bare Django view of the newest 100 orders.

What bare Django does for the same request: the session's staff user (the same middleware
stack as the admin), one ORM query for a page of the order table's list columns by the
indexed creation time, and a plain template table of them. No admin, no filters, no counts.
"""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.urls import path

from orders.models import Order

COLUMNS = ("reference", "status", "channel", "stars", "recipient_username", "price", "currency",
           "payment_method", "created_at", "status_changed_at")
PAGE = 100

_TABLE = engines["django"].from_string(
    "<!doctype html><title>Orders</title><table>"
    "{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>"
    "{% endfor %}</table>")


def order_list_bare(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied
    rows = Order.objects.order_by("-created_at").values_list(*COLUMNS)[:PAGE]
    return HttpResponse(_TABLE.render({"rows": rows}, request))


urlpatterns = [path("admin-orders/", order_list_bare, name="bench_admin_orders")]
