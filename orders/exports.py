"""CSV exports for accounting, streamed: the order list as filtered in the admin, and the margin report.

Rows are written one at a time from `.iterator()` queries into a StreamingHttpResponse, so a
large export never holds the table in memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBadRequest, StreamingHttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.translation import gettext

from orders.models import Order
from orders.reports import ReportPeriod, margin_report_rows

# Rows fetched per round trip by the order export.
CHUNK_SIZE = 2000
# What a spreadsheet reads as a formula (or, for tab and CR, what starts one in some apps).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

ORDER_COLUMNS = (
    "reference", "created_at", "paid_at", "delivered_at", "status", "channel", "payment_method",
    "package", "stars", "price", "cost", "payment_fee", "margin", "currency", "recipient",
    "recipient_user_id", "supplier_order_id",
)
ORDER_FIELDS = (
    "reference", "created_at", "paid_at", "delivered_at", "status", "channel", "payment_method",
    "package_name", "stars", "price", "cost", "payment_fee", "currency", "recipient_username",
    "recipient_user_id", "supplier_order_id",
)
MARGIN_COLUMNS = (
    "date", "channel", "payment_method", "package", "currency", "orders", "stars", "revenue",
    "supplier_cost", "payment_fees", "net_margin", "net_margin_percent",
)


def csv_cell(value: Any) -> str | int | Decimal:
    """A value as a CSV cell; text that a spreadsheet would run as a formula gets a leading '.

    Only text is guarded: numbers are ours (a negative margin such as -0.01 stays a number a
    spreadsheet can add up), and the text is what buyers and providers typed or sent.
    """
    if value is None:
        return ""
    if isinstance(value, datetime):
        # To the second, in the shop's time zone with its offset: as the admin shows it.
        return timezone.localtime(value).replace(microsecond=0).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | Decimal):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


class _Echo:
    """A file-like object whose write returns the line: csv.writer then yields instead of buffering."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """The header, then each row, as CSV lines made one at a time."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([csv_cell(value) for value in row])


def csv_response(lines: Iterator[str], filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def order_rows(orders: Iterable[Order]) -> Iterator[list[Any]]:
    """One CSV row per order; the margin is Order.margin (zero for refunded and unpaid orders)."""
    for order in orders:
        yield [order.reference, order.created_at, order.paid_at, order.delivered_at, order.status,
               order.channel, order.payment_method, order.package_name, order.stars, order.price,
               order.cost, order.payment_fee, order.margin, order.currency,
               order.recipient_display, order.recipient_user_id, order.supplier_order_id]


def margin_report_lines(period: ReportPeriod) -> Iterator[str]:
    """The margin report as CSV lines: one per day × channel × method × package × currency."""
    rows = ([row.day, row.channel, row.payment_method, row.package, row.line.currency,
             row.line.orders, row.line.stars, row.line.revenue, row.line.cost, row.line.fees,
             row.line.net, row.line.net_percent]
            for row in margin_report_rows(period))
    return csv_lines(MARGIN_COLUMNS, rows)


def margin_report_filename(period: ReportPeriod) -> str:
    return f"margin-{period.date_from.isoformat()}-{period.date_to.isoformat()}.csv"


class OrderExportMixin(admin.ModelAdmin):
    """An order ModelAdmin's "Export CSV": the changelist's own filters and search, every page.

    The link (templates/admin/orders/order/change_list.html) carries the changelist's query
    string; the queryset is built by the changelist itself, so whatever the list shows (filters,
    date hierarchy, search, ordering) is what is exported.
    """

    def get_urls(self) -> list[URLPattern]:
        urls = super().get_urls()
        export = path("export/", self.admin_site.admin_view(self.export_csv_view),
                      name="orders_order_export")
        return [export, *urls]

    def export_csv_view(self, request: HttpRequest) -> StreamingHttpResponse | HttpResponseBadRequest:
        if not (request.user.has_perm("orders.export_order")
                and self.has_view_or_change_permission(request)):
            raise PermissionDenied
        # Every page: the list's page number is not a filter.
        query = request.GET.copy()
        query.pop(PAGE_VAR, None)
        request.GET = query  # type: ignore[assignment]
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest(gettext("These filters are not valid for the order list."))
        orders = (changelist.queryset.select_related(None).prefetch_related(None)
                  .only(*ORDER_FIELDS).iterator(chunk_size=CHUNK_SIZE))
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        return csv_response(csv_lines(ORDER_COLUMNS, order_rows(orders)), f"orders-{stamp}.csv")
