"""The operator's console for orders: read-only status, timeline, and actions that call services."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orders import services
from orders.exceptions import OrderError
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


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "from_status", "to_status", "actor", "reason", "data")
    readonly_fields = fields
    ordering = ("created_at", "id")

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    can_delete = False
    fields = ("provider", "provider_reference", "amount", "currency", "status", "created_at",
              "refund_reference", "refunded_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class PaymentInvoiceInline(admin.TabularInline):
    model = PaymentInvoice
    extra = 0
    can_delete = False
    fields = ("provider", "account", "status", "amount_minor", "currency", "exponent", "rate",
              "provider_invoice_id", "comment", "expires_at", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class PaymentEventInline(admin.TabularInline):
    model = PaymentEvent
    extra = 0
    can_delete = False
    fields = ("received_at", "provider", "event_key", "kind", "amount_minor", "currency",
              "outcome", "detail")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class SupplierAttemptInline(admin.TabularInline):
    model = SupplierAttempt
    extra = 0
    can_delete = False
    fields = ("number", "outcome", "error_code", "response_status", "supplier_order_id",
              "started_at", "finished_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


def _run(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Order], action,
         verb: str) -> None:
    done = 0
    for order in queryset:
        try:
            action(order=order, actor=f"admin:{request.user.get_username()}")
            done += 1
        except OrderError as exc:
            modeladmin.message_user(request, f"{order}: {exc}", messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{verb} {done} order(s).", messages.SUCCESS)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("reference", "status", "channel", "stars", "recipient_display", "price",
                    "currency", "payment_method", "created_at", "status_changed_at")
    list_filter = ("status", "channel", "payment_method", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=reference", "=recipient_user_id", "recipient_username", "=supplier_order_id",
                     "=public_id")
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
                                 "supplier_status", "fulfilment_attempts", "next_action_at")}),
        ("Times", {"fields": ("created_at", "expires_at", "paid_at", "delivered_at",
                              "status_changed_at", "updated_at")}),
        ("Buyer", {"fields": ("buyer_telegram_id", "buyer_session_hash", "request_key")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Order | None = None):
        return [f.name for f in Order._meta.fields] + ["margin"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # orders are placed by buyers through the services

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False  # a paid order must never disappear

    @admin.display(description="Margin")
    def margin(self, order: Order) -> str:
        return f"{order.margin} {order.currency}"

    @admin.action(description="Resume fulfilment (on hold / review)")
    def resume_fulfilment(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _run(self, request, queryset.filter(status__in=[S.ON_HOLD, S.REVIEW]),
             services.order_resume, "Resumed")

    @admin.action(description="Refund (on hold / review)")
    def start_refund(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _run(self, request, queryset.filter(status__in=[S.ON_HOLD, S.REVIEW]),
             services.order_refund_start, "Started refund of")

    @admin.action(description="Cancel (unpaid only)")
    def cancel_unpaid(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _run(self, request, queryset.filter(status=S.AWAITING_PAYMENT), services.order_cancel, "Cancelled")


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
