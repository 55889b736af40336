"""A link is not an owner: only the order's buyer may change it; anyone with the link may watch.

The buyer is the session that placed the order, or a session that opened the buyer's own link
(shop.ownership.order_owner_url), whose signed key is dropped from the address at once.
"""

import logging
import re
from urllib.parse import urlsplit

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from orders.models import Order, OrderEvent, OrderStatus, PaymentInvoice
from orders.services import order_create
from orders.suppliers.base import RecipientInfo
from shop import ownership
from shop.tests.conftest import Buyer, page, pay_url, status_url

OWNER_URL_RE = re.compile(r'id="owner-url" readonly value="([^"]+)"')


@pytest.fixture
def order(buyer: Buyer, standard, supplier) -> Order:
    """An order placed by `buyer`, with its sandbox invoice open (the buyer saw the pay page)."""
    placed = buyer.place(standard)
    assert buyer.client.get(pay_url(placed)).status_code == 200
    return placed


@pytest.fixture
def stranger(db) -> Client:
    """Another browser that has the order's link (someone it was forwarded to)."""
    return Client()


def _unchanged(order: Order) -> None:
    before = (order.status, order.payment_method)
    order.refresh_from_db()
    assert (order.status, order.payment_method) == before == (OrderStatus.AWAITING_PAYMENT, "sandbox")
    assert not order.payments.exists()
    assert order.invoices.get().status == PaymentInvoice.Status.OPEN


# --- A stranger with the link --------------------------------------------------------------


@pytest.mark.parametrize("data", [
    {"action": "cancel"},
    {"action": "pay"},
    {"action": "simulate"},
    {"action": "method", "payment_method": "sandbox"},
    {"action": "anything"},
])
def test_a_stranger_cannot_change_the_order(order, stranger, caplog, data):
    with caplog.at_level(logging.WARNING, logger="shop.views"):
        response = stranger.post(pay_url(order), data)

    assert response.status_code == 403
    html = page(response)
    assert "Only the buyer can change this order" in html
    assert f"Nothing was changed: order {order.reference} was placed in another browser." in html
    assert f'href="{status_url(order)}"' in html
    _unchanged(order)
    assert [record.getMessage() for record in caplog.records if record.name == "shop.views"] == [
        f"order {order.reference}: {data['action']!r} refused, the request is not from the order's buyer"]


def test_a_strangers_refusal_is_the_same_once_the_order_is_paid(order, buyer, stranger):
    buyer.pay(order)

    response = stranger.post(pay_url(order), {"action": "cancel"})

    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID


def test_a_stranger_opening_the_pay_page_sees_the_status_and_opens_no_invoice(buyer, standard, supplier,
                                                                            stranger):
    order = buyer.place(standard)

    response = stranger.get(pay_url(order))

    assert response.status_code == 302 and response.url == status_url(order)
    assert not order.invoices.exists()  # no call to the provider on a stranger's behalf


def test_a_stranger_watching_gets_no_buttons_and_no_buyers_link(order, stranger):
    html = page(stranger.get(status_url(order)))

    assert "Waiting for your payment of $8.50." in html
    assert "Pay now" not in html and pay_url(order) not in html
    assert "Only the buyer who placed this order can pay for it or cancel it." in html
    assert 'id="owner-url"' not in html and "?key=" not in html
    assert stranger.get(reverse("shop:order_status_json", args=[order.public_id])).status_code == 200


def test_the_buyer_still_acts_on_their_order(order, buyer):
    html = page(buyer.client.get(status_url(order)))
    assert "Pay now" in html

    response = buyer.client.post(pay_url(order), {"action": "cancel"})

    assert response.url == status_url(order)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


# --- The buyer's link, for their other devices ---------------------------------------------


def test_the_buyer_sees_their_link_on_their_status_page(order, buyer):
    html = page(buyer.client.get(status_url(order)))

    owner_url = OWNER_URL_RE.search(html).group(1)
    assert owner_url == f"http://testserver{status_url(order)}?key={ownership.order_owner_key(order)}"
    assert "Link to manage this order from another device" in html
    assert "whoever opens it can manage this order" in html


def test_the_buyers_link_grants_another_browser_and_leaves_the_address(order, stranger, caplog):
    link = urlsplit(ownership.order_owner_url(order))

    with caplog.at_level(logging.INFO, logger="shop.views"):
        response = stranger.get(f"{link.path}?{link.query}")

    assert response.status_code == 302
    assert response.url == status_url(order)  # the key is gone from the address bar
    assert f"order {order.reference}: buyer's link opened in another session" in caplog.messages
    html = page(stranger.get(response.url))
    assert "Pay now" in html and 'id="owner-url"' in html
    assert stranger.get(pay_url(order)).status_code == 200
    response = stranger.post(pay_url(order), {"action": "cancel"})
    assert response.url == status_url(order)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_the_buyers_link_works_on_the_pay_page_too(order, stranger):
    response = stranger.get(f"{pay_url(order)}?key={ownership.order_owner_key(order)}")

    assert response.status_code == 302 and response.url == pay_url(order)
    assert "Simulate payment (test mode)" in page(stranger.get(pay_url(order)))


def test_order_owner_url_is_absolute_on_the_site(order, settings):
    settings.SITE_URL = "https://stars.example/"

    assert ownership.order_owner_url(order) == (
        f"https://stars.example/orders/{order.public_id}/?key={ownership.order_owner_key(order)}")


@pytest.mark.parametrize("key", ["", "forged", "x" * 500, "a:b"])
def test_a_wrong_key_grants_nothing(order, stranger, caplog, key):
    with caplog.at_level(logging.WARNING, logger="shop.views"):
        response = stranger.get(f"{status_url(order)}?key={key}")

    assert response.url == status_url(order)
    assert f"order {order.reference}: link with a wrong buyer's key refused" in caplog.messages
    html = page(stranger.get(response.url))
    assert "That link does not let you manage this order." in html
    assert "Pay now" not in html
    assert stranger.post(pay_url(order), {"action": "cancel"}).status_code == 403
    _unchanged(order)


def test_one_orders_key_does_not_open_another(buyer, standard, supplier, stranger):
    first = buyer.place(standard)
    second = buyer.place(standard)

    stranger.get(f"{status_url(second)}?key={ownership.order_owner_key(first)}")

    assert stranger.post(pay_url(second), {"action": "cancel"}).status_code == 403
    second.refresh_from_db()
    assert second.status == OrderStatus.AWAITING_PAYMENT


@pytest.mark.parametrize("channel", ["bot", "api"])
def test_orders_from_the_bot_or_api_cannot_be_acted_on_from_the_web(catalog, stranger, channel):
    order = order_create(
        channel=channel, product=catalog, recipient_input="100000001",
        recipient=RecipientInfo(user_id="100000001", username="@sandbox_ok"),
        payment_method="sandbox" if channel == "bot" else "balance",
        package_id=catalog.packages.get(name="Standard").pk,
        buyer_telegram_id=42 if channel == "bot" else None,
    )
    signed = ownership._signer().signature(order.public_id.hex)

    stranger.get(f"{status_url(order)}?key={signed}")

    with pytest.raises(ValueError):
        ownership.order_owner_url(order)
    assert stranger.post(pay_url(order), {"action": "cancel"}).status_code == 403
    assert stranger.get(pay_url(order)).url == status_url(order)
    assert "Pay now" not in page(stranger.get(status_url(order)))
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_PAYMENT and not order.invoices.exists()


def test_the_session_remembers_a_bounded_number_of_granted_orders(order, stranger):
    session = stranger.session
    session[ownership.SESSION_GRANTED_ORDERS] = [f"{n:032x}" for n in range(ownership.KEEP_GRANTS)]
    session.save()

    stranger.get(f"{status_url(order)}?key={ownership.order_owner_key(order)}")

    granted = stranger.session[ownership.SESSION_GRANTED_ORDERS]
    assert len(granted) == ownership.KEEP_GRANTS and granted[-1] == order.public_id.hex


# --- Switching the payment method ----------------------------------------------------------


@pytest.fixture
def ton_on(settings):
    """TON offered on the storefront beside the sandbox (no TON invoice is opened here)."""
    settings.PAYMENT_METHODS = {**settings.PAYMENT_METHODS,
                                "ton": {**settings.PAYMENT_METHODS["ton"], "enabled": True}}


def test_the_pay_page_names_the_method_and_offers_the_others(buyer, standard, supplier, ton_on):
    order = buyer.place(standard)

    html = page(buyer.client.get(pay_url(order)))

    assert re.search(r"<dt>Payment method</dt><dd data-method>Sandbox payment \(test mode\)</dd>", html)
    assert "Pay another way" in html
    assert 'name="payment_method" value="ton"' in html
    assert 'name="payment_method" value="sandbox"' not in html
    assert html.count("Pay by") == 1


def test_no_switch_is_offered_with_one_method(order, buyer):
    assert "Pay another way" not in page(buyer.client.get(pay_url(order)))


def test_switching_closes_the_open_invoice_and_records_it(order, buyer, ton_on):
    old = order.invoices.get()

    response = buyer.client.post(pay_url(order), {"action": "method", "payment_method": "ton"})

    assert response.status_code == 302 and response.url == pay_url(order)
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["You now pay with TON."]
    order.refresh_from_db()
    assert order.payment_method == "ton" and order.status == OrderStatus.AWAITING_PAYMENT
    old.refresh_from_db()
    assert old.status == PaymentInvoice.Status.CANCELLED
    note = OrderEvent.objects.filter(order=order).latest("pk")
    assert note.actor == "buyer:web" and note.reason == "Payment method changed from sandbox to ton"


@pytest.mark.parametrize("method", ["", "stripe", "telegram", "bogus"])
def test_switching_to_a_method_not_offered_is_refused(order, buyer, ton_on, method):
    response = buyer.client.post(pay_url(order), {"action": "method", "payment_method": method})

    assert response.url == pay_url(order)
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "That payment method is not available here."]
    _unchanged(order)


def test_switching_after_payment_changes_nothing(order, buyer, ton_on):
    buyer.pay(order)

    response = buyer.client.post(pay_url(order), {"action": "method", "payment_method": "ton"})

    assert response.url == status_url(order)
    order.refresh_from_db()
    assert (order.status, order.payment_method) == (OrderStatus.PAID, "sandbox")


def test_the_refusal_in_russian(order, db):
    stranger = Client(HTTP_ACCEPT_LANGUAGE="ru")

    html = page(stranger.post(pay_url(order), {"action": "cancel"}))

    assert "Изменить заказ может только покупатель" in html
    assert f"Ничего не изменено: заказ {order.reference} оформлен в другом браузере." in html
    assert "Следить за заказом" in html
