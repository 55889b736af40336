"""Content-Security-Policy on the storefront and the admin, and the pay page's QR as an image."""

import base64
import re

import pytest
from django.urls import reverse

from fakes.ton_fixtures import ton_shop, toncenter, toncenter_options  # noqa: F401
from orders.models import Order
from shop.tests.conftest import Buyer, page, pay_url, status_url


def policy(response) -> dict[str, list[str]]:
    """The response's Content-Security-Policy as directive → sources."""
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def assert_strict(response) -> None:
    directives = policy(response)
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["img-src"] == ["'self'", "data:"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]


@pytest.fixture
def ton_order(buyer: Buyer, standard, supplier, ton_shop) -> Order:  # noqa: F811
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    response = buyer.confirm(payment_method="ton")
    assert response.status_code == 302, page(response)
    return Order.objects.get()


def test_storefront_pages_carry_the_policy(buyer, standard, supplier):
    assert_strict(buyer.client.get(reverse("shop:catalog")))
    assert_strict(buyer.client.get(reverse("shop:terms")))
    buyer.choose_package(standard)
    assert_strict(buyer.client.get(reverse("shop:recipient")))
    buyer.enter_recipient("@sandbox_ok")
    assert_strict(buyer.confirm_page())
    order = buyer.place(standard)
    assert_strict(buyer.client.get(pay_url(order)))
    assert_strict(buyer.client.get(status_url(order)))


def test_admin_pages_carry_the_policy(client, admin_client, catalog):
    assert_strict(client.get(reverse("admin:login")))
    assert_strict(admin_client.get(reverse("admin:index")))
    assert_strict(admin_client.get(reverse("admin:orders_order_changelist")))
    assert_strict(admin_client.get(reverse("admin:shop_product_change", args=[catalog.pk])))


@pytest.mark.parametrize("template", ["base.html", "shop/pay.html", "shop/status.html"])
def test_templates_have_no_inline_script_or_style(template):
    """What the policy would block: inline <script>, <style>, style= and on…= handlers."""
    from django.conf import settings

    text = (settings.BASE_DIR / "templates" / template).read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", text)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", text)


def test_ton_qr_is_an_image_with_a_data_uri(ton_order, buyer):
    html = page(buyer.client.get(pay_url(ton_order)))
    match = re.search(r'<div class="qr"><img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"></div>',
                      html)
    assert match, "the pay page has no QR image"
    svg = base64.b64decode(match.group(1)).decode()
    assert svg.startswith("<svg") and "<script" not in svg
    assert match.group(2) == "QR code of the TON payment link"
    assert "<svg" not in html  # nothing inlined: the QR is only an image
