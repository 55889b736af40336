"""The admin dashboard (/admin/dashboard/) and its margin report CSV: figures for a chosen period.

Thin doors: the form parses the period and filters, orders.reports computes, the template and
static/js/dashboard.js (Chart.js, served locally) draw. Both need `orders.view_report`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBadRequest, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext, gettext_lazy as _

from orders.exports import csv_response, margin_report_filename, margin_report_lines
from orders.models import Channel
from orders.reports import ReportPeriod, dashboard_figures, period_default, report_package_names
from stock import selectors as stock_selectors

REPORT_PERMISSION = "orders.view_report"
# A longer period is refused: the per-day chart and the margin report stay readable.
MAX_PERIOD_DAYS = 366


class ReportPeriodForm(forms.Form):
    """The dashboard's period (shop time zone, both days included) and optional filters."""

    date_from = forms.DateField(label=_("From"), required=False,
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), required=False,
                              widget=forms.DateInput(attrs={"type": "date"}))
    channel = forms.ChoiceField(label=_("Channel"), required=False)
    payment_method = forms.ChoiceField(label=_("Payment method"), required=False)
    package = forms.ChoiceField(label=_("Package"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        everything = [("", gettext("All"))]
        choices = {
            "channel": list(Channel.choices),
            "payment_method": [(code, conf.get("label", code))
                               for code, conf in settings.PAYMENT_METHODS.items()],
            "package": [(name, name) for name in report_package_names()],
        }
        for name, values in choices.items():
            cast(forms.ChoiceField, self.fields[name]).choices = everything + values

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        default = period_default()
        date_from, date_to = cleaned.get("date_from"), cleaned.get("date_to")
        # One end given: the other makes a default-length period with it (up to today).
        if date_from is None:
            date_from = default.date_from if date_to is None else date_to - (
                default.date_to - default.date_from)
        if date_to is None:
            date_to = max(default.date_to, date_from)
        if date_from > date_to:
            raise forms.ValidationError(gettext("The period ends before it starts."))
        if date_to - date_from > timedelta(days=MAX_PERIOD_DAYS - 1):
            raise forms.ValidationError(
                gettext("Choose a period of at most %(days)s days.") % {"days": MAX_PERIOD_DAYS})
        cleaned["date_from"], cleaned["date_to"] = date_from, date_to
        return cleaned

    def period(self) -> ReportPeriod:
        """The chosen period; the default one (last 7 days, no filters) if the form is invalid."""
        if not self.is_valid():
            return period_default()
        data = self.cleaned_data
        return ReportPeriod(date_from=data["date_from"], date_to=data["date_to"],
                            channel=data.get("channel") or "",
                            payment_method=data.get("payment_method") or "",
                            package=data.get("package") or "")


def _require_report_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(REPORT_PERMISSION):
        raise PermissionDenied


def dashboard_view(request: HttpRequest, *, site: AdminSite) -> TemplateResponse:
    """Revenue, costs, fees and margin, per day and split, with delivery times and outcome rates."""
    _require_report_permission(request)
    default = period_default()
    form = ReportPeriodForm(request.GET or None,
                            initial={"date_from": default.date_from, "date_to": default.date_to})
    period = form.period()
    dashboard = dashboard_figures(period)
    context = {
        **site.each_context(request),
        "title": gettext("Dashboard"),
        "form": form,
        "period": period,
        "dashboard": dashboard,
        # The charts' words travel with their data, translated here, not in the script.
        "chart_data": {**dashboard.chart_data(), "labels": {
            "placed": gettext("Orders placed"), "sold": gettext("Orders sold"),
            "stars": gettext("Stars sold"), "orders_title": gettext("Orders and Stars per day"),
            "revenue": gettext("Revenue"), "net": gettext("Net margin"),
            "money_title": gettext("Revenue and net margin per day"),
        }},
        "breakdowns": [
            (gettext("By channel"), dashboard.by_channel),
            (gettext("By payment method"), dashboard.by_method),
            (gettext("By package"), dashboard.by_package),
        ],
        "margin_report_query": request.GET.urlencode(),
        # As last read by the balance check (stock); None before the first reading.
        "supplier_balance": stock_selectors.balance_latest(),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)


def margin_report_view(request: HttpRequest) -> StreamingHttpResponse | HttpResponseBadRequest:
    """The margin report of the dashboard's period and filters, as a streamed CSV."""
    _require_report_permission(request)
    form = ReportPeriodForm(request.GET or None)
    if request.GET and not form.is_valid():
        # Never another period than the one asked for: accounting would not notice.
        return HttpResponseBadRequest(" ".join(
            str(error) for errors in form.errors.values() for error in errors))
    period = form.period()
    return csv_response(margin_report_lines(period), margin_report_filename(period))
