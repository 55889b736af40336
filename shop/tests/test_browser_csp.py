"""Under the Content-Security-Policy, in headless Chromium: nothing blocked, everything still works.

Chromium reports each blocked script, style or image as a `securitypolicyviolation` event and a
console error; both are collected from every page and must stay empty.
"""

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from fakes.ton_fixtures import ton_shop, toncenter, toncenter_options  # noqa: F401
from orders.models import Order, OrderEvent, OrderStatus
from orders.payments.services import payments_poll
from shop.tests.test_browser import _new_page, browser  # noqa: F401

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before any page script (and is not subject to the page's policy): each violation is
# written to the console, where the listener below collects it with Chromium's own messages.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error("CSP violation: " + event.violatedDirective + " blocked " + (event.blockedURI || "inline")
                + " at " + event.sourceFile + ":" + event.lineNumber);
});
"""


class Watched:
    """A browser tab plus every console error, violation and uncaught exception it saw."""

    def __init__(self, tab) -> None:
        self.tab = tab
        self.problems: list[str] = []
        tab.on("console", self._console)
        tab.on("pageerror", lambda error: self.problems.append(f"{tab.url}: uncaught {error}"))

    def _console(self, message) -> None:
        # Chromium asks every site for /favicon.ico; we have none, which is no policy matter.
        if message.location.get("url", "").endswith("/favicon.ico"):
            return
        if message.type in ("error", "warning"):
            self.problems.append(f"{self.tab.url}: {message.type}: {message.text} ({message.location})")

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)


@pytest.fixture
def watched(browser, live_server, transactional_db, catalog, supplier, q_sync, ton_shop):  # noqa: F811
    context, tab = _new_page(browser, live_server)
    context.add_init_script(REPORT_VIOLATIONS)
    yield Watched(tab)
    context.close()


def test_storefront_and_ton_pay_page_run_under_the_policy(watched, ton_shop):  # noqa: F811
    page = watched.tab
    response = page.goto("/")
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    page.get_by_role("button", name=re.compile(r"^Standard\b")).click()
    expect(page).to_have_url(re.compile(r"/recipient/$"))
    page.get_by_label("Telegram user ID or @username").fill("@sandbox_ok")
    page.get_by_role("button", name="Check account").click()
    expect(page).to_have_url(re.compile(r"/confirm/$"))
    page.locator("input[name=payment_method][value=ton]").check()
    page.get_by_role("button", name="Yes, continue").click()
    expect(page).to_have_url(re.compile(r"/orders/[0-9a-f-]{36}/pay/$"))

    # The QR code is a data: image the policy allows: drawn, at its size, not a broken icon.
    qr = page.get_by_role("img", name="QR code of the TON payment link")
    expect(qr).to_be_visible()
    assert qr.evaluate("image => image.complete && image.naturalWidth > 100")
    assert page.locator(".qr").bounding_box()["height"] > 100

    # status.js (a static file the policy allows) moves the page on once the payment lands.
    order = Order.objects.get()
    invoice = order.invoices.get()
    ton_shop.transfer(invoice.comment, invoice.amount_minor)
    payments_poll()
    expect(page).to_have_url(re.compile(rf"/orders/{order.public_id}/$"))
    expect(page.locator("[data-status-message]")).to_have_text(
        f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}")
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED

    # The styles apply: shop.css laid the page out (a card has its padding).
    assert page.locator(".card.status").evaluate("card => getComputedStyle(card).paddingTop") != "0px"
    watched.assert_clean()


def test_admin_login_order_and_catalog_pages_run_under_the_policy(watched, django_user_model, catalog):
    page = watched.tab
    django_user_model.objects.create_superuser(username="operator", email="", password="s3cret-Passw0rd")
    order = _an_order(catalog)

    page.goto(reverse("admin:index"))
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.locator("#id_username").fill("operator")
    page.locator("#id_password").fill("s3cret-Passw0rd")
    page.locator("input[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))

    page.goto(reverse("admin:orders_order_changelist"))
    expect(page.get_by_role("link", name=order.reference)).to_be_visible()
    # The changelist's own script: ticking a row shows the action counter.
    page.locator("input.action-select").first.check()
    expect(page.locator(".action-counter")).to_contain_text("1 of 1 selected")

    page.goto(reverse("admin:orders_order_change", args=[order.pk]))
    expect(page.get_by_role("heading", name="Order events")).to_be_visible()
    # Collapsible fieldsets and the sidebar rely on the admin's static scripts and styles.
    assert page.locator("#nav-sidebar").evaluate("bar => getComputedStyle(bar).display") != "none"

    page.goto(reverse("admin:shop_product_change", args=[catalog.pk]))
    rows = page.locator("#packages-group tbody tr.form-row.has_original")
    count = rows.count()
    page.get_by_role("button", name="Add another Package").click()  # inlines.js clones a row
    expect(page.locator("#packages-group tbody tr.form-row.dynamic-packages")).to_have_count(count + 1)
    watched.assert_clean()


def _an_order(catalog) -> Order:
    """A paid order with a timeline row, so the change page has an inline with content."""
    order = Order.objects.create(
        channel="web", product=catalog, product_name=catalog.name, package_name="Standard",
        platform="telegram", stars=500, recipient_input="@sandbox_ok", recipient_user_id="100000001",
        recipient_username="@sandbox_ok", price=Decimal("8.50"), currency="USD",
        supplier_code="sandbox", cost=Decimal("8.25"), cost_currency="USD", payment_method="sandbox",
        idempotency_key=uuid.uuid4().hex, expires_at=timezone.now() + timedelta(minutes=30),
        status=OrderStatus.PAID)
    order.reference = f"ORD-{order.pk:06d}"
    order.save(update_fields=["reference"])
    OrderEvent.objects.create(order=order, from_status=OrderStatus.AWAITING_PAYMENT,
                              to_status=OrderStatus.PAID, actor="payment:sandbox", reason="Paid")
    return order


def test_a_blocked_inline_script_is_seen(watched):
    """The watch itself: were the policy to block something, the tests above would hear of it."""
    page = watched.tab
    page.goto(reverse("shop:terms"))
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "document.body.dataset.ran = 'yes'";
        document.body.append(script);
    }""")
    expect(page.locator("body")).not_to_have_attribute("data-ran", "yes")
    page.wait_for_timeout(200)  # the violation event is queued as a task
    assert any("CSP violation: script-src-elem blocked inline" in problem for problem in watched.problems), \
        watched.problems
