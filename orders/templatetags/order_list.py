"""The order list's date navigation, without reading every order's date.

Django's date hierarchy lists the years, months or days that have orders with SELECT DISTINCT
over the list's whole queryset: a scan of the orders table on every page view, growing with
it. This one offers every period between the first and the last order of the table (two ends
of the creation-time index) instead; a period without orders shows an empty list.
"""

import calendar
import datetime
from typing import Any

from django import template
from django.contrib.admin.views.main import ChangeList
from django.db.models import Max, Min
from django.utils import formats, timezone
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
