"""A web buyer's receipt: the optional e-mail, the receipt sent once, and finding an order again."""

import re

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from orders.models import Order, OrderEvent, OrderStatus
from shop import services
from shop.tasks import order_receipt
from shop.tests.conftest import Buyer, page

RU_HEADERS = {"HTTP_ACCEPT_LANGUAGE": "ru-RU,ru;q=0.9"}
NO_MATCH = "No order matches that order number and recipient or e-mail. Check both and try again."
TOO_MANY = "Too many tries. Please wait ten minutes and try again."
EMAIL = "Ann.Buyer@Example.com"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The lookup throttle counts in the cache: every test starts with no guesses."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def receipts(settings):
    settings.ORDER_NOTICE_TASKS = {"web": "shop.tasks.order_receipt"}
    settings.SITE_URL = "https://shop.example.com/"
    settings.SHOP_NAME = "Stars Reseller"


def _deliver(buyer: Buyer, package, capture, **place) -> Order:
    """Place (with the confirm page's extra fields), pay in test mode, and let the worker finish."""
    chosen = buyer.choose_package(package)
    assert chosen.status_code == 302
    entered = buyer.enter_recipient(place.pop("recipient", "@sandbox_ok"))
    assert entered.status_code == 302
    confirmed = buyer.confirm(**place)
    assert confirmed.status_code == 302, page(confirmed)
    order = Order.objects.get(public_id=confirmed.url.split("/")[2])
    with capture(execute=True):
        buyer.pay(order)
    order.refresh_from_db()
    return order


# --- The confirm page -----------------------------------------------------------------------


def test_confirm_page_offers_an_optional_receipt_email(buyer, standard, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    html = page(buyer.confirm_page())

    assert 'type="email" name="buyer_email"' in html
    assert "E-mail for a receipt (optional)" in html


def test_the_email_is_stored_on_the_order(buyer, standard, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    response = buyer.confirm(buyer_email=EMAIL)

    assert response.status_code == 302
    assert Order.objects.get().buyer_email == EMAIL


def test_an_invalid_email_is_refused_on_the_form(buyer, standard, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    response = buyer.confirm(buyer_email="not an address")

    assert response.status_code == 400
    assert "Enter a valid e-mail address, or leave it empty." in page(response)
    assert not Order.objects.exists()


# --- The receipt ----------------------------------------------------------------------------


def test_delivered_order_gets_one_receipt_with_everything_on_it(
        buyer, standard, supplier, q_sync, receipts, django_capture_on_commit_callbacks):
    order = _deliver(buyer, standard, django_capture_on_commit_callbacks, buyer_email=EMAIL)

    assert order.status == OrderStatus.DELIVERED
    assert len(mail.outbox) == 1
    # The task runs again (a retried or duplicated job): nothing more is sent.
    assert order_receipt(order.pk, OrderStatus.DELIVERED) == "skipped"
    assert order_receipt(order.pk, OrderStatus.DELIVERED) == "skipped"
    assert len(mail.outbox) == 1

    message = mail.outbox[0]
    payment = order.payments.get()
    assert message.to == [EMAIL]
    assert message.subject == f"Stars Reseller: order {order.reference} — Delivered"
    body = message.body
    assert f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}" in body
    assert f"Order: {order.reference}\n" in body
    assert "Status: Delivered\n" in body
    assert "Stars: 500\n" in body
    assert "To: @sandbox_ok\n" in body
    assert "Paid: $8.50\n" in body
    assert "Payment method: Sandbox payment (test mode)\n" in body
    assert f"Payment reference: {payment.provider_reference}\n" in body
    assert order.supplier_order_id and f"Supplier order ID: {order.supplier_order_id}\n" in body
    assert f"https://shop.example.com/orders/{order.public_id}/\n" in body
    assert "https://shop.example.com/orders/find/\n" in body
    note = OrderEvent.objects.get(order=order, reason="Receipt e-mailed")
    assert note.data == {"receipt": "delivered", "to": EMAIL}


def test_no_receipt_without_an_address(buyer, standard, supplier, q_sync, receipts,
                                       django_capture_on_commit_callbacks):
    order = _deliver(buyer, standard, django_capture_on_commit_callbacks)

    assert order.status == OrderStatus.DELIVERED
    assert order_receipt(order.pk, OrderStatus.DELIVERED) == "skipped"
    assert mail.outbox == []
    assert not OrderEvent.objects.filter(order=order, reason="Receipt e-mailed").exists()


def test_failed_delivery_mails_the_refund_with_its_reference(
        buyer, catalog, supplier, q_sync, receipts, django_capture_on_commit_callbacks):
    starter = catalog.packages.get(name="Starter")
    order = _deliver(buyer, starter, django_capture_on_commit_callbacks,
                     recipient="@sandbox_fail", buyer_email=EMAIL)

    assert order.status == OrderStatus.REFUNDED
    subjects = [message.subject for message in mail.outbox]
    assert f"Stars Reseller: order {order.reference} — Not delivered, refunded" in subjects
    assert len(subjects) == len(set(subjects)) <= 2  # refund_pending and refunded, once each
    refunded = next(m for m in mail.outbox if m.subject.endswith("refunded"))
    payment = order.payments.get()
    assert "Your payment has been refunded." in refunded.body
    assert f"Payment reference: {payment.provider_reference}\n" in refunded.body
    assert f"Refund reference: {payment.refund_reference}\n" in refunded.body
    assert order_receipt(order.pk, OrderStatus.REFUNDED) == "skipped"
    # A late refund_pending job: the refunded receipt already says more.
    assert order_receipt(order.pk, OrderStatus.REFUND_PENDING) == "skipped"
    assert len(mail.outbox) == len(subjects)


def test_receipt_is_in_the_language_the_buyer_ordered_in(
        standard, supplier, q_sync, receipts, django_capture_on_commit_callbacks):
    order = _deliver(Buyer(Client(**RU_HEADERS)), standard, django_capture_on_commit_callbacks,
                     buyer_email=EMAIL)

    message = mail.outbox[0]
    assert message.subject == f"Stars Reseller: заказ {order.reference} — Доставлен"
    assert f"✅ 500 звёзд отправлено @sandbox_ok. Заказ #{order.reference}" in message.body
    assert "Статус: Доставлен\n" in message.body
    assert "Оплачено: 8,50 $\n" in message.body
    assert "Способ оплаты: Тестовая оплата (песочница)\n" in message.body


def test_a_failed_send_is_retried_by_the_next_run(make_order_with_email, monkeypatch):
    order = make_order_with_email(OrderStatus.DELIVERED)

    def refuse(self, fail_silently=False):
        raise ConnectionRefusedError("SMTP server down")

    with monkeypatch.context() as patch:
        patch.setattr("django.core.mail.EmailMessage.send", refuse)
        with pytest.raises(ConnectionRefusedError):
            order_receipt(order.pk, OrderStatus.DELIVERED)
    assert not OrderEvent.objects.filter(order=order, reason="Receipt e-mailed").exists()

    assert order_receipt(order.pk, OrderStatus.DELIVERED) == "sent"
    assert len(mail.outbox) == 1


@pytest.fixture
def make_order_with_email(catalog, settings):
    """An order row in a given status with a receipt address (set-up only)."""
    import uuid
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    def make(status: str, **fields) -> Order:
        values = {
            "channel": "web", "product": catalog, "product_name": catalog.name,
            "package_name": "Standard", "platform": "telegram", "stars": 500,
            "recipient_input": "@sandbox_ok", "recipient_user_id": "100000001",
            "recipient_username": "sandbox_ok", "price": Decimal("8.50"), "currency": "USD",
            "supplier_code": "sandbox", "cost": Decimal("8.25"), "cost_currency": "USD",
            "payment_method": "sandbox", "idempotency_key": uuid.uuid4().hex,
            "expires_at": timezone.now() + timedelta(minutes=30), "status": status,
            "buyer_email": EMAIL, **fields,
        }
        order = Order.objects.create(**values)
        order.reference = f"ORD-{order.pk:06d}"
        order.save(update_fields=["reference"])
        return order

    return make


# --- Finding an order again -----------------------------------------------------------------


def _find(client: Client, reference: str, secret: str, ip: str = "203.0.113.7"):
    return client.post(reverse("shop:order_find"), {"reference": reference, "secret": secret},
                       REMOTE_ADDR=ip)


def _error(response) -> str:
    match = re.search(r'<ul class="errorlist[^"]*" role="alert"><li>(.*?)</li>', page(response))
    return match.group(1).replace("&#x27;", "'") if match else ""


def test_the_site_links_to_the_lookup_page(client, catalog):
    html = page(client.get(reverse("shop:catalog")))

    assert f'<a href="{reverse("shop:order_find")}">Find your order</a>' in html
    lookup = page(client.get(reverse("shop:order_find")))
    assert "<h1>Find your order</h1>" in lookup and 'name="reference"' in lookup


@pytest.mark.parametrize("typed", [
    "@sandbox_ok", "@SANDBOX_OK", " sandbox_ok ", "https://t.me/sandbox_ok", "100000001", EMAIL,
    EMAIL.lower(),
])
def test_reference_and_recipient_or_email_open_the_status_page(client, make_order_with_email, typed):
    order = make_order_with_email(OrderStatus.DELIVERED)
    number = int(order.reference.removeprefix("ORD-"))

    for reference in (order.reference, f" ord-{number} ", f"ORD {number:06d}", f"#{number}"):
        response = _find(client, reference, typed)

        assert response.status_code == 302, _error(response)
        assert response.url == reverse("shop:order_status", args=[order.public_id])


def test_a_wrong_combination_gets_the_same_answer_as_an_unknown_number(client, make_order_with_email):
    order = make_order_with_email(OrderStatus.DELIVERED)
    other = make_order_with_email(OrderStatus.DELIVERED, recipient_username="someone_else",
                                  recipient_input="@someone_else", recipient_user_id="200000002",
                                  buyer_email="")

    in_the_bot = make_order_with_email(OrderStatus.DELIVERED, channel="bot")
    answers = [
        _find(client, in_the_bot.reference, "@sandbox_ok"),  # right, but not a storefront order
        _find(client, order.reference, "@someone_else"),  # the number exists, the recipient is wrong
        _find(client, order.reference, "other@example.com"),
        _find(client, other.reference, EMAIL),  # that order has no e-mail at all
        _find(client, "ORD-999999", "@sandbox_ok"),  # no such number
        _find(client, "not a number", "@sandbox_ok"),
        _find(client, order.reference, "not a recipient!"),
    ]

    assert [response.status_code for response in answers] == [400] * len(answers)
    assert {_error(response) for response in answers} == {NO_MATCH}


def test_guesses_are_throttled_per_client(client, make_order_with_email):
    order = make_order_with_email(OrderStatus.DELIVERED)
    for guess in range(services.LOOKUP_MAX_FAILURES):
        assert _error(_find(client, f"ORD-{900000 + guess}", "@sandbox_ok")) == NO_MATCH

    # Even the right combination is refused now, from this address.
    refused = _find(client, order.reference, "@sandbox_ok")
    assert refused.status_code == 400 and _error(refused) == TOO_MANY
    assert _find(client, order.reference, "@sandbox_ok", ip="198.51.100.9").status_code == 302


def test_guesses_are_throttled_per_order_number(client, make_order_with_email):
    order = make_order_with_email(OrderStatus.DELIVERED)
    for guess in range(services.LOOKUP_MAX_FAILURES):
        response = _find(client, order.reference, f"@guess_{guess:03d}", ip=f"192.0.2.{guess + 1}")
        assert _error(response) == NO_MATCH

    refused = _find(client, order.reference, "@sandbox_ok", ip="198.51.100.9")
    assert _error(refused) == TOO_MANY
    # Another number from a fresh address is not affected.
    another = make_order_with_email(OrderStatus.DELIVERED)
    assert _find(client, another.reference, "@sandbox_ok", ip="198.51.100.10").status_code == 302
