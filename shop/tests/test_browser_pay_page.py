"""The pay page in headless Chromium: it follows the order by itself, and only the buyer gets it."""

import re

import pytest

from fakes.ton_fixtures import ton_shop, toncenter, toncenter_options  # noqa: F401
from orders.models import Order, OrderStatus
from orders.payments.services import payments_poll
from shop.tests.test_browser import _new_page, browser  # noqa: F401

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser, live_server, transactional_db, catalog, supplier, q_sync, ton_shop):  # noqa: F811
    context, tab = _new_page(browser, live_server)
    yield tab
    context.close()


def _order_with(page, method: str) -> Order:
    page.goto("/")
    page.get_by_role("button", name=re.compile(r"^Standard\b")).click()
    page.get_by_label("Telegram user ID or @username").fill("@sandbox_ok")
    page.get_by_role("button", name="Check account").click()
    page.locator(f"input[name=payment_method][value={method}]").check()
    page.get_by_role("button", name="Yes, continue").click()
    expect(page).to_have_url(re.compile(r"/orders/[0-9a-f-]{36}/pay/$"))
    return Order.objects.get()


def test_ton_pay_page_moves_to_the_status_page_when_the_payment_arrives(page, ton_shop):  # noqa: F811
    order = _order_with(page, "ton")
    expect(page.locator("[data-amount]")).to_have_text("1.70 TON")
    expect(page.locator("[data-method]")).to_have_text("TON")
    invoice = order.invoices.get()

    # The buyer pays from their wallet app; the shop's poller reads the chain. No click here.
    ton_shop.transfer(invoice.comment, invoice.amount_minor)
    payments_poll()

    expect(page).to_have_url(re.compile(rf"/orders/{order.public_id}/$"))
    expect(page.locator("[data-status-message]")).to_have_text(
        f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}")
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED


def test_switching_method_in_the_browser(page, ton_shop):  # noqa: F811
    order = _order_with(page, "ton")

    page.get_by_label("Sandbox payment (test mode)").check()
    page.get_by_role("button", name="Switch payment method").click()

    expect(page.get_by_role("status")).to_have_text("You now pay with Sandbox payment (test mode).")
    expect(page.locator("[data-amount]")).to_have_text("$8.50")
    page.get_by_role("button", name="Simulate payment (test mode)").click()
    expect(page.locator("[data-status-message]")).to_contain_text("500 Stars sent to @sandbox_ok")
    order.refresh_from_db()
    assert (order.status, order.payment_method) == (OrderStatus.DELIVERED, "sandbox")


def test_a_forwarded_link_only_watches_and_the_buyers_link_manages(page, browser, live_server):  # noqa: F811
    order = _order_with(page, "sandbox")
    page.goto(f"/orders/{order.public_id}/")
    owner_url = page.locator("#owner-url").input_value()

    context, other = _new_page(browser, live_server)
    try:
        other.goto(f"/orders/{order.public_id}/pay/")
        expect(other).to_have_url(re.compile(rf"/orders/{order.public_id}/$"))
        expect(other.get_by_text("Only the buyer who placed this order can pay for it or cancel it.")).to_be_visible()
        expect(other.get_by_role("button", name="Cancel order")).to_have_count(0)
        expect(other.get_by_role("link", name="Pay now")).to_have_count(0)

        other.goto(owner_url)
        expect(other).to_have_url(re.compile(rf"/orders/{order.public_id}/$"))  # the key is dropped
        other.get_by_role("link", name="Pay now").click()
        other.get_by_role("button", name="Cancel order").click()
        expect(other.locator("[data-status-message]")).to_have_text(
            "This order was cancelled. Nothing was charged.")
    finally:
        context.close()
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
