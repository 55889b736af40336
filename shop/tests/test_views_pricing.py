"""The storefront and shop.pricing: the margin guard on the pages and against forged posts, promo codes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from orders.models import Order
from shop.models import PromoCode, PromoRedemption, Supplier
from shop.tests.conftest import page, pay_url, token_from
from shop.tests.test_pricing import methods_config

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def guarded(settings, supplier):
    """Sandbox 0%, card 2.5%, Crypto Pay 3% on the storefront: Crypto Pay sells Standard at −0.01."""
    settings.PAYMENT_METHODS = methods_config(sandbox="0", stripe="2.5", cryptopay="3")
    return settings


def radio_values(html: str) -> list[str]:
    import re

    return re.findall(r'name="payment_method" value="([a-z]+)"', html)


def test_the_confirm_page_offers_only_methods_above_the_minimum(buyer, standard, guarded):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    html = page(buyer.confirm_page())

    assert radio_values(html) == ["sandbox", "stripe"]


def test_a_forged_post_of_a_guarded_method_creates_nothing(buyer, standard, guarded):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    response = buyer.confirm(payment_method="cryptopay")

    assert response.status_code == 400
    assert "That payment method is not available. Choose one from the list." in page(response)
    assert not Order.objects.exists()


def test_the_same_method_is_offered_where_the_margin_allows(buyer, catalog, guarded):
    buyer.choose_package(catalog.packages.get(name="Small"))
    buyer.enter_recipient("@sandbox_ok")

    assert radio_values(page(buyer.confirm_page())) == ["sandbox", "stripe", "cryptopay"]
    response = buyer.confirm(payment_method="cryptopay")
    assert response.status_code == 302
    assert Order.objects.get().payment_fee == D("0.06")


def test_the_catalog_leaves_out_packages_no_method_can_sell_and_refuses_them(client, catalog, guarded):
    # Without its volume prices the supplier's 0.0165 a Star puts Large, Mega and Ultra under cost.
    Supplier.objects.get(code="sandbox").volume_prices.all().delete()
    html = page(client.get(reverse("shop:catalog")))
    assert "Standard" in html and "Large" not in html and "Ultra" not in html

    response = client.post(reverse("shop:catalog"), {"package": str(catalog.packages.get(name="Large").pk)})

    assert response.status_code == 400
    assert "That package is not on sale." in page(response)
    assert "shop_choice" not in client.session


def test_with_no_method_left_the_confirm_page_says_so(buyer, standard, guarded, settings):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    settings.PAYMENT_METHODS = methods_config(cryptopay="3")  # the others switched off since

    response = buyer.confirm_page()

    assert "This amount can't be paid for right now. Please choose another amount." in page(response)
    assert radio_values(page(response)) == []
    assert buyer.confirm(payment_method="cryptopay").status_code == 400
    assert not Order.objects.exists()


def test_the_pay_page_offers_no_switch_to_a_guarded_method_and_refuses_a_forged_one(buyer, standard, guarded):
    order = buyer.place(standard)
    html = page(buyer.client.get(pay_url(order)))
    assert 'value="stripe"' in html and 'value="cryptopay"' not in html

    response = buyer.client.post(pay_url(order), {"action": "method", "payment_method": "cryptopay"},
                                 follow=True)

    assert "That payment method is not available for this order." in page(response)
    order.refresh_from_db()
    assert order.payment_method == "sandbox"


# --- Promo codes ----------------------------------------------------------------------------


def test_apply_shows_the_discount_then_the_order_is_placed_with_it(buyer, catalog, guarded):
    PromoCode.objects.create(code="TENCENTS", kind=PromoCode.Kind.FIXED, value=D("0.10"))
    small = catalog.packages.get(name="Small")
    buyer.choose_package(small)
    buyer.enter_recipient("@sandbox_ok")
    token = token_from(buyer.confirm_page())

    applied = buyer.client.post(reverse("shop:confirm"), {
        "token": token, "action": "promo", "promo_code": "tencents"})

    html = page(applied)
    assert applied.status_code == 200
    assert "Promo code TENCENTS applied." in html and "−$0.10" in html and "$1.90" in html
    assert 'value="TENCENTS"' in html  # kept in the field
    assert not Order.objects.exists()

    placed = buyer.confirm(token_from(applied), promo_code="TENCENTS", payment_method="stripe")

    assert placed.status_code == 302
    order = Order.objects.get()
    assert (order.price, order.payment_fee) == (D("1.90"), D("0.05"))
    assert PromoRedemption.objects.get(order=order).discount == D("0.10")
    assert "−$0.10" in page(buyer.client.get(pay_url(order)))


def test_a_capped_discount_is_shown_per_method(buyer, standard, guarded):
    PromoCode.objects.create(code="SAVE10", value=D("10"))
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    html = page(buyer.client.post(reverse("shop:confirm"), {
        "token": token_from(buyer.confirm_page()), "action": "promo", "promo_code": "SAVE10"}))

    assert "With some payment methods its discount is smaller" in html
    assert "$8.26 (discount limited to $0.24)" in html
    assert "$8.47 (discount limited to $0.03)" in html


def test_an_unknown_code_is_refused_on_apply_and_on_confirm(buyer, standard, guarded):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    applied = buyer.client.post(reverse("shop:confirm"), {
        "token": token_from(buyer.confirm_page()), "action": "promo", "promo_code": "NOPE"})
    assert applied.status_code == 400
    assert "There is no such promo code." in page(applied)

    confirmed = buyer.confirm(promo_code="NOPE")
    assert confirmed.status_code == 400
    assert "There is no such promo code." in page(confirmed)
    assert not Order.objects.exists()


def test_one_use_per_buyer_on_the_web(buyer, catalog, guarded):
    PromoCode.objects.create(code="ONCE", kind=PromoCode.Kind.FIXED, value=D("0.10"), max_uses_per_buyer=1)
    small = catalog.packages.get(name="Small")
    buyer.choose_package(small)
    buyer.enter_recipient("@sandbox_ok")
    assert buyer.confirm(promo_code="ONCE").status_code == 302

    again = buyer.confirm(promo_code="ONCE")

    assert again.status_code == 400
    assert "You have already used this promo code." in page(again)
    assert Order.objects.count() == 1


def test_an_applied_code_used_up_since_is_shown_once_and_dropped(buyer, catalog, guarded):
    code = PromoCode.objects.create(code="ONCE", kind=PromoCode.Kind.FIXED, value=D("0.10"))
    buyer.choose_package(catalog.packages.get(name="Small"))
    buyer.enter_recipient("@sandbox_ok")
    buyer.client.post(reverse("shop:confirm"), {
        "token": token_from(buyer.confirm_page()), "action": "promo", "promo_code": "ONCE"})
    PromoCode.objects.filter(pk=code.pk).update(active=False)

    html = page(buyer.confirm_page())

    assert "There is no such promo code." in html and 'value="ONCE"' not in html
    assert "shop_promo" not in buyer.client.session
    assert buyer.confirm().status_code == 302
    assert Order.objects.get().price == D("2.00")
