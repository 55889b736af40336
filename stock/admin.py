"""The console's money-and-stock pages: balance readings (and "check now"), thresholds, alerts,
and the reconciliation queue. Every write goes through stock.services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext, gettext_lazy as _, ngettext
from django.views.decorators.http import require_POST

from orders.admin import to_the_second
from stock import services
from stock.models import BalanceAlert, BalanceReading, BalanceThreshold, ReconciliationMismatch


def _time_column(field_name: str, description: Any) -> Any:
    @admin.display(description=description, ordering=field_name)
    def column(model_admin: Any, row: Any) -> str | None:
        return to_the_second(getattr(row, field_name))

    return column


class _ReadOnly(admin.ModelAdmin):
    """Rows written only by the services: nobody adds, edits or deletes them here."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BalanceReading)
class BalanceReadingAdmin(_ReadOnly):
    list_display = ("supplier_code", "checked", "ok", "amount", "currency", "spent_in_window",
                    "window_hours", "error_code", "error_message")
    list_filter = ("supplier_code", "ok", "error_code")
    ordering = ("-checked_at", "-id")
    checked = _time_column("checked_at", _("Checked at"))

    def get_urls(self) -> list[URLPattern]:
        check = path("check/", self.admin_site.admin_view(require_POST(self.check_view)),
                     name="stock_balancereading_check")
        return [check, *super().get_urls()]

    def check_view(self, request: HttpRequest) -> HttpResponseRedirect:
        """Read the supplier balance now (POST), then go back where the operator was."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        reading = services.balance_check()
        if reading.ok:
            self.message_user(request, gettext("Supplier balance: %(amount)s %(currency)s.") % {
                "amount": reading.amount, "currency": reading.currency}, messages.SUCCESS)
        else:
            self.message_user(request, gettext("The supplier balance could not be read: "
                                               "%(error)s.") % {"error": reading.error_code},
                              messages.ERROR)
        # Only back to a page of this site: the referrer is whatever the browser sent.
        back = request.POST.get("next", "")
        return HttpResponseRedirect(back if back.startswith("/") and not back.startswith("//")
                                    else reverse("admin:index"))


@admin.register(BalanceThreshold)
class BalanceThresholdAdmin(admin.ModelAdmin):
    list_display = ("supplier_code", "amount", "currency", "is_low", "crossed", "restored")
    readonly_fields = ("is_low", "crossed", "restored", "reading", "updated")
    crossed = _time_column("crossed_at", _("Went under at"))
    restored = _time_column("restored_at", _("Restored at"))
    reading = _time_column("reading_at", _("Last reading judged"))
    updated = _time_column("updated_at", _("Updated at"))

    def get_readonly_fields(self, request: HttpRequest, obj: BalanceThreshold | None = None) -> Any:
        # The supplier a threshold belongs to is chosen once, when it is added.
        return self.readonly_fields + (("supplier_code",) if obj is not None else ())

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the alert's state lives on the row: change the amount instead

    def save_model(self, request: HttpRequest, obj: BalanceThreshold, form: Any, change: bool) -> None:
        services.balance_threshold_set(threshold=obj)


@admin.register(BalanceAlert)
class BalanceAlertAdmin(_ReadOnly):
    list_display = ("created", "supplier_code", "kind", "amount", "currency", "threshold",
                    "hours_left", "outcome", "error")
    list_filter = ("kind", "outcome", "supplier_code")
    created = _time_column("created_at", _("Created at"))


@admin.register(ReconciliationMismatch)
class ReconciliationMismatchAdmin(admin.ModelAdmin):
    """The reconciliation queue: Operators read each mismatch, note what they did, resolve it."""

    list_display = ("day", "kind", "reference", "order", "supplier_order_id", "resolved",
                    "found")
    list_filter = ("resolved", "kind", ("day", admin.DateFieldListFilter), "supplier_code")
    search_fields = ("=reference", "=supplier_order_id", "=order__reference")
    list_select_related = ("order",)
    actions = ["mark_resolved"]
    fields = ("day", "supplier_code", "kind", "reference", "order", "supplier_order_id", "ours",
              "theirs", "found", "resolved", "resolved_when", "resolved_by", "note")
    found = _time_column("created_at", _("Found at"))
    resolved_when = _time_column("resolved_at", _("Resolved at"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [name for name in self.fields if name not in ("resolved", "note")]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # found by the reconciliation job only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a resolved mismatch stays, with its note, as the record

    def save_model(self, request: HttpRequest, obj: ReconciliationMismatch, form: Any,
                   change: bool) -> None:
        services.mismatch_update(mismatch_id=obj.pk, resolved=obj.resolved, note=obj.note,
                                 user=request.user)

    @admin.action(description=_("Mark resolved"), permissions=["change"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[ReconciliationMismatch]) -> None:
        open_ones = list(queryset.filter(resolved=False))
        resolved = services.mismatches_resolve(mismatch_ids=[m.pk for m in open_ones],
                                               user=request.user)
        for mismatch in open_ones:
            self.log_change(request, mismatch, gettext("Marked resolved"))
        self.message_user(request, ngettext(
            "%(count)s mismatch marked resolved.", "%(count)s mismatches marked resolved.",
            resolved) % {"count": resolved}, messages.SUCCESS)
        already = queryset.count() - len(open_ones)
        if already:
            self.message_user(request, ngettext(
                "%(count)s was resolved already.", "%(count)s were resolved already.",
                already) % {"count": already}, messages.WARNING)
