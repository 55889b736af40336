"""The operator's console for orders: read-only status, timeline, and actions that call services."""

import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import PAGE_VAR
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext, gettext_lazy as _, ngettext

from bots.models import TelegramUser
from orders import console, selectors
from orders.exceptions import OrderError, OrderStateChanged
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
from orders.payments import services as payment_services
from shop.selectors import promo_for_order
from stock import selectors as stock_selectors

# How many references a message names before it says "and N more".
MESSAGE_REFERENCES = 10
# The order page's section for orders placed through the partner API.
PARTNER_API_FIELDS = ("api_partner", "api_key_prefix", "api_reference", "api_webhooks")


def to_the_second(value: datetime | None) -> str | None:
    """A time as operators match it against logs and provider dashboards: seconds and zone."""
    if value is None:
        return None
    # dateformat's "Y-m-d H:i:s T", built directly: a list page shows 200 of these.
    local = timezone.localtime(value)
    return (f"{local.year:04d}-{local.month:02d}-{local.day:02d} "
            f"{local.hour:02d}:{local.minute:02d}:{local.second:02d} {local.tzname() or ''}")


def _time_column(field_name: str, description: str) -> Callable[[Any, Any], str | None]:
    """A list column or read-only field showing a model's datetime to the second.

    Django's own rendering follows the locale's DATETIME_FORMAT, which stops at the minute.
    """

    @admin.display(description=description, ordering=field_name)
    def column(model_admin: Any, row: Any) -> str | None:
        return to_the_second(getattr(row, field_name))

    return column


class _RowsOfThisOrder(admin.TabularInline):
    """An inline whose rows name their order (their __str__): loaded with it, not once per row."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("order")


class OrderEventInline(_RowsOfThisOrder):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = ("time", "from_status", "to_status", "actor", "reason", "data")
    readonly_fields = fields
    ordering = ("created_at", "id")
    time = _time_column("created_at", "Time")

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class PaymentInline(_RowsOfThisOrder):
    model = Payment
    extra = 0
    can_delete = False
    fields = ("provider", "provider_reference", "amount", "currency", "status", "created",
              "refund_reference", "refunded", "excess_minor", "excess_refund_reference",
              "excess_refunded", "raw_body")
    readonly_fields = fields
    created = _time_column("created_at", "Created")
    refunded = _time_column("refunded_at", "Refunded")
    excess_refunded = _time_column("excess_refunded_at", "Excess refunded")

    @admin.display(description=_("Raw"))
    def raw_body(self, payment: Payment) -> str:
        return folded(gettext("Provider's record"), _json(payment.raw))

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class PaymentInvoiceInline(_RowsOfThisOrder):
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


class PaymentEventInline(_RowsOfThisOrder):
    model = PaymentEvent
    extra = 0
    can_delete = False
    fields = ("received", "provider", "event_key", "kind", "amount_minor", "currency",
              "outcome", "detail", "raw_body")
    readonly_fields = fields
    received = _time_column("received_at", "Received")

    @admin.display(description=_("Raw"))
    def raw_body(self, event: PaymentEvent) -> str:
        return folded(gettext("Body as received"), event.body or _json(event.data))

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class SupplierAttemptInline(_RowsOfThisOrder):
    model = SupplierAttempt
    extra = 0
    can_delete = False
    fields = ("number", "outcome", "error_code", "response_status", "supplier_order_id",
              "started", "finished", "raw_request", "raw_response")
    readonly_fields = fields
    show_change_link = True
    started = _time_column("started_at", "Started")
    finished = _time_column("finished_at", "Finished")

    @admin.display(description=_("Request"))
    def raw_request(self, attempt: SupplierAttempt) -> str:
        return folded(gettext("What we sent"), _json(attempt.request))

    @admin.display(description=_("Response"))
    def raw_response(self, attempt: SupplierAttempt) -> str:
        return folded(gettext("What the supplier answered"), attempt.response_body)

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


def _label(status: str) -> str:
    return str(S(status).label) if status in S.values else status


def _references(orders: list[Order]) -> str:
    named = ", ".join(str(order) for order in orders[:MESSAGE_REFERENCES])
    more = len(orders) - MESSAGE_REFERENCES
    return named + (gettext(" and %(count)s more") % {"count": more} if more > 0 else "")


def _orders(count: int) -> str:
    return ngettext("%(count)s order", "%(count)s orders", count) % {"count": count}


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


def _run(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Order],
         action: console.OrderAction, form: console.ActionForm) -> None:
    """Apply one action to each selected order it applies to, and tell the operator what happened.

    Which orders the action applies to is decided up front from the state machine; an order
    moved by someone else in the meantime (after it was read here) is reported by name, never
    skipped in silence. Each order moved is also written to the admin log.
    """
    assert action.statuses is not None and action.to_status is not None
    moved: list[Order] = []
    refused: dict[str, list[Order]] = {}  # status -> orders the action is not meant for
    raced: list[str] = []
    for order in queryset:
        if not action.applies_to(order):
            refused.setdefault(order.status, []).append(order)
            continue
        given = console.ActionInput(
            actor=_actor(request), reason=form.cleaned_data["reason"],
            expected_status=order.status, reference=form.cleaned_data.get("reference", ""))
        try:
            action.perform(order, given)
        except OrderError as exc:  # moved by a worker or another operator since it was listed
            raced.append(gettext("%(order)s changed meanwhile: %(why)s") % {
                "order": order, "why": str(exc).rstrip(".")})
        else:
            moved.append(order)
            model_admin.log_change(request, order, f"{action.label}: {given.reason}")
    if moved:
        model_admin.message_user(request, gettext("%(action)s: %(orders)s moved to %(status)s "
                                                  "(%(references)s).") % {
            "action": action.label, "orders": _orders(len(moved)),
            "status": _label(action.to_status), "references": _references(moved)},
            messages.SUCCESS)
    not_moved = sum(len(orders) for orders in refused.values()) + len(raced)
    if not_moved:
        reasons = [
            ngettext("%(references)s is %(status)s", "%(references)s are %(status)s",
                     len(orders)) % {"references": _references(orders), "status": _label(status)}
            for status, orders in refused.items()
        ]
        if reasons:
            reasons[-1] += gettext(" (it applies only to %(allowed)s orders)") % {
                "allowed": console.statuses_text(action.statuses)}
        model_admin.message_user(request, gettext("%(action)s: %(orders)s not moved: %(why)s.") % {
            "action": action.label, "orders": _orders(not_moved),
            "why": "; ".join(reasons + raced)}, messages.WARNING)


def held_balance_text(order: Order) -> str:
    """For an order on hold for the supplier's balance: the balance it waits for, else ""."""
    if order.status != S.ON_HOLD or order.status_reason != selectors.HOLD_REASON_BALANCE:
        return ""
    text = gettext("Waits for a supplier balance of at least %(cost)s %(currency)s (this "
                   "order's cost); it resumes by itself once the balance covers it.") % {
        "cost": order.cost, "currency": order.cost_currency}
    balance = stock_selectors.balance_latest(supplier_code=order.supplier_code)
    if balance is None or balance.amount is None:
        return text + " " + gettext("The supplier balance has not been read yet.")
    text += " " + gettext("Supplier balance: %(amount)s %(currency)s at %(checked_at)s.") % {
        "amount": balance.amount, "currency": balance.currency,
        "checked_at": to_the_second(balance.amount_checked_at)}
    if balance.currency == order.cost_currency and balance.amount >= order.cost:
        # Each check that reads this much resumes the order; it came back refused for balance.
        text += " " + gettext("That covers it, yet the supplier refused the top-up for its "
                              "balance: check the account at the supplier (funds reserved "
                              "or held there).")
    return text


def _partner_order(order: Order) -> Any:
    """The partner API's record of an order (partners.PartnerOrder), None for other channels."""
    try:
        return order.partner_order
    except ObjectDoesNotExist:
        return None


def folded(summary: str, text: str) -> str:
    """A raw body folded away, so the page stays readable: <details> needs no script."""
    if not text:
        return "-"
    return format_html("<details><summary>{}</summary><pre>{}</pre></details>", summary, text)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str) if value else ""


class QueueFilter(admin.SimpleListFilter):
    """The console's problem queues (orders.selectors), as the admin home links to them."""

    title = _("Queue")
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        minutes = settings.CONSOLE_UNDELIVERED_MINUTES
        return [(name, console.queue_label(name, undelivered_minutes=minutes))
                for name in selectors.QUEUE_NAMES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        name = self.value()
        if not name:
            return queryset
        if name not in selectors.QUEUE_NAMES:
            raise IncorrectLookupParameters(f"No such queue: {name}")
        return queryset.filter(selectors.problem_queue_filter(
            name, undelivered_minutes=settings.CONSOLE_UNDELIVERED_MINUTES))


class PaymentMethodFilter(admin.SimpleListFilter):
    """The payment methods the shop knows (settings.PAYMENT_METHODS), not those found in the table.

    Django's field filter lists the values present with SELECT DISTINCT over every order, on
    every view of the list. Orders are placed only with a configured method, so the settings
    name them all. The parameter is the field filter's, so existing links keep working.
    """

    title = _("payment method")
    parameter_name = "payment_method__exact"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(code, gettext(conf.get("label", code)))
                for code, conf in settings.PAYMENT_METHODS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        method = self.value()
        return queryset.filter(payment_method=method) if method else queryset


class OrderListPaginator(Paginator):
    """The order list's pages; an unfiltered list of a large table counts from the statistics.

    COUNT(*) reads every order (PostgreSQL keeps no row count), on every view of the list.
    PostgreSQL's planner keeps an estimate of the table's rows, refreshed by (auto)ANALYZE; for
    the unfiltered list of at least ESTIMATE_FROM orders, far enough from its last page, that
    estimate is the count. A filtered list, a small table and the last pages count exactly, so
    every page that exists can be reached. Either way it is one query.
    """

    ESTIMATE_FROM = 20_000
    # A page this far into the estimate is counted exactly: the estimate may be a little short.
    NEAR_THE_END = 0.9

    def __init__(self, *args: Any, page_number: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.page_number = page_number

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if (not isinstance(queryset, QuerySet) or queryset.query.where
                or queryset.query.distinct or queryset.query.combinator
                or connections[queryset.db].vendor != "postgresql"):
            return super().count
        connection = connections[queryset.db]
        table = queryset.model._meta.db_table
        at_least = max(self.ESTIMATE_FROM,
                       math.ceil(self.page_number * self.per_page / self.NEAR_THE_END))
        with connection.cursor() as cursor:
            # Only the model's own table name, quoted, is formatted in; values are bound.
            cursor.execute(
                "SELECT CASE WHEN reltuples >= %s THEN reltuples::bigint "
                f"ELSE (SELECT COUNT(*) FROM {connection.ops.quote_name(table)}) END "  # nosec B608
                "FROM pg_class WHERE oid = %s::regclass", [at_least, table])
            row = cursor.fetchone()
        return int(row[0]) if row else super().count


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
    list_filter = (QueueFilter, "status", "channel", PaymentMethodFilter,
                   ("created_at", admin.DateFieldListFilter))
    # Plus the buyer's username, invoices and payments: see get_search_results.
    search_fields = ("=reference", "=recipient_user_id", "recipient_username",
                     "buyer_telegram_id__exact", "=supplier_order_id", "=public_id")
    search_help_text = ("Reference, recipient ID or @username, buyer's Telegram ID or @username, "
                        "supplier order, payment invoice, TON comment or transaction id.")
    # Without the DISTINCT scan of Django's own: templates/admin/orders/order/change_list.html.
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    # The list shows only the order's own columns.
    list_select_related = False
    # "N orders (M total)" would count the whole table once more on every filtered view.
    show_full_result_count = False
    inlines = [PaymentInvoiceInline, PaymentEventInline, PaymentInline, SupplierAttemptInline,
               OrderEventInline]
    actions = ["resume_fulfilment", "start_refund", "cancel_unpaid", "mark_refunded_manually"]
    fieldsets = (
        (None, {"fields": ("reference", "status", "status_reason", "held_balance", "channel",
                           "public_id")}),
        (_("What and for whom"), {"fields": ("product_name", "package_name", "stars",
                                             "recipient_input", "recipient_validated")}),
        (_("Buyer"), {"fields": ("buyer", "buyer_session_hash", "buyer_email", "request_key")}),
        (_("Money"), {"fields": ("price", "currency", "promo", "cost", "cost_currency",
                                 "payment_method", "payment_fee", "margin")}),
        (_("Supplier"), {"fields": ("supplier_code", "idempotency_key", "supplier_order_id",
                                    "supplier_status", "fulfilment_attempts", "next_action")}),
        (_("Times"), {"fields": ("created", "expires", "paid", "delivered", "status_changed",
                                 "updated")}),
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
            "next_action", "held_balance", "recipient_validated", "buyer", "promo",
            *PARTNER_API_FIELDS]

    def get_fieldsets(self, request: HttpRequest, obj: Order | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and _partner_order(obj) is not None:
            fieldsets = [*fieldsets, (_("Partner API"), {"fields": PARTNER_API_FIELDS})]
        return fieldsets

    @admin.display(description=_("Partner"))
    def api_partner(self, order: Order) -> str:
        partner_order = _partner_order(order)
        if partner_order is None:
            return "-"
        return format_html('<a href="{}">{}</a>', reverse(
            "admin:partners_partner_change", args=[partner_order.partner_id]),
            partner_order.partner)

    @admin.display(description=_("API key"))
    def api_key_prefix(self, order: Order) -> str:
        partner_order = _partner_order(order)
        if partner_order is None:
            return "-"
        key = partner_order.api_key
        mode = gettext("test") if key.test else gettext("live")
        return f"{key.prefix} ({mode})"

    @admin.display(description=_("Partner's reference"))
    def api_reference(self, order: Order) -> str:
        partner_order = _partner_order(order)
        return partner_order.reference if partner_order is not None else "-"

    @admin.display(description=_("Webhook deliveries"))
    def api_webhooks(self, order: Order) -> str:
        deliveries = list(order.webhook_deliveries.order_by("pk"))
        if not deliveries:
            return gettext("None (the key has no webhook URL, or nothing changed yet).")
        return format_html("<ul>{}</ul>", format_html_join(
            "", '<li><a href="{}">{}</a>: {} · {} · {}</li>', (
                (reverse("admin:partners_webhookdelivery_change", args=[delivery.pk]),
                 delivery.payload.get("data", {}).get("status", delivery.event),
                 delivery.get_status_display(),
                 ngettext("%(count)s attempt", "%(count)s attempts", delivery.attempts) % {
                     "count": delivery.attempts},
                 delivery.last_error or to_the_second(delivery.delivered_at) or "-")
                for delivery in deliveries)))

    def action_checkbox(self, order: Order) -> SafeString:
        """Django's own checkbox, as its CheckboxInput widget renders it, without the widget.

        The widget renders a template per row: a fifth of the list page's time.
        """
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME, order.pk,
            format_html(gettext("Select this object for an action - {}"), str(order)))

    def get_paginator(self, request: HttpRequest, queryset: QuerySet[Order], per_page: int,
                      orphans: int = 0, allow_empty_first_page: bool = True) -> Paginator:
        try:
            page_number = max(int(request.GET.get(PAGE_VAR, 1)), 1)
        except ValueError:
            page_number = 1
        return OrderListPaginator(queryset, per_page, orphans, allow_empty_first_page,
                                  page_number=page_number)

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

    @admin.display(description=_("Recipient"), ordering="recipient_username")
    def recipient(self, order: Order) -> str:
        return order.recipient_display

    @admin.display(description=_("Margin"))
    def margin(self, order: Order) -> str:
        return f"{order.margin} {order.currency}"

    @admin.display(description=_("Promo code"))
    def promo(self, order: Order) -> str:
        redemption = promo_for_order(order)
        if redemption is None:
            return "-"
        return gettext("%(code)s: %(discount)s %(currency)s off") % {
            "code": redemption.code, "discount": redemption.discount,
            "currency": order.currency}

    @admin.display(description=_("Waiting for"))
    def held_balance(self, order: Order) -> str:
        return held_balance_text(order) or "-"

    @admin.display(description=_("Recipient validated"))
    def recipient_validated(self, order: Order) -> str:
        """Who the supplier said the buyer's input is, when the order was placed."""
        if order.recipient_username:
            return f"{order.recipient_username} (ID {order.recipient_user_id})"
        return f"ID {order.recipient_user_id}"

    @admin.display(description=_("Buyer"))
    def buyer(self, order: Order) -> str:
        """The channel and who on it: the Telegram user (with their username when the bot knows
        them) or, on the storefront, the session hash."""
        parts = [order.get_channel_display()]
        if order.buyer_telegram_id:
            user = TelegramUser.objects.filter(telegram_id=order.buyer_telegram_id).first()
            username = f" @{user.username}" if user is not None and user.username else ""
            parts.append(gettext("Telegram user %(id)s%(username)s") % {
                "id": order.buyer_telegram_id, "username": username})
        elif order.buyer_session_hash:
            parts.append(gettext("storefront session %(hash)s…") % {
                "hash": order.buyer_session_hash[:12]})
        if order.buyer_email:
            parts.append(order.buyer_email)
        return " · ".join(parts)

    # --- The order page's actions ------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        console_url = path("<path:object_id>/console/<str:action_name>/",
                           self.admin_site.admin_view(self.console_view),
                           name="orders_order_console")
        return [console_url, *super().get_urls()]

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Order | None = None,
                           ) -> HttpResponse:
        if obj is not None:
            context["status_since"] = to_the_second(obj.status_changed_at)
            context["held_balance"] = held_balance_text(obj)
            # Offered only to who may change orders, and only what applies to this order now.
            context["console_actions"] = [
                (action, reverse("admin:orders_order_console", args=[obj.pk, action.name]))
                for action in console.actions_for(obj)
            ] if self.has_change_permission(request, obj) else []
        return super().render_change_form(request, context, add, change, form_url, obj)

    def console_view(self, request: HttpRequest, object_id: str, action_name: str) -> HttpResponse:
        """An action on one order: GET confirms what will happen, POST (with a reason) does it."""
        action = console.ACTIONS.get(action_name)
        if action is None:
            raise Http404(f"No such action: {action_name}")
        order = self.get_object(request, unquote(object_id))
        if order is None:
            raise Http404(f"No order {object_id}")
        if not self.has_change_permission(request, order):
            raise PermissionDenied
        change_url = reverse("admin:orders_order_change", args=[order.pk])
        payments = console.owed_excess_payments(order) if action is console.REFUND_EXCESS else []
        posted = request.method == "POST"
        seen = request.POST.get("seen_status", order.status) if posted else order.status
        if action.statuses is not None and seen != order.status:
            self.message_user(request, _nothing_done(order, seen), messages.WARNING)
            return redirect(change_url)
        refusal = action.refusal(order)
        if refusal:
            self.message_user(request, refusal, messages.ERROR)
            return redirect(change_url)
        form = console.OrderActionForm(request.POST if posted else None, action=action,
                                       payments=payments, initial={"seen_status": order.status})
        if posted and form.is_valid():
            try:
                done = action.perform(order, form.action_input(actor=_actor(request)))
            except OrderStateChanged as exc:
                self.message_user(request, _nothing_done(order, seen, now=exc.actual),
                                  messages.WARNING)
            except OrderError as exc:
                self.message_user(request, gettext("Nothing was done: %(why)s") % {"why": exc},
                                  messages.ERROR)
            else:
                self.log_change(request, order, f"{action.label}: {form.cleaned_data['reason']}")
                self.message_user(request, done, messages.SUCCESS)
            return redirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("%(action)s: %(order)s") % {"action": action.label, "order": order},
            "action": action,
            "order": order,
            "form": form,
            "payments": payments,
            "excess_how": [payment_services.payment_excess_refund_how(payment)
                           for payment in payments],
            "change_url": change_url,
            "opts": self.model._meta,
            "original": order,
        }
        return TemplateResponse(request, "admin/orders/order/console_action.html", context)

    # --- Bulk actions on the list ------------------------------------------------------

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Order],
              action: console.OrderAction) -> HttpResponse | None:
        """The list's version of an action: a confirmation page with the reason, then _run."""
        confirmed = request.POST.get("confirm") == "yes"
        form = console.ActionForm(request.POST if confirmed else None, action=action)
        if confirmed and form.is_valid():
            _run(self, request, queryset, action, form)
            return None  # back to the list
        # What applies_to reads: a deferred field would cost a query per selected order.
        orders = list(queryset.select_related(None)
                      .only("pk", "reference", "status", "payment_method"))
        applies = [order for order in orders if action.applies_to(order)]
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("%(action)s: %(orders)s selected") % {
                "action": action.label, "orders": _orders(len(orders))},
            "action": action,
            "action_name": request.POST.get("action", ""),
            "form": form,
            "applies": applies[:MESSAGE_REFERENCES * 5],
            "applies_count": len(applies),
            "refused_count": len(orders) - len(applies),
            "allowed": console.statuses_text(action.statuses or frozenset()),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/orders/order/bulk_action.html", context)

    @admin.action(description=_("Retry fulfilment (on hold / review)"), permissions=["change"])
    def resume_fulfilment(self, request: HttpRequest, queryset: QuerySet[Order]) -> HttpResponse | None:
        return self._bulk(request, queryset, console.RETRY)

    @admin.action(description=_("Refund (on hold / review / failed)"), permissions=["change"])
    def start_refund(self, request: HttpRequest, queryset: QuerySet[Order]) -> HttpResponse | None:
        return self._bulk(request, queryset, console.REFUND)

    @admin.action(description=_("Cancel (unpaid only)"), permissions=["change"])
    def cancel_unpaid(self, request: HttpRequest, queryset: QuerySet[Order]) -> HttpResponse | None:
        return self._bulk(request, queryset, console.CANCEL)

    @admin.action(description=_("Mark refunded manually (review / refund pending)"),
                  permissions=["change"])
    def mark_refunded_manually(self, request: HttpRequest,
                               queryset: QuerySet[Order]) -> HttpResponse | None:
        return self._bulk(request, queryset, console.MARK_REFUNDED)


def _nothing_done(order: Order, seen: str, *, now: str | None = None) -> str:
    """What a raced operator is told: the order moved between their page and their click."""
    current = now or Order.objects.filter(pk=order.pk).values_list("status", flat=True).first()
    return gettext("Nothing was done: %(order)s changed meanwhile. It was %(seen)s when you "
                   "opened the page and is %(now)s now; look again before acting.") % {
        "order": order, "seen": _label(seen),
        "now": _label(current) if current else gettext("changed")}


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
