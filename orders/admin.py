"""The operator's console for orders: read-only status, timeline, and actions that call services."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import dateformat, timezone

from bots.models import TelegramUser
from orders import services
from orders.exceptions import OrderError
from orders.exports import OrderExportMixin
from orders.models import (
    Order,
    OrderEvent,
    Payment,
    PaymentEvent,
    PaymentInvoice,
    ProviderCursor,
    SupplierAttempt,
)
from orders.models import OrderStatus as S
from orders.transitions import can_transition

# How many references a message names before it says "and N more".
MESSAGE_REFERENCES = 10


def to_the_second(value: datetime | None) -> str | None:
    """A time as operators match it against logs and provider dashboards: seconds and zone."""
    if value is None:
        return None
    return dateformat.format(timezone.localtime(value), "Y-m-d H:i:s T")


def _time_column(field_name: str, description: str) -> Callable[[Any, Any], str | None]:
    """A list column or read-only field showing a model's datetime to the second.

    Django's own rendering follows the locale's DATETIME_FORMAT, which stops at the minute.
    """

    @admin.display(description=description, ordering=field_name)
    def column(model_admin: Any, row: Any) -> str | None:
        return to_the_second(getattr(row, field_name))

    return column


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = ("time", "from_status", "to_status", "actor", "reason", "data")
    readonly_fields = fields
    ordering = ("created_at", "id")
    time = _time_column("created_at", "Time")

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    can_delete = False
    fields = ("provider", "provider_reference", "amount", "currency", "status", "created",
              "refund_reference", "refunded")
    readonly_fields = fields
    created = _time_column("created_at", "Created")
    refunded = _time_column("refunded_at", "Refunded")

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class PaymentInvoiceInline(admin.TabularInline):
    model = PaymentInvoice
    extra = 0
    can_delete = False
    fields = ("provider", "account", "status", "amount_minor", "currency", "exponent", "rate",
              "provider_invoice_id", "comment", "expires", "created")
    readonly_fields = fields
    expires = _time_column("expires_at", "Expires")
    created = _time_column("created_at", "Created")

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class PaymentEventInline(admin.TabularInline):
    model = PaymentEvent
    extra = 0
    can_delete = False
    fields = ("received", "provider", "event_key", "kind", "amount_minor", "currency",
              "outcome", "detail")
    readonly_fields = fields
    received = _time_column("received_at", "Received")

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class SupplierAttemptInline(admin.TabularInline):
    model = SupplierAttempt
    extra = 0
    can_delete = False
    fields = ("number", "outcome", "error_code", "response_status", "supplier_order_id",
              "started", "finished")
    readonly_fields = fields
    show_change_link = True
    started = _time_column("started_at", "Started")
    finished = _time_column("finished_at", "Finished")

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


@dataclass(frozen=True)
class OrderMove:
    """What an order action does: the statuses it is meant for, where it sends them, and how."""

    service: Callable[..., Order]
    from_statuses: frozenset[str]
    to_status: str

    def applies_to(self, order: Order) -> bool:
        # Both: the state machine also declares moves no operator may make from this button
        # (awaiting payment -> paid is a payment's move, not a "resume").
        return order.status in self.from_statuses and can_transition(order.status, self.to_status)


RESUME = OrderMove(services.order_resume, frozenset({S.ON_HOLD, S.REVIEW}), S.PAID)
REFUND = OrderMove(services.order_refund_start, frozenset({S.ON_HOLD, S.REVIEW}), S.REFUND_PENDING)
CANCEL = OrderMove(services.order_cancel, frozenset({S.AWAITING_PAYMENT}), S.CANCELLED)


def _label(status: str) -> str:
    return str(S(status).label)


def _references(orders: list[Order]) -> str:
    named = ", ".join(str(order) for order in orders[:MESSAGE_REFERENCES])
    more = len(orders) - MESSAGE_REFERENCES
    return named + (f" and {more} more" if more > 0 else "")


def _orders(count: int) -> str:
    return f"{count} order" + ("" if count == 1 else "s")


def _run(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Order],
         move: OrderMove, action: str) -> None:
    """Apply one move to each selected order it applies to, and tell the operator what happened.

    Which orders the move applies to is decided up front from the state machine; an order
    moved by someone else in the meantime is reported by name, never skipped in silence.
    """
    actor = f"admin:{request.user.get_username()}"
    moved: list[Order] = []
    refused: dict[str, list[Order]] = {}  # status -> orders the action is not meant for
    raced: list[str] = []
    for order in queryset:
        if not move.applies_to(order):
            refused.setdefault(order.status, []).append(order)
            continue
        try:
            move.service(order=order, actor=actor)
        except OrderError as exc:  # moved by a worker or another operator since it was listed
            raced.append(f"{order} changed meanwhile: {str(exc).rstrip('.')}")
        else:
            moved.append(order)
    if moved:
        model_admin.message_user(
            request, f"{action}: {_orders(len(moved))} moved to {_label(move.to_status)} "
            f"({_references(moved)}).", messages.SUCCESS)
    not_moved = sum(len(orders) for orders in refused.values()) + len(raced)
    if not_moved:
        reasons = [
            f"{_references(orders)} {'is' if len(orders) == 1 else 'are'} {_label(status)}"
            for status, orders in refused.items()
        ]
        if reasons:
            allowed = " or ".join(sorted(_label(status) for status in move.from_statuses))
            reasons[-1] += f" (it applies only to {allowed} orders)"
        model_admin.message_user(
            request, f"{action}: {_orders(not_moved)} not moved: {'; '.join(reasons + raced)}.",
            messages.WARNING)


def _found_elsewhere(handle: str) -> Q:
    """Orders whose buyer's username, invoice or payment is this handle.

    Subqueries rather than search_fields across relations: those join every invoice, payment
    and event of every order, and the list then needs DISTINCT over all its columns. The
    buyer's username has no relation to follow at all (orders keep the Telegram ID only).
    """
    buyers = TelegramUser.objects.filter(username__iexact=handle).values("telegram_id")
    invoices = PaymentInvoice.objects.filter(
        Q(provider_invoice_id__iexact=handle) | Q(comment__iexact=handle)).values("order_id")
    payments = Payment.objects.filter(provider_reference__iexact=handle).values("order_id")
    events = PaymentEvent.objects.filter(event_key__iexact=handle).values("order_id")
    return (Q(buyer_telegram_id__in=buyers) | Q(pk__in=invoices) | Q(pk__in=payments)
            | Q(pk__in=events))


@admin.register(Order)
class OrderAdmin(OrderExportMixin, admin.ModelAdmin):
    list_display = ("reference", "status", "channel", "stars", "recipient", "price",
                    "currency", "payment_method", "created", "status_changed")
    list_filter = ("status", "channel", "payment_method", ("created_at", admin.DateFieldListFilter))
    # Plus the buyer's username, invoices and payments: see get_search_results.
    search_fields = ("=reference", "=recipient_user_id", "recipient_username",
                     "buyer_telegram_id__exact", "=supplier_order_id", "=public_id")
    search_help_text = ("Reference, recipient ID or @username, buyer's Telegram ID or @username, "
                        "supplier order, payment invoice, TON comment or transaction id.")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    list_select_related = ("product",)
    inlines = [PaymentInvoiceInline, PaymentEventInline, PaymentInline, SupplierAttemptInline,
               OrderEventInline]
    actions = ["resume_fulfilment", "start_refund", "cancel_unpaid"]
    fieldsets = (
        (None, {"fields": ("reference", "status", "status_reason", "channel", "public_id")}),
        ("What and for whom", {"fields": ("product_name", "package_name", "stars", "recipient_input",
                                          "recipient_user_id", "recipient_username")}),
        ("Money", {"fields": ("price", "currency", "cost", "cost_currency", "payment_method",
                              "payment_fee", "margin")}),
        ("Supplier", {"fields": ("supplier_code", "idempotency_key", "supplier_order_id",
                                 "supplier_status", "fulfilment_attempts", "next_action")}),
        ("Times", {"fields": ("created", "expires", "paid", "delivered", "status_changed",
                              "updated")}),
        ("Buyer", {"fields": ("buyer_telegram_id", "buyer_session_hash", "request_key")}),
    )

    created = _time_column("created_at", "Created")
    expires = _time_column("expires_at", "Expires")
    paid = _time_column("paid_at", "Paid")
    delivered = _time_column("delivered_at", "Delivered")
    status_changed = _time_column("status_changed_at", "Status changed")
    updated = _time_column("updated_at", "Updated")
    next_action = _time_column("next_action_at", "Next action")

    def get_readonly_fields(self, request: HttpRequest, obj: Order | None = None):
        return [f.name for f in Order._meta.fields] + [
            "margin", "created", "expires", "paid", "delivered", "status_changed", "updated",
            "next_action"]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Order],
                           search_term: str) -> tuple[QuerySet[Order], bool]:
        # Usernames are typed with or without the @, and stored either way.
        search_term = re.sub(r"(^|\s)@", r"\1", search_term)
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        handle = search_term.strip()
        if handle and not any(character.isspace() for character in handle):
            results = results | queryset.filter(_found_elsewhere(handle))
        return results, may_have_duplicates

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # orders are placed by buyers through the services

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False  # a paid order must never disappear

    @admin.display(description="Recipient", ordering="recipient_username")
    def recipient(self, order: Order) -> str:
        return order.recipient_display

    @admin.display(description="Margin")
    def margin(self, order: Order) -> str:
        return f"{order.margin} {order.currency}"

    @admin.action(description="Resume fulfilment (on hold / review)")
    def resume_fulfilment(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _run(self, request, queryset, RESUME, "Resume fulfilment")

    @admin.action(description="Refund (on hold / review)")
    def start_refund(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _run(self, request, queryset, REFUND, "Refund")

    @admin.action(description="Cancel (unpaid only)")
    def cancel_unpaid(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _run(self, request, queryset, CANCEL, "Cancel")


@admin.register(SupplierAttempt)
class SupplierAttemptAdmin(admin.ModelAdmin):
    list_display = ("order", "number", "outcome", "error_code", "response_status",
                    "supplier_order_id", "started_at", "finished_at")
    list_filter = ("outcome", "supplier_code", "error_code")
    search_fields = ("=order__reference", "=idempotency_key", "=supplier_order_id")
    list_select_related = ("order",)

    def get_readonly_fields(self, request: HttpRequest, obj: SupplierAttempt | None = None):
        return [f.name for f in SupplierAttempt._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SupplierAttempt | None = None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("provider_reference", "provider", "order", "amount", "currency", "status", "created_at")
    list_filter = ("provider", "status")
    search_fields = ("=provider_reference", "=order__reference")

    def get_readonly_fields(self, request: HttpRequest, obj: Payment | None = None):
        return [f.name for f in Payment._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Payment | None = None) -> bool:
        return False


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Audit rows: visible to operators, written only by services."""

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(PaymentEvent)
class PaymentEventAdmin(_ReadOnlyAdmin):
    list_display = ("received_at", "provider", "kind", "event_key", "order", "amount_minor",
                    "currency", "outcome", "detail")
    list_filter = ("provider", "kind", "outcome")
    search_fields = ("=event_key", "=order__reference")
    list_select_related = ("order",)


@admin.register(PaymentInvoice)
class PaymentInvoiceAdmin(_ReadOnlyAdmin):
    list_display = ("order", "provider", "account", "provider_invoice_id", "status", "amount_minor",
                    "currency", "expires_at", "created_at")
    # Invoice ids repeat across accounts (network + app, wallet): filter by one to find the row.
    list_filter = ("provider", "account", "status")
    search_fields = ("=provider_invoice_id", "=comment", "=order__reference")
    list_select_related = ("order",)


@admin.register(ProviderCursor)
class ProviderCursorAdmin(_ReadOnlyAdmin):
    """Where each poller stands per provider account; the poller rewinds a cursor itself."""

    list_display = ("provider", "account", "value", "updated_at")
    list_filter = ("provider",)
