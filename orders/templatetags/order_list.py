"""The order list's date navigation and rows, without the work that grows with the table.

Django's date hierarchy lists the years, months or days that have orders with SELECT DISTINCT
over the list's whole queryset: a scan of the orders table on every page view, growing with
it. This one offers every period between the first and the last order of the table (two ends
of the creation-time index) instead; a period without orders shows an empty list.
"""

import calendar
import datetime
from collections.abc import Callable
from typing import Any

from django import template
from django.contrib.admin.templatetags import admin_list
from django.contrib.admin.templatetags.admin_list import ResultList
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import display_for_field, display_for_value, quote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Max, Min, Model
from django.utils import formats, timezone
from django.utils.html import conditional_escape, escape
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext as _

register = template.Library()


def _table_dates(cl: ChangeList, field_name: str) -> tuple[datetime.date, datetime.date] | None:
    """The first and last dates of the whole table (not the filtered list): index ends only."""
    bounds = cl.root_queryset.aggregate(first=Min(field_name), last=Max(field_name))
    if bounds["first"] is None or bounds["last"] is None:
        return None
    first, last = (timezone.localtime(value) if timezone.is_aware(value) else value
                   for value in (bounds["first"], bounds["last"]))
    return first.date(), last.date()


@register.inclusion_tag("admin/date_hierarchy.html")
def order_date_hierarchy(cl: ChangeList) -> dict[str, Any]:
    """The context Django's `date_hierarchy` tag gives admin/date_hierarchy.html."""
    field_name = cl.date_hierarchy
    year_field, month_field, day_field = (f"{field_name}__{part}"
                                          for part in ("year", "month", "day"))

    def link(filters: dict[str, Any]) -> str:
        return cl.get_query_string(filters, [f"{field_name}__"])

    def lookup(name: str) -> int | None:
        value = cl.params.get(name)
        if isinstance(value, list):
            value = value[-1]
        return int(value) if value else None

    year, month, day = lookup(year_field), lookup(month_field), lookup(day_field)
    span = _table_dates(cl, field_name)
    if span is None and not year:
        return {"show": False}
    if not year and span is not None and span[0].year == span[1].year:
        year = span[0].year  # one year of orders: start at its months, as Django does
        if span[0].month == span[1].month:
            month = span[0].month
    first, last = span or (datetime.date.min, datetime.date.max)

    if year and month and day:
        date = datetime.date(year, month, day)
        return {"show": True,
                "back": {"link": link({year_field: year, month_field: month}),
                         "title": capfirst(formats.date_format(date, "YEAR_MONTH_FORMAT"))},
                "choices": [{"title": capfirst(formats.date_format(date, "MONTH_DAY_FORMAT"))}]}
    if year and month:
        days = [datetime.date(year, month, number)
                for number in range(1, calendar.monthrange(year, month)[1] + 1)]
        return {"show": True, "back": {"link": link({year_field: year}), "title": str(year)},
                "choices": [{"link": link({year_field: year, month_field: month,
                                           day_field: date.day}),
                             "title": capfirst(formats.date_format(date, "MONTH_DAY_FORMAT"))}
                            for date in days if first <= date <= last]}
    if year:
        months = [datetime.date(year, number, 1) for number in range(1, 13)]
        return {"show": True, "back": {"link": link({}), "title": _("All dates")},
                "choices": [{"link": link({year_field: year, month_field: date.month}),
                             "title": capfirst(formats.date_format(date, "YEAR_MONTH_FORMAT"))}
                            for date in months
                            if (first.year, first.month) <= (year, date.month)
                            <= (last.year, last.month)]}
    return {"show": True, "back": None,
            "choices": [{"link": link({year_field: str(number)}), "title": str(number)}
                        for number in range(first.year, last.year + 1)]}


# --- The rows ----------------------------------------------------------------------------
# Django's items_for_result works out each cell from scratch: which field or method the column
# is, its choices (a dict built per cell), the row's change URL (reverse and the preserved
# filters' resolve, per row), format_html's lazy-aware escaping. That is most of the list
# page's time. order_rows works out the columns once per page and builds the same HTML;
# anything the order list does not use (list_editable, popups, relations, properties) goes
# to Django's own. test_admin_list.py compares the two, cell for cell.


def _columns(cl: ChangeList) -> list[dict[str, Any]] | None:
    """Per column, what its cells need; None when Django's own rendering is needed."""
    if cl.formset is not None or cl.is_popup or cl.to_field or cl.list_display_links is None:
        return None
    opts, model_admin = cl.model._meta, cl.model_admin
    empty = model_admin.get_empty_value_display()
    columns = []
    for name in cl.list_display:
        if not isinstance(name, str):
            return None
        column: dict[str, Any] = {
            "name": name, "classes": [f"field-{name}"], "empty": empty,
            "link": name in cl.list_display_links}
        try:
            field = opts.get_field(name)
        except FieldDoesNotExist:
            attr = getattr(model_admin, name, None)
            if attr is None or not callable(attr) or name == "__str__":
                return None
            if name == "action_checkbox":
                column["classes"] = ["action-checkbox"]
            column.update(method=attr, boolean=getattr(attr, "boolean", False),
                          empty=getattr(attr, "empty_value_display", empty))
        else:
            if (not isinstance(field, models.Field) or field.is_relation or field.auto_created
                    or isinstance(field, (models.BooleanField, models.FileField,
                                          models.URLField, models.JSONField))):
                return None
            column.update(field=field, attname=field.attname,
                          choices=dict(field.flatchoices) if field.flatchoices else None)
            if isinstance(field, (models.DateField, models.TimeField)):
                column["classes"].append("nowrap")
        columns.append(column)
    return columns


def _change_url(cl: ChangeList, sample: Model) -> Callable[[Model], str]:
    """The row's change URL with the list's filters kept, as Django's list links it."""
    preserved: dict[str, Any] = {"preserved_filters": cl.preserved_filters, "opts": cl.opts}
    url = cl.url_for_result(sample)
    with_filters = add_preserved_filters(preserved, url)
    pk = quote(getattr(sample, cl.pk_attname))
    prefix, _, rest = url.rpartition(f"/{pk}/")
    if not prefix or with_filters[:len(url)] != url:  # an unusual URL: ask Django per row
        return lambda row: add_preserved_filters(preserved, cl.url_for_result(row))
    suffix = "/" + rest + with_filters[len(url):]
    return lambda row: f"{prefix}/{quote(getattr(row, cl.pk_attname))}{suffix}"


def order_rows(cl: ChangeList) -> list[ResultList]:
    """The list's rows as Django's `results` renders them: a list of <td>/<th> per row."""
    rows = list(cl.result_list)
    columns = _columns(cl) if rows else None
    if columns is None:
        return list(admin_list.results(cl))
    change_url = _change_url(cl, rows[0])
    rendered = []
    for row in rows:
        cells = []
        first = True
        for column in columns:
            classes = column["classes"]
            if "method" in column:
                value = column["method"](row)
                if isinstance(value, str) and value.strip() == "":
                    value = ""
                text = display_for_value(value, column["empty"], column["boolean"])
                if isinstance(value, (datetime.date, datetime.time)):
                    classes = [*classes, "nowrap"]
            else:
                value = getattr(row, column["attname"])
                if isinstance(value, str) and value.strip() == "":
                    value = ""
                if column["choices"] is not None:
                    text = column["choices"].get(value, column["empty"])
                else:
                    text = display_for_field(value, column["field"], column["empty"],
                                             avoid_link=column["link"])
            row_class = ' class="{}"'.format(" ".join(classes))
            if column["link"]:
                tag = "th" if first else "td"
                first = False
                # Every value is escaped; the tag and classes are the admin's own column names.
                cells.append(mark_safe(  # nosec B308 B703
                    f'<{tag}{row_class}><a href="{escape(change_url(row))}">'
                    f"{conditional_escape(text)}</a></{tag}>"))
            else:
                cells.append(mark_safe(  # nosec B308 B703  (escaped as above)
                    f"<td{row_class}>{conditional_escape(text)}</td>"))
        rendered.append(ResultList(None, cells))
    return rendered


@register.inclusion_tag("admin/change_list_results.html")
def order_result_list(cl: ChangeList) -> dict[str, Any]:
    """Django's `result_list` tag with the rows of order_rows."""
    headers = list(admin_list.result_headers(cl))
    return {
        "cl": cl,
        "result_hidden_fields": list(admin_list.result_hidden_fields(cl)),
        "result_headers": headers,
        "num_sorted_fields": sum(1 for header in headers
                                 if header["sortable"] and header["sorted"]),
        "results": order_rows(cl),
    }
