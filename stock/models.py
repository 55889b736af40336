"""The supplier account as the shop watches it: balance readings, the low-balance threshold and
its alerts, and the daily reconciliation's mismatches."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class BalanceReading(models.Model):
    """One read of our wallet at a supplier: the amount, or the error that stopped it.

    `spent_in_window` is the supplier cost of the orders delivered in the `window_hours`
    before the reading, kept with it so "hours of sales left" is what it was at that moment.
    """

    supplier_code = models.CharField(_("supplier"), max_length=50)
    checked_at = models.DateTimeField(_("checked at"), default=timezone.now)
    ok = models.BooleanField(_("read"), default=True)
    amount = models.DecimalField(_("balance"), max_digits=12, decimal_places=2,
                                 null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    spent_in_window = models.DecimalField(_("cost delivered in the window"), max_digits=12,
                                          decimal_places=2, default=0)
    window_hours = models.PositiveIntegerField(_("window (hours)"), default=24)
    error_code = models.CharField(_("error code"), max_length=50, blank=True)
    error_message = models.CharField(_("error"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("supplier balance reading")
        verbose_name_plural = _("supplier balance readings")
        ordering = ["-checked_at", "-id"]
        indexes = [models.Index(fields=["supplier_code", "-checked_at"],
                                name="reading_supplier_time_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(ok=False) | Q(amount__isnull=False),
                                   name="reading_ok_has_amount"),
        ]

    def __str__(self) -> str:
        what = f"{self.amount} {self.currency}" if self.ok else self.error_code
        return f"{self.supplier_code}: {what} at {self.checked_at:%Y-%m-%d %H:%M:%S}"


class BalanceThreshold(models.Model):
    """A supplier's low-balance threshold (set by Managers) and where its alert stands.

    `is_low` is the alert's state: set, with one alert, when a reading falls under `amount`;
    cleared, with a "restored" alert, once a reading is back at `amount` plus
    SUPPLIER_LOW_BALANCE_REARM_PERCENT. `reading_at` is the newest reading judged, so an
    older reading that commits late never overrules a newer one.
    """

    supplier_code = models.CharField(_("supplier"), max_length=50, unique=True,
                                     help_text=_("Matches the SUPPLIER_CODE setting."))
    amount = models.DecimalField(_("threshold"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    is_low = models.BooleanField(_("under the threshold (alerted)"), default=False,
                                 editable=False)
    reading_at = models.DateTimeField(_("last reading judged"), null=True, blank=True,
                                      editable=False)
    crossed_at = models.DateTimeField(_("went under at"), null=True, blank=True, editable=False)
    restored_at = models.DateTimeField(_("restored at"), null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("low-balance threshold")
        verbose_name_plural = _("low-balance thresholds")
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="threshold_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.supplier_code}: {self.amount} {self.currency}"


class BalanceAlert(models.Model):
    """One low-balance or balance-restored alert, and how sending it to the operators went."""

    class Kind(models.TextChoices):
        LOW = "low", _("Balance low")
        RESTORED = "restored", _("Balance restored")

    class Outcome(models.TextChoices):
        PENDING = "pending", _("Not sent yet")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Not sent (no operators' chat)")

    supplier_code = models.CharField(_("supplier"), max_length=50)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    reading = models.ForeignKey(BalanceReading, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="alerts", verbose_name=_("reading"))
    amount = models.DecimalField(_("balance"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3)
    threshold = models.DecimalField(_("threshold"), max_digits=12, decimal_places=2)
    hours_left = models.DecimalField(_("hours of sales left"), max_digits=10, decimal_places=1,
                                     null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices,
                               default=Outcome.PENDING)
    chat_id = models.CharField(_("chat"), max_length=64, blank=True)
    message_id = models.BigIntegerField(_("message"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("balance alert")
        verbose_name_plural = _("balance alerts")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.supplier_code}: {self.get_kind_display()} ({self.amount} {self.currency})"


class ReconciliationMismatch(models.Model):
    """A difference between our orders and the supplier's list for one day, for an operator.

    One row per (supplier, kind, reference): re-running a day, or its neighbour whose window
    overlaps it, never duplicates a mismatch.
    """

    class Kind(models.TextChoices):
        DELIVERED_THERE = "delivered_there", _("Delivered at the supplier, not here")
        CHARGED_THERE = "charged_there", _("Charged at the supplier, failed or refunded here")
        UNKNOWN_THERE = "unknown_there", _("Delivered here, unknown at the supplier")
        FAILED_THERE = "failed_there", _("Delivered here, failed or reversed at the supplier")
        DETAILS_DIFFER = "details_differ", _("Stars or recipient differ")

    supplier_code = models.CharField(_("supplier"), max_length=50)
    day = models.DateField(_("day"))
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    # Our idempotency key, which the supplier calls the order's reference.
    reference = models.CharField(_("reference at the supplier"), max_length=128)
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, null=True, blank=True,
                              related_name="reconciliation_mismatches",
                              verbose_name=_("order"))
    supplier_order_id = models.CharField(_("supplier order"), max_length=100, blank=True)
    ours = models.JSONField(_("our record"), default=dict, blank=True)
    theirs = models.JSONField(_("supplier's record"), default=dict, blank=True)
    resolved = models.BooleanField(_("resolved"), default=False)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                    null=True, blank=True, related_name="+",
                                    verbose_name=_("resolved by"))
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(_("found at"), auto_now_add=True)

    class Meta:
        verbose_name = _("reconciliation mismatch")
        verbose_name_plural = _("reconciliation mismatches")
        ordering = ["resolved", "-day", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["supplier_code", "kind", "reference"],
                                    name="mismatch_unique_kind_reference"),
        ]
        indexes = [models.Index(fields=["resolved", "day"], name="mismatch_open_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} {self.get_kind_display()}: {self.reference}"
