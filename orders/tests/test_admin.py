"""The operator's console: pages render, orders are read-only, search finds them by any handle.

The list's actions are tested in test_admin_actions.py.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from bots.models import TelegramUser
from orders.models import Order, OrderEvent, Payment, PaymentEvent, PaymentInvoice
from orders.models import OrderStatus as S

CHANGELIST = "admin:orders_order_changelist"


def test_order_pages_render_with_timeline(admin_client, make_order):
    order = make_order(S.PAID)
    OrderEvent.objects.create(order=order, from_status=S.AWAITING_PAYMENT, to_status=S.PAID,
                              actor="payment:sandbox", reason="Payment confirmed by sandbox")
    changelist = admin_client.get(reverse("admin:orders_order_changelist"))
    assert changelist.status_code == 200 and order.reference in changelist.content.decode()
    change = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))
    body = change.content.decode()
    assert change.status_code == 200
    assert "Payment confirmed by sandbox" in body
    assert 'name="status"' not in body  # status is read-only: only services move it


def test_order_filters(admin_client, make_order):
    delivered, held = make_order(S.DELIVERED), make_order(S.ON_HOLD)
    response = admin_client.get(reverse("admin:orders_order_changelist"),
                                {"status__exact": S.ON_HOLD, "channel__exact": "web"})
    body = response.content.decode()
    assert held.reference in body and delivered.reference not in body


def test_orders_cannot_be_added_or_deleted(admin_client, make_order):
    order = make_order(S.PAID)
    assert admin_client.get(reverse("admin:orders_order_add")).status_code == 403
    assert admin_client.get(reverse("admin:orders_order_delete", args=[order.pk])).status_code == 403


def test_catalog_admin_pages(admin_client, catalog):
    for name in ("admin:shop_product_changelist", "admin:shop_package_changelist",
                 "admin:shop_supplier_changelist", "admin:orders_supplierattempt_changelist",
                 "admin:orders_payment_changelist", "admin:orders_paymentevent_changelist",
                 "admin:orders_paymentinvoice_changelist"):
        assert admin_client.get(reverse(name)).status_code == 200
    assert admin_client.get(reverse("admin:shop_product_change", args=[catalog.pk])).status_code == 200


# --- Margin ------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "paid", "margin"), [
    (S.DELIVERED, True, Decimal("0.08")),
    (S.PAID, True, Decimal("0.08")),
    (S.ON_HOLD, True, Decimal("0.08")),
    (S.REVIEW, True, Decimal("0.08")),
    (S.REVIEW, False, Decimal("0")),  # a mismatched payment not yet accepted
    (S.AWAITING_PAYMENT, False, Decimal("0")),
    (S.EXPIRED, False, Decimal("0")),
    (S.CANCELLED, False, Decimal("0")),
    (S.FAILED, True, Decimal("0")),
    (S.REFUND_PENDING, True, Decimal("0")),
    (S.REFUNDED, True, Decimal("0")),
])
def test_margin_counts_only_money_we_keep(make_order, status, paid, margin):
    order = make_order(status, payment_fee=Decimal("0.17"),
                       paid_at=timezone.now() if paid else None)
    assert order.margin == margin  # 8.50 price - 8.25 cost - 0.17 fee


def test_a_refunded_order_shows_no_margin(admin_client, make_order):
    order = make_order(S.REFUNDED, paid_at=timezone.now())
    body = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert "0.00 USD" in body and "0.25 USD" not in body


# --- What the list and the page show -------------------------------------------------------


def test_recipient_column_is_headed_recipient(admin_client, make_order):
    make_order(S.PAID)
    body = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "Recipient</a>" in body and "RECIPIENT DISPLAY" not in body.upper()


def test_times_are_shown_to_the_second_with_the_zone(admin_client, make_order):
    at = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    order = make_order(S.DELIVERED, paid_at=at + timedelta(seconds=1),
                       delivered_at=at + timedelta(seconds=2))
    Order.objects.filter(pk=order.pk).update(created_at=at, status_changed_at=at + timedelta(seconds=3))
    event = OrderEvent.objects.create(order=order, from_status=S.PAID, to_status=S.DELIVERED,
                                      actor="worker", reason="Delivered")
    OrderEvent.objects.filter(pk=event.pk).update(created_at=at + timedelta(seconds=4))
    listed = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "2025-03-04 05:06:07 UTC" in listed and "2025-03-04 05:06:10 UTC" in listed
    page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    for second in range(7, 12):  # created, paid, delivered, status changed, the timeline's event
        assert f"2025-03-04 05:06:{second:02d} UTC" in page


# --- Search --------------------------------------------------------------------------------


@pytest.fixture
def found_order(make_order):
    """An order with every handle an operator may search by, and one that shares none."""
    make_order(S.DELIVERED, recipient_user_id="100000009", recipient_username="@someone_else",
               buyer_telegram_id=300000009)
    order = make_order(S.DELIVERED, recipient_user_id="100000001", recipient_username="@sandbox_ok",
                       buyer_telegram_id=300000001)
    TelegramUser.objects.create(telegram_id=300000001, username="Buyer_Bob")
    TelegramUser.objects.create(telegram_id=300000009, username="buyer_other")
    invoice = PaymentInvoice.objects.create(
        order=order, provider="ton", account="testnet:wallet", provider_invoice_id="inv-77",
        comment="st-4f2a9c", amount_minor=5_000_000_000, currency="TON", exponent=9,
        expires_at=timezone.now())
    event = PaymentEvent.objects.create(provider="ton", event_key="lt-48213:9f1c", kind="transfer",
                                        order=order, invoice=invoice)
    Payment.objects.create(order=order, invoice=invoice, event=event, provider="ton",
                           provider_reference="9f1cabc0ffee", amount=Decimal("5"), currency="TON")
    return order


@pytest.mark.parametrize("term", [
    "reference", "100000001", "sandbox_ok", "@sandbox_ok", "300000001", "buyer_bob", "@Buyer_Bob",
    "inv-77", "st-4f2a9c", "9f1cabc0ffee", "lt-48213:9f1c",
])
def test_order_search_by_every_handle(admin_client, found_order, term):
    term = found_order.reference if term == "reference" else term
    response = admin_client.get(reverse(CHANGELIST), {"q": term})
    assert [order.pk for order in response.context["cl"].result_list] == [found_order.pk]


def test_buyer_username_search_keeps_the_list_filters(admin_client, found_order):
    response = admin_client.get(reverse(CHANGELIST), {"q": "buyer_bob", "status__exact": S.PAID})
    assert list(response.context["cl"].result_list) == []


@pytest.mark.parametrize("term", ["", "ORD", "buyer_bob"])
def test_changelist_queries_do_not_grow_with_orders(admin_client, make_order, term,
                                                    django_assert_max_num_queries):
    TelegramUser.objects.create(telegram_id=300000001, username="buyer_bob")
    for number in range(50):
        order = make_order(S.DELIVERED, buyer_telegram_id=300000001)
        PaymentInvoice.objects.create(order=order, provider="sandbox", provider_invoice_id=f"i{number}",
                                      amount_minor=850, currency="USD", exponent=2,
                                      expires_at=timezone.now())
        Payment.objects.create(order=order, provider="sandbox", provider_reference=f"p{number}",
                               amount=Decimal("8.50"), currency="USD")
    # None per order: session, user, OTP devices, the count, the page and the first and last
    # order's date for the date navigation (test_admin_list.py checks their shape too).
    with django_assert_max_num_queries(6):
        response = admin_client.get(reverse(CHANGELIST), {"q": term} if term else {})
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == (0 if term == "ORD" else 50)


# --- The Queue filter ------------------------------------------------------------------------


def test_the_queue_filter_lists_every_queue_by_name(admin_client, make_order):
    make_order(S.PAID)
    body = admin_client.get(reverse(CHANGELIST)).content.decode()
    for name, label in (("on_hold_balance", "On hold: supplier balance too low"),
                        ("overpaid", "Overpaid: excess to refund"),
                        ("paid_undelivered", "Paid, not delivered after 10 minutes")):
        assert f"?queue={name}" in body and label in body


def test_a_queue_lists_its_orders_only(admin_client, make_order, settings):
    now = timezone.now()
    late = make_order(S.PROCESSING, paid_at=now - timedelta(minutes=30))
    recent = make_order(S.PROCESSING, paid_at=now - timedelta(minutes=2))
    held = make_order(S.ON_HOLD, status_reason="Supplier balance too low")
    response = admin_client.get(reverse(CHANGELIST), {"queue": "paid_undelivered"})
    assert [order.pk for order in response.context["cl"].result_list] == [late.pk]
    settings.CONSOLE_UNDELIVERED_MINUTES = 1
    response = admin_client.get(reverse(CHANGELIST), {"queue": "paid_undelivered"})
    assert {order.pk for order in response.context["cl"].result_list} == {late.pk, recent.pk}
    response = admin_client.get(reverse(CHANGELIST), {"queue": "on_hold_balance"})
    assert [order.pk for order in response.context["cl"].result_list] == [held.pk]


def test_the_overpaid_queue_drops_an_order_once_its_excess_is_refunded(admin_client, make_order):
    order = make_order(S.DELIVERED, paid_at=timezone.now())
    payment = Payment.objects.create(order=order, provider="ton", provider_reference="tx-1",
                                     amount=Decimal("5.2"), currency="TON", excess_minor=10)
    Payment.objects.create(order=order, provider="ton", provider_reference="tx-2",
                           amount=Decimal("5.2"), currency="TON", excess_minor=10)
    listed = admin_client.get(reverse(CHANGELIST), {"queue": "overpaid"}).context["cl"]
    assert [row.pk for row in listed.result_list] == [order.pk]  # once, with two payments
    Payment.objects.filter(order=order).exclude(pk=payment.pk).update(
        status=Payment.Status.REFUNDED)
    Payment.objects.filter(pk=payment.pk).update(excess_refunded_at=timezone.now())
    listed = admin_client.get(reverse(CHANGELIST), {"queue": "overpaid"}).context["cl"]
    assert listed.result_count == 0


def test_an_unknown_queue_is_refused(admin_client, make_order):
    make_order(S.PAID)
    response = admin_client.get(reverse(CHANGELIST), {"queue": "everything"})
    assert response.status_code == 302 and "e=1" in response["Location"]
