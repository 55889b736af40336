"""Orders, their audit trail, payments and every call that places a top-up."""

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import Q


class OrderStatus(models.TextChoices):
    AWAITING_PAYMENT = "awaiting_payment", "Awaiting payment"
    PAID = "paid", "Paid"
    SUBMITTING = "submitting", "Submitting to supplier"
    PROCESSING = "processing", "Processing at supplier"
    UNKNOWN = "unknown", "Outcome unknown"
    DELIVERED = "delivered", "Delivered"
    ON_HOLD = "on_hold", "On hold"
    REVIEW = "review", "Needs review"
    FAILED = "failed", "Failed"
    REFUND_PENDING = "refund_pending", "Refund pending"
    REFUNDED = "refunded", "Refunded"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


# Orders that ended without our money, or whose money is going back: they earn no margin.
NO_MARGIN_STATUSES = frozenset({
    OrderStatus.EXPIRED, OrderStatus.CANCELLED, OrderStatus.FAILED,
    OrderStatus.REFUND_PENDING, OrderStatus.REFUNDED,
})


class Channel(models.TextChoices):
    WEB = "web", "Storefront"
    BOT = "bot", "Telegram bot"
    API = "api", "Reseller API"


class Order(models.Model):
    """One purchase of a quantity of a product for one recipient."""

    # NULL until the row has its pk (the reference is made from it); NULLs never collide.
    reference = models.CharField(  # noqa: DJ001
        max_length=20, unique=True, null=True, editable=False)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.AWAITING_PAYMENT
    )
    status_reason = models.CharField(max_length=255, blank=True)

    product = models.ForeignKey("shop.Product", on_delete=models.PROTECT, related_name="orders")
    package = models.ForeignKey(
        "shop.Package", on_delete=models.PROTECT, null=True, blank=True, related_name="orders"
    )
    product_name = models.CharField(max_length=100)
    package_name = models.CharField(max_length=60, blank=True)
    platform = models.CharField(max_length=40)
    stars = models.PositiveIntegerField()

    recipient_input = models.CharField(max_length=64, help_text="What the buyer typed.")
    recipient_user_id = models.CharField(max_length=20, db_index=True)
    recipient_username = models.CharField(max_length=40, blank=True, db_index=True)

    price = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    supplier_code = models.CharField(max_length=50)
    cost = models.DecimalField(max_digits=12, decimal_places=2)
    cost_currency = models.CharField(max_length=3)
    payment_method = models.CharField(max_length=30)
    payment_fee = models.DecimalField(max_digits=12, decimal_places=2, default=0)

    buyer_telegram_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    # A keyed hash of the storefront session, never the session key itself.
    buyer_session_hash = models.CharField(max_length=64, blank=True, db_index=True)
    # The client's key for "place this order": a repeated request returns the same order.
    request_key = models.CharField(max_length=100, blank=True, editable=False)

    idempotency_key = models.CharField(max_length=64, unique=True, editable=False)
    supplier_order_id = models.CharField(max_length=100, blank=True, db_index=True)
    supplier_status = models.CharField(max_length=30, blank=True)
    fulfilment_attempts = models.PositiveIntegerField(default=0)
    # The pending job: when a worker or the sweeper must next look at this order.
    next_action_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Who is working on the order right now, and until when: a live worker renews its lease
    # every few seconds, so a dead or stalled one loses it within seconds, not minutes.
    lease_owner = models.CharField(max_length=120, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Given by the buyer for a receipt, and with the reference a way to find the order again.
    buyer_email = models.EmailField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_action_at"], name="order_status_next_idx")]
        permissions = [
            ("view_report", "Can view the dashboard and the margin report"),
            ("export_order", "Can export orders as CSV"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(stars__gt=0), name="order_stars_positive"),
            models.CheckConstraint(condition=Q(price__gt=0), name="order_price_positive"),
            models.UniqueConstraint(
                fields=["channel", "request_key"], condition=~Q(request_key=""),
                name="order_unique_request_key",
            ),
        ]

    def __str__(self) -> str:
        return self.reference or f"order #{self.pk}"

    @property
    def recipient_display(self) -> str:
        return self.recipient_username or self.recipient_user_id

    @property
    def margin(self) -> Decimal:
        """What the order earns: price − cost − payment fee once paid, else zero.

        Zero for an order never paid (no paid_at: awaiting payment, expired, cancelled, or a
        mismatched payment still in review) and for one whose money went or is going back
        (failed, refund pending, refunded): such an order earns nothing. A paid order on its
        way (or on hold, or in review after payment) counts what it is expected to earn.
        """
        if self.paid_at is None or self.status in NO_MARGIN_STATUSES:
            return Decimal("0.00")
        return self.price - self.cost - self.payment_fee


class OrderEvent(models.Model):
    """One status change of an order: who moved it, from what, to what, and why."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    actor = models.CharField(max_length=100)
    reason = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.order}: {self.from_status or '∅'} → {self.to_status}"


class PaymentInvoice(models.Model):
    """What we asked a buyer to pay with one method: a quote with an amount and an expiry.

    Amounts are integers in the currency's smallest unit (cents, nanotons, USDT's 10^-6), so
    comparisons with what arrived are exact.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="invoices")
    provider = models.CharField(max_length=30)
    # The provider account the invoice id is unique in (network + app, wallet, livemode):
    # ids repeat across accounts, and a fake restarted on a kept database numbers from 1 again.
    account = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    provider_invoice_id = models.CharField(max_length=200, blank=True)
    # TON: the unique text comment the buyer's transfer must carry.
    comment = models.CharField(max_length=64, blank=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=10)
    exponent = models.PositiveSmallIntegerField(help_text="Decimal places of the currency.")
    # Order currency per one unit of the invoice currency, when they differ (e.g. USD per TON).
    rate = models.DecimalField(max_digits=20, decimal_places=9, null=True, blank=True)
    pay_url = models.TextField(blank=True)
    expires_at = models.DateTimeField()
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "account", "provider_invoice_id"],
                condition=~Q(provider_invoice_id=""), name="invoice_unique_account_id",
            ),
            models.UniqueConstraint(
                fields=["provider", "comment"], condition=~Q(comment=""),
                name="invoice_unique_comment",
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="invoice_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} invoice for {self.order}"


class PaymentEvent(models.Model):
    """The inbox: every confirmation a provider sent us, stored raw before it is applied."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Not applied yet"
        APPLIED = "applied", "Applied"
        IGNORED = "ignored", "Ignored"
        REVIEW = "review", "Sent to review"
        REJECTED = "rejected", "Rejected"

    provider = models.CharField(max_length=30)
    event_key = models.CharField(max_length=200, help_text="Unique per provider event.")
    kind = models.CharField(max_length=40)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, null=True, blank=True,
                              related_name="payment_events")
    invoice = models.ForeignKey(PaymentInvoice, on_delete=models.PROTECT, null=True, blank=True,
                                related_name="events")
    amount_minor = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=10, blank=True)
    body = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.PENDING)
    detail = models.CharField(max_length=255, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_key"], name="payment_event_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_key} ({self.kind})"


class Payment(models.Model):
    """Money received for an order; one row per provider reference."""

    class Status(models.TextChoices):
        CONFIRMED = "confirmed", "Confirmed"
        REFUNDED = "refunded", "Refunded"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="payments")
    invoice = models.ForeignKey(PaymentInvoice, on_delete=models.PROTECT, null=True, blank=True,
                                related_name="payments")
    event = models.OneToOneField(PaymentEvent, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="payment")
    provider = models.CharField(max_length=30)
    provider_reference = models.CharField(max_length=200)
    amount = models.DecimalField(max_digits=24, decimal_places=9)
    currency = models.CharField(max_length=10)
    # What arrived beyond the quote, owed back to the buyer (smallest units of `currency`).
    excess_minor = models.BigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONFIRMED)
    raw = models.JSONField(default=dict, blank=True)
    refund_reference = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    # The overpaid part (excess_minor) sent back on its own, while the order kept the rest.
    excess_refund_reference = models.CharField(max_length=200, blank=True)
    excess_refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_reference"], name="payment_unique_provider_ref"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.provider_reference}"


class SupplierAttempt(models.Model):
    """One call that places (or may have placed) a top-up at the supplier."""

    class Outcome(models.TextChoices):
        SENDING = "sending", "Sending"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected (not placed)"
        UNKNOWN = "unknown", "Outcome unknown"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="supplier_attempts")
    number = models.PositiveIntegerField()
    supplier_code = models.CharField(max_length=50)
    idempotency_key = models.CharField(max_length=64)
    request = models.JSONField(default=dict)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    supplier_order_id = models.CharField(max_length=100, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.SENDING)
    error_code = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order", "number"]
        constraints = [
            models.UniqueConstraint(fields=["order", "number"], name="attempt_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.order} attempt {self.number}: {self.outcome}"


class ProviderCursor(models.Model):
    """How far a poller has read one provider account's feed (e.g. the last TON lt seen).

    Per account (TON: network + wallet): another chain or wallet has its own positions.
    """

    provider = models.CharField(max_length=30)
    account = models.CharField(max_length=200, blank=True)
    value = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "account"], name="cursor_unique_account"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.account}: {self.value}"


class SandboxTopup(models.Model):
    """A top-up at the in-process sandbox supplier (orders.suppliers.sandbox): nothing is delivered.

    Partner test keys place their orders here, so the sandbox works on any host, production
    included, without a second service.
    """

    order_id = models.CharField(max_length=40, unique=True)
    reference = models.CharField(max_length=100, unique=True)
    user_id = models.CharField(max_length=20)
    stars = models.PositiveIntegerField()
    cost = models.DecimalField(max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completes_at = models.DateTimeField()

    class Meta:
        verbose_name = "sandbox top-up"
        verbose_name_plural = "sandbox top-ups"

    def __str__(self) -> str:
        return self.order_id
