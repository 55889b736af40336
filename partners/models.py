"""Downstream resellers who buy through the partner API: their keys, prepaid balances and
ledgers, the orders they placed, the idempotency keys they sent and the webhooks we owe them.

A partner has two balances: the live one, which its live keys spend, and a sandbox one, which
its test keys spend on the in-process sandbox supplier (orders.suppliers.sandbox) and never on Stars.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Partner(models.Model):
    """A reseller, bot or app that buys Stars from us through the API."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    contact_email = models.EmailField(_("contact e-mail"), blank=True)
    discount_percent = models.DecimalField(
        _("discount (%)"), max_digits=5, decimal_places=2, default=0,
        help_text=_("Off the list price; never below the product's minimum margin."),
    )
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    balance = models.DecimalField(_("balance"), max_digits=12, decimal_places=2, default=0)
    sandbox_balance = models.DecimalField(_("sandbox balance"), max_digits=12, decimal_places=2,
                                          default=0)
    active = models.BooleanField(_("active"), default=True)
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("partner")
        verbose_name_plural = _("partners")
        ordering = ["name"]
        permissions = [("topup_partner", "Can top up a partner's balance")]
        constraints = [
            # The last line of defence: a charge that would overdraw fails in the database.
            models.CheckConstraint(condition=Q(balance__gte=0), name="partner_balance_not_negative"),
            models.CheckConstraint(condition=Q(sandbox_balance__gte=0),
                                   name="partner_sandbox_balance_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """One partner credential: only a hash of the secret is kept, the prefix finds the row."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="api_keys",
                                verbose_name=_("partner"))
    name = models.CharField(_("name"), max_length=100, blank=True)
    test = models.BooleanField(_("test key"), default=False,
                               help_text=_("Runs against the sandbox supplier and sandbox balance."))
    prefix = models.CharField(_("prefix"), max_length=32, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    allowed_ips = models.TextField(
        _("allowed IPs"), blank=True,
        help_text=_("Addresses or networks (CIDR), one per line; empty allows any."),
    )
    rate_limit = models.CharField(
        _("rate limit"), max_length=100, blank=True,
        help_text=_("e.g. 60/minute, 1000/hour; empty uses PARTNER_API_RATE."),
    )
    webhook_url = models.URLField(_("webhook URL"), blank=True)
    webhook_secret = models.CharField(_("webhook signing secret"), max_length=80, blank=True,
                                      editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, blank=True, editable=False, related_name="+")
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.partner})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class LedgerEntry(models.Model):
    """One move of a partner's balance; `balance_after` is the balance it left."""

    class Kind(models.TextChoices):
        TOPUP = "topup", _("Top-up")
        CHARGE = "charge", _("Order charge")
        REFUND = "refund", _("Order refund")
        ADJUSTMENT = "adjustment", _("Adjustment")
        SANDBOX_GRANT = "sandbox_grant", _("Sandbox grant")

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="ledger",
                                verbose_name=_("partner"))
    sandbox = models.BooleanField(_("sandbox"), default=False)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    balance_after = models.DecimalField(_("balance after"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3)
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, null=True, blank=True,
                              related_name="ledger_entries", verbose_name=_("order"))
    note = models.CharField(_("note"), max_length=255, blank=True)
    actor = models.CharField(_("by"), max_length=100)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        ordering = ["-id"]
        indexes = [models.Index(fields=["partner", "sandbox", "-id"], name="ledger_partner_idx")]
        constraints = [
            # One charge and one refund per order, whatever retries happen.
            models.UniqueConstraint(fields=["order", "kind"], condition=Q(order__isnull=False),
                                    name="ledger_one_per_order_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency}"


class PartnerOrder(models.Model):
    """The API side of an order: who placed it, with which key, under which reference."""

    order = models.OneToOneField("orders.Order", on_delete=models.PROTECT,
                                 related_name="partner_order", verbose_name=_("order"))
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="orders",
                                verbose_name=_("partner"))
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="orders",
                                verbose_name=_("API key"))
    sandbox = models.BooleanField(_("sandbox"), default=False)
    reference = models.CharField(_("partner reference"), max_length=100)
    # The last status a webhook was queued for, so each change is announced once.
    announced_status = models.CharField(max_length=20, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("partner order")
        verbose_name_plural = _("partner orders")
        ordering = ["-id"]
        indexes = [models.Index(fields=["partner", "sandbox", "-id"], name="partner_order_list_idx")]
        constraints = [
            models.UniqueConstraint(fields=["partner", "sandbox", "reference"],
                                    name="partner_reference_unique"),
        ]

    def __str__(self) -> str:
        return self.reference


class IdempotencyKey(models.Model):
    """A POST /topup as first answered, replayed for the same key and refused for another body."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    sandbox = models.BooleanField(default=False)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    # Text, not JSON: PostgreSQL's jsonb would reorder the keys, and a replay must answer the
    # very body the first request got.
    response_body = models.TextField()
    order = models.ForeignKey("orders.Order", on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        constraints = [
            models.UniqueConstraint(fields=["partner", "sandbox", "key"],
                                    name="idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return self.key


class WebhookDelivery(models.Model):
    """One event POSTed to a key's webhook URL, with every attempt's outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Gave up")

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="deliveries",
                                verbose_name=_("API key"))
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, null=True, blank=True,
                              related_name="webhook_deliveries", verbose_name=_("order"))
    event_id = models.UUIDField(_("event id"), default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(_("event"), max_length=40)
    payload = models.JSONField(_("payload"))
    url = models.URLField(_("URL"))
    status = models.CharField(_("status"), max_length=20, choices=Status.choices,
                              default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True, db_index=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    last_status_code = models.PositiveIntegerField(_("last HTTP status"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=255, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-id"]
        permissions = [("redeliver_webhookdelivery", "Can send a webhook delivery again")]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id}"

