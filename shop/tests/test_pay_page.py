"""The pay page and status page name what the buyer must actually send, by one deadline.

TON against the local fake toncenter at $5.00 per TON: $8.50 is 1.70 TON.
"""

import re

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format

from fakes.ton_fixtures import ton_shop, toncenter, toncenter_options  # noqa: F401
from orders.models import Order, OrderStatus, PaymentInvoice
from orders.payments.services import payments_poll
from shop.tests.conftest import Buyer, page, pay_url, status_url


@pytest.fixture
def ton_order(buyer: Buyer, standard, supplier, ton_shop) -> Order:  # noqa: F811
    """A $8.50 order the buyer chose to pay in TON; its pay page not seen yet."""
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    response = buyer.confirm(payment_method="ton")
    assert response.status_code == 302, page(response)
    return Order.objects.get()


def _pay_by(invoice_or_order) -> str:
    return date_format(timezone.localtime(invoice_or_order.expires_at), "H:i T")


def test_ton_pay_page_shows_the_ton_amount_the_method_and_one_deadline(ton_order, buyer):
    html = page(buyer.client.get(pay_url(ton_order)))

    invoice = ton_order.invoices.get()
    assert invoice.expires_at < ton_order.expires_at  # the quote lapses first: it is the deadline
    assert '<dd class="price" data-amount>1.70 TON</dd>' in html
    assert "<dd data-method>TON</dd>" in html
    assert "Send exactly 1.70 TON to the wallet below with this comment." in html
    assert html.count("Pay by") == 1 and f"<dd data-pay-by>{_pay_by(invoice)}</dd>" in html
    assert "held for you until" not in html
    # The page follows the order and reloads for a fresh quote when this one lapses.
    assert f'data-next-url="{status_url(ton_order)}"' in html
    seconds = int(re.search(r'data-reload-in="(\d+)"', html).group(1))
    assert abs(seconds - (invoice.expires_at - timezone.now()).total_seconds()) < 5
    assert "js/status.js" in html


def test_status_page_asks_for_the_ton_amount_not_the_dollar_price(ton_order, buyer):
    buyer.client.get(pay_url(ton_order))
    invoice = ton_order.invoices.get()

    html = page(buyer.client.get(status_url(ton_order)))
    payload = buyer.client.get(reverse("shop:order_status_json", args=[ton_order.public_id])).json()

    assert "Waiting for your payment of 1.70 TON." in html
    assert "$8.50" in html  # the order's price, still shown as its price
    assert f"<dd>{_pay_by(invoice)}</dd>" in html
    assert payload["message"] == "Waiting for your payment of 1.70 TON."


def test_before_any_invoice_the_price_and_order_window_are_shown(ton_order, buyer):
    html = page(buyer.client.get(status_url(ton_order)))

    assert "Waiting for your payment of $8.50." in html
    assert f"<dd>{_pay_by(ton_order)}</dd>" in html


def test_a_quote_that_lasts_as_long_as_the_order_needs_no_reload(buyer, standard, supplier):
    order = buyer.place(standard)

    html = page(buyer.client.get(pay_url(order)))

    assert "data-reload-in" not in html
    assert f"<dd data-pay-by>{_pay_by(order)}</dd>" in html


def test_switching_from_ton_to_the_sandbox_and_a_late_ton_payment_still_counts(ton_order, buyer,
                                                                             ton_shop):  # noqa: F811
    buyer.client.get(pay_url(ton_order))
    ton_invoice = ton_order.invoices.get()

    buyer.client.post(pay_url(ton_order), {"action": "method", "payment_method": "sandbox"})
    html = page(buyer.client.get(pay_url(ton_order)))

    assert "<dd data-method>Sandbox payment (test mode)</dd>" in html
    assert '<dd class="price" data-amount>$8.50</dd>' in html
    assert 'name="payment_method" value="ton"' in html
    ton_invoice.refresh_from_db()
    assert ton_invoice.status == PaymentInvoice.Status.CANCELLED
    # The buyer had already sent the TON before switching; the poller finds it afterwards.
    ton_shop.transfer(ton_invoice.comment, ton_invoice.amount_minor)
    payments_poll()
    ton_order.refresh_from_db()
    assert ton_order.status == OrderStatus.PAID
    assert ton_order.payments.get().invoice == ton_invoice
    assert buyer.client.get(pay_url(ton_order)).url == status_url(ton_order)
