"""Same-run reference views: what bare Django does in the same gunicorn, for the ratios.

Each one does the least Django work that answers the same kind of request as the shop's page
it is compared with, and nothing of the shop: no middleware is skipped (they go through the
same stack), no shop code is called.

- ``catalog/``: 20 rows read with the ORM and rendered by a Django template, the shape of
  the catalog page (a product, its packages and a form) without any of the shop's work.
  The rows are auth's permissions, which every migrated database has (well over 20).
- ``insert/``: one row inserted with the ORM per POST, the least a request that places
  something can do (the buyer path's reference). The row is a django.contrib.sessions
  Session, a table of Django's own with no foreign keys; it is not CSRF-checked, as a bare
  view would not be.
"""

import secrets
from datetime import timedelta

from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

CATALOG_ROWS = 20

_CATALOG = engines["django"].from_string(
    "<!doctype html><html><head><title>Reference</title></head><body><h1>Rows</h1><ul>"
    "{% for row in rows %}<li><span>{{ row.pk }}</span> <span>{{ row.name }}</span> "
    "<span>{{ row.codename }}</span></li>{% endfor %}</ul></body></html>"
)


@require_safe
def catalog(request: HttpRequest) -> HttpResponse:
    """20 rows through the ORM and a template: the bare shape of the catalog page."""
    rows = list(Permission.objects.order_by("pk")[:CATALOG_ROWS])
    return HttpResponse(_CATALOG.render({"rows": rows}, request))


@csrf_exempt
@require_POST
def insert(request: HttpRequest) -> HttpResponse:
    """One row inserted through the ORM: the bare shape of a request that places something."""
    Session.objects.create(session_key=secrets.token_hex(16), session_data="",
                           expire_date=timezone.now() + timedelta(days=1))
    return HttpResponse("ok")


urlpatterns: list = [
    path("catalog/", catalog, name="bench_catalog"),
    path("insert/", insert, name="bench_insert"),
]
