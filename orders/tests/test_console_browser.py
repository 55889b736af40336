"""An Operator works the console in headless Chromium: a held order, found, understood, delivered.

The shop runs on live_server with django-q2 in sync mode (a resumed order is fulfilled in the
request that resumed it); the supplier is the real sandbox fake over HTTP, whose own dashboard
page the operator tops up, as they would top up at the real supplier.
"""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from orders import services
from orders.models import Order, OrderStatus
from orders.tests.roles import roles_restore
from shop.tests.test_browser import _new_page, browser  # noqa: F401

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "operator-password-for-tests"  # noqa: S105 (a test user's password)


@pytest.fixture
def q_sync(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def held_order(catalog, supplier, q_sync) -> Order:
    """A paid Standard 500 order that the supplier refused for its balance: on hold."""
    supplier.set_balance("5.00")  # under the order's cost at the supplier
    _, info = services.recipient_validate(raw="@sandbox_ok")
    order = services.order_create(
        channel="web", product=catalog, recipient_input="@sandbox_ok", recipient=info,
        payment_method="sandbox", package_id=catalog.packages.get(quantity=500).pk)
    services.order_pay_sandbox(order=order)  # fulfilled in-process (sync): the supplier refuses
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD, order.status_reason
    return order


@pytest.fixture
def operator(django_user_model):
    roles_restore()  # a transactional test before this one flushed the migrated groups
    user = django_user_model.objects.create_user(username="olga", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    return user


def test_an_operator_finds_a_held_order_tops_up_the_supplier_and_watches_it_deliver(
    browser, live_server, held_order, operator, supplier  # noqa: F811
):
    context, page = _new_page(browser, live_server)
    try:
        page.goto("/admin/")
        page.get_by_label("Username").fill("olga")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        # The admin home: the supplier balance read now, and the queue with its count.
        page.get_by_role("button", name="Check the balance now").click()
        expect(page.locator("#supplier-balance")).to_contain_text("5.00 USD")
        queue = page.locator("#problem-queues tr", has_text="On hold: supplier balance too low")
        expect(queue.locator(".queue-count")).to_have_text("1")
        queue.get_by_role("link").click()

        # The queue lists the order; its page says why it is held and what it waits for.
        page.get_by_role("link", name=held_order.reference).click()
        expect(page.locator("body")).to_contain_text("Supplier balance too low")
        expect(page.locator("body")).to_contain_text(
            f"Waits for a supplier balance of at least {held_order.cost} USD")
        expect(page.locator("body")).to_contain_text("Supplier balance: 5.00 USD")
        order_url = page.url

        # At the supplier: top up the wallet on its own dashboard.
        page.goto(f"{supplier.url}/_sandbox/")
        page.get_by_label("Top up by").fill("100.00")
        page.get_by_role("button", name="Top up").click()
        expect(page.locator("#balance")).to_have_text("105.00")

        # Back in the console: the next balance check resumes the order, and it delivers.
        page.goto("/admin/")
        page.get_by_role("button", name="Check the balance now").click()
        expect(page.locator("#supplier-balance")).to_contain_text("105.00 USD")
        page.goto(order_url)
        expect(page.locator(".field-status .readonly").first).to_have_text("Delivered")
    finally:
        context.close()

    held_order.refresh_from_db()
    assert held_order.status == OrderStatus.DELIVERED
    assert supplier.topup_calls(held_order.idempotency_key) == 2  # refused once, then placed
    assert supplier.balance() == Decimal("105.00") - held_order.cost
    resumed = held_order.events.get(from_status=OrderStatus.ON_HOLD, to_status=OrderStatus.PAID)
    assert resumed.actor == "balance-check", resumed.actor  # not the 5-minute sweeper
    assert resumed.reason.startswith("Supplier reachable, balance 105.00 USD"), resumed.reason
