"""The storefront in headless Chromium, clicked through as a new buyer would, against live_server."""

import os
import re
from collections.abc import Iterator

import pytest

from orders.models import Order, OrderStatus
from orders.services import order_fulfil

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 375, "height": 667}
WIDE_USERNAME = "@" + "W" * 32

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser() -> Iterator["playwright_sync.Browser"]:
    if not os.path.exists(CHROMIUM):
        message = "chromium not installed: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # Playwright's sync API keeps an event loop on this thread, which Django's ORM guard
    # mistakes for async code; the ORM calls here are plain synchronous ones.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with playwright_sync.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


def _new_page(browser, live_server, **options):
    context = browser.new_context(base_url=live_server.url, **options)
    context.set_default_timeout(15_000)
    return context, context.new_page()


@pytest.fixture
def page(browser, live_server, transactional_db, catalog, supplier, q_sync):
    """A fresh browser profile; payments are fulfilled in-process on commit (django-q sync)."""
    context, tab = _new_page(browser, live_server)
    yield tab
    context.close()


def test_buy_standard_500_for_sandbox_ok(page):
    page.goto("/")
    page.get_by_role("button", name=re.compile(r"^Standard\b")).click()

    expect(page).to_have_url(re.compile(r"/recipient/$"))
    page.get_by_label("Telegram user ID or @username").fill("@sandbox_ok")
    page.get_by_role("button", name="Check account").click()

    expect(page).to_have_url(re.compile(r"/confirm/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Topping up @sandbox_ok — is this correct?")
    expect(page.locator(".summary").last).to_contain_text("$8.50")
    expect(page.get_by_label("Sandbox payment (test mode)")).to_be_checked()
    page.get_by_role("button", name="Yes, continue").click()

    expect(page).to_have_url(re.compile(r"/orders/[0-9a-f-]{36}/pay/$"))
    page.get_by_role("button", name="Simulate payment (test mode)").click()

    expect(page).to_have_url(re.compile(r"/orders/[0-9a-f-]{36}/$"))
    order = Order.objects.get()
    expect(page.locator("[data-status-message]")).to_have_text(
        f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(order.reference)
    assert order.status == OrderStatus.DELIVERED


def test_invalid_recipient_is_shown_on_the_form(page):
    page.goto("/")
    page.get_by_role("button", name=re.compile(r"^Starter\b")).click()
    page.get_by_label("Telegram user ID or @username").fill("@sandbox_invalid")
    page.get_by_role("button", name="Check account").click()

    expect(page).to_have_url(re.compile(r"/recipient/$"))
    expect(page.get_by_role("alert")).to_have_text(re.compile("We couldn't find that Telegram account"))
    expect(page.get_by_label("Telegram user ID or @username")).to_have_value("@sandbox_invalid")
    assert not Order.objects.exists()


def test_custom_amount_and_a_double_clicked_confirm(page):
    page.goto("/")
    expect(page.locator(".unit-price")).to_have_text("$0.018")
    page.get_by_label("Custom amount (Stars)").fill("777")
    page.get_by_role("button", name="Choose amount").click()
    page.get_by_label("Telegram user ID or @username").fill("100000001")
    page.get_by_role("button", name="Check account").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Topping up @sandbox_ok — is this correct?")
    expect(page.locator(".summary").last).to_contain_text("777")
    expect(page.locator(".summary").last).to_contain_text("$13.99")
    page.get_by_role("button", name="Yes, continue").dblclick()

    expect(page.get_by_role("button", name="Simulate payment (test mode)")).to_be_visible()
    assert Order.objects.count() == 1
    page.get_by_role("button", name="Simulate payment (test mode)").click()
    expect(page.locator("[data-status-message]")).to_contain_text("777 Stars sent to @sandbox_ok")


def test_status_page_updates_itself(browser, live_server, transactional_db, catalog, supplier):
    """Without a worker the order stays paid; the page follows the fulfilment without a reload."""
    context, page = _new_page(browser, live_server)
    try:
        page.goto("/")
        page.get_by_role("button", name=re.compile(r"^Small\b")).click()
        page.get_by_label("Telegram user ID or @username").fill("@sandbox_ok")
        page.get_by_role("button", name="Check account").click()
        page.get_by_role("button", name="Yes, continue").click()
        page.get_by_role("button", name="Simulate payment (test mode)").click()
        expect(page.locator("[data-status-message]")).to_contain_text("Payment received.")
        page.evaluate("window.__sameDocument = true")

        order_fulfil(order_id=Order.objects.get().pk)

        expect(page.locator("[data-status-message]")).to_contain_text("100 Stars sent to @sandbox_ok")
        expect(page.locator("[data-status-label]")).to_have_text("Delivered")
        assert page.evaluate("window.__sameDocument") is True
    finally:
        context.close()


def _no_horizontal_scroll(page) -> None:
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{page.url}: scrollWidth {widths[0]} > clientWidth {widths[1]}"


def test_phone_viewport_has_no_horizontal_scroll(browser, live_server, transactional_db, catalog,
                                                 supplier, q_sync):
    context, page = _new_page(browser, live_server, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page.goto("/")
        _no_horizontal_scroll(page)
        page.get_by_label("Custom amount (Stars)").fill("5000")
        page.get_by_role("button", name="Choose amount").click()
        _no_horizontal_scroll(page)
        page.get_by_label("Telegram user ID or @username").fill("x" * 64)
        page.get_by_role("button", name="Check account").click()
        expect(page.get_by_role("alert")).to_be_visible()
        _no_horizontal_scroll(page)
        # The longest username Telegram allows, in the widest letter.
        page.get_by_label("Telegram user ID or @username").fill(WIDE_USERNAME)
        page.get_by_role("button", name="Check account").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(WIDE_USERNAME)
        _no_horizontal_scroll(page)
        page.get_by_role("button", name="Yes, continue").click()
        expect(page.get_by_role("button", name="Simulate payment (test mode)")).to_be_visible()
        _no_horizontal_scroll(page)
        page.get_by_role("button", name="Simulate payment (test mode)").click()
        expect(page.locator("[data-status-message]")).to_contain_text("5,000 Stars sent")
        _no_horizontal_scroll(page)
        page.get_by_role("link", name="Terms", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Terms of sale")
        _no_horizontal_scroll(page)
    finally:
        context.close()
