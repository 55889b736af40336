"""shop.pricing: the arithmetic against hand computation, the margin guard, promo codes and their limits."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from orders.exceptions import OrderStateChanged
from orders.models import Order, OrderEvent
from orders.models import OrderStatus as S
from orders.payments.services import payment_method_change
from orders.services import buyer_session_hash, order_cancel, order_create
from orders.suppliers.base import RecipientInfo
from shop.exceptions import (
    MarginTooLow,
    ProductUnavailable,
    PromoCodeBuyerLimit,
    PromoCodeNotApplicable,
    PromoCodeNotValidNow,
    PromoCodeUnknown,
    PromoCodeUsedUp,
)
from shop.models import Package, Product, PromoCode, PromoRedemption, Supplier
from shop.pricing import (
    BuyerIdentity,
    margin_minimum,
    margin_of,
    order_methods_offered,
    packages_offered,
    price_floor,
    promo_code_normalize,
    quote_price,
)
from shop.selectors import promo_for_order, quote_build

D = Decimal
RECIPIENT = RecipientInfo(user_id="100000001", username="@sandbox_ok")


def methods_config(**fees: str) -> dict:
    """PAYMENT_METHODS with the given methods on for web and bot at these fee percents."""
    labels = {"sandbox": "Sandbox payment (test mode)", "stripe": "Card (Stripe Checkout)",
              "cryptopay": "Crypto (USDT, TON, BTC via Crypto Pay)", "ton": "TON"}
    return {code: {"label": labels[code], "fee_percent": D(fee), "channels": ["web", "bot"],
                   "enabled": True, "quote_minutes": 30} for code, fee in fees.items()}


@pytest.fixture
def methods(settings):
    """The demo's fees: sandbox 0%, card 2.5%, Crypto Pay 3%, all on for web and bot."""
    settings.SUPPLIER_CODE = "sandbox"
    settings.PAYMENT_METHODS = methods_config(sandbox="0", stripe="2.5", cryptopay="3")
    return settings.PAYMENT_METHODS


def place(product: Product, *, method: str = "sandbox", package: Package | None = None,
          quantity: int | None = None, promo_code: str = "", telegram_id: int | None = None,
          session_key: str = "", email: str = "", channel: str = "web") -> Order:
    return order_create(
        channel=channel, product=product, recipient_input="@sandbox_ok", recipient=RECIPIENT,
        payment_method=method, package_id=package.pk if package else None, quantity=quantity,
        promo_code=promo_code, buyer_telegram_id=telegram_id, buyer_session_key=session_key,
        buyer_email=email,
    )


def promo(code: str = "SAVE10", **fields) -> PromoCode:
    values = {"kind": PromoCode.Kind.PERCENT, "value": D("10"), "max_uses_per_buyer": None, **fields}
    packages = values.pop("packages", [])
    created = PromoCode.objects.create(code=code, **values)
    created.packages.set(packages)
    return created


# --- Arithmetic -----------------------------------------------------------------------------


def test_the_seed_margin_table_by_hand(catalog, settings):
    """9.00 retail − 8.25 wholesale − 0.5% fee (0.045 → 0.05) = 0.70 net, 7.8%."""
    settings.PAYMENT_METHODS = methods_config(ton="0.5")
    # 500 Stars at the custom amount's 0.018 is the seed's 9.00; the demo's wholesale is 0.0165.
    quote = quote_price(product=catalog, quantity=500, channel="web", payment_method="ton")

    assert (quote.list_price, quote.cost, quote.fee, quote.margin) == (D("9.00"), D("8.25"), D("0.05"), D("0.70"))
    assert quote.price == D("9.00") and quote.discount == 0 and quote.allowed
    assert quote.method("ton").margin_percent == D("7.8")


def test_standard_500_through_each_demo_method(catalog, methods):
    """8.50 − 8.25: sandbox 0.25; card 0.2125 → 0.21 fee, 0.04; Crypto Pay 0.255 → 0.26 fee, −0.01."""
    standard = catalog.packages.get(name="Standard")
    quote = quote_price(product=catalog, package_id=standard.pk, channel="web")

    figures = {m.code: (m.fee, m.margin, m.allowed) for m in quote.methods}
    assert figures == {"sandbox": (D("0.00"), D("0.25"), True),
                       "stripe": (D("0.21"), D("0.04"), True),
                       "cryptopay": (D("0.26"), D("-0.01"), False)}
    assert [m.code for m in quote.offered] == ["sandbox", "stripe"]


def test_a_percentage_minimum_applies_when_it_is_the_larger(catalog, methods):
    standard = catalog.packages.get(name="Standard")
    catalog.min_margin_percent = D("3")  # 3% of 8.50 = 0.255 → 0.26 > 0.25 left by the sandbox
    catalog.save()

    quote = quote_price(product=catalog, package_id=standard.pk, channel="web", payment_method="sandbox")

    assert quote.minimum == D("0.26") and quote.margin == D("0.25") and not quote.allowed
    assert margin_minimum(product=catalog, price=D("1.00")) == D("0.03")


@pytest.mark.parametrize("fee", ["0", "0.5", "2.5", "3", "7.25"])
@pytest.mark.parametrize("cost", ["0.83", "8.25", "16.50", "99.99"])
@pytest.mark.parametrize("minimum", [("0.01", "0"), ("0.50", "0"), ("0.01", "4")])
def test_the_price_floor_is_the_lowest_price_that_keeps_the_minimum(catalog, fee, cost, minimum):
    catalog.min_margin, catalog.min_margin_percent = D(minimum[0]), D(minimum[1])
    floor = price_floor(product=catalog, cost=D(cost), fee_percent=D(fee))

    def ok(price):
        return margin_of(price=price, cost=D(cost), fee_percent=D(fee))[1] >= margin_minimum(
            product=catalog, price=price)

    assert floor is not None and ok(floor) and not ok(floor - D("0.01"))


def test_a_cost_in_another_currency_offers_nothing(catalog, methods):
    Supplier.objects.filter(code="sandbox").update(currency="EUR")

    quote = quote_price(product=catalog, quantity=500, channel="web")

    assert quote.methods and not quote.offered


# --- The margin guard -----------------------------------------------------------------------


def test_packages_sold_under_cost_are_not_offered(catalog, methods):
    """Without its volume prices, the demo's Large (16.00 for 16.50 wholesale), Mega and Ultra lose money."""
    Supplier.objects.get(code="sandbox").volume_prices.all().delete()

    offered = {p.name for p in packages_offered(product=catalog, channel="web")}

    assert offered == {"Starter", "Small", "Medium", "Standard"}


def test_a_package_only_guarded_methods_could_sell_is_not_offered(catalog, settings):
    settings.PAYMENT_METHODS = methods_config(cryptopay="3")

    assert "Standard" not in {p.name for p in packages_offered(product=catalog, channel="web")}


def test_placing_a_guarded_method_is_refused_and_creates_nothing(catalog, methods):
    standard = catalog.packages.get(name="Standard")

    with pytest.raises(MarginTooLow, match="not available for this amount"):
        place(catalog, method="cryptopay", package=standard)

    assert not Order.objects.exists() and not OrderEvent.objects.exists()


def test_the_order_keeps_the_figures_of_its_method(catalog, methods):
    order = place(catalog, method="stripe", package=catalog.packages.get(name="Standard"))

    assert (order.price, order.cost, order.payment_fee) == (D("8.50"), D("8.25"), D("0.21"))


def test_switching_a_placed_order_to_a_guarded_method_is_refused(catalog, methods):
    order = place(catalog, method="sandbox", package=catalog.packages.get(name="Standard"))

    with pytest.raises(MarginTooLow):
        payment_method_change(order=order, payment_method="cryptopay", actor="buyer:web")

    order.refresh_from_db()
    assert (order.payment_method, order.payment_fee) == ("sandbox", D("0.00"))
    assert order.events.count() == 1  # only "Order placed"
    assert [code for code, _ in order_methods_offered(order=order)] == ["sandbox", "stripe"]
    payment_method_change(order=order, payment_method="stripe", actor="buyer:web")
    order.refresh_from_db()
    assert (order.payment_method, order.payment_fee) == ("stripe", D("0.21"))


# --- Promo codes ----------------------------------------------------------------------------


def test_a_percentage_code_within_the_margin_is_applied_whole(catalog, methods):
    promo("SAVE5", value=D("5"))
    quote = quote_price(product=catalog, quantity=500, channel="web", payment_method="sandbox",
                        promo_code=" save5 ")

    # 5% of 9.00 = 0.45; 8.55 − 8.25 = 0.30 ≥ 0.01.
    assert (quote.price, quote.discount, quote.discount_limited, quote.margin) == (
        D("8.55"), D("0.45"), False, D("0.30"))


def test_the_discount_is_capped_at_the_minimum_margin_per_method(catalog, methods):
    promo("SAVE10")
    standard = catalog.packages.get(name="Standard")
    quote = quote_price(product=catalog, package_id=standard.pk, channel="web", promo_code="SAVE10")

    by_code = {m.code: m for m in quote.methods}
    # Sandbox: 10% would be 0.85, but 8.26 is the lowest price leaving 0.01 over 8.25.
    assert (by_code["sandbox"].price, by_code["sandbox"].discount, by_code["sandbox"].margin) == (
        D("8.26"), D("0.24"), D("0.01"))
    # Card 2.5%: 8.47 pays 0.21 fee and leaves 0.01; at 8.46 the fee is 0.21 too and leaves 0.00.
    assert (by_code["stripe"].price, by_code["stripe"].discount, by_code["stripe"].margin) == (
        D("8.47"), D("0.03"), D("0.01"))
    assert all(m.discount_limited for m in (by_code["sandbox"], by_code["stripe"]))
    assert not by_code["cryptopay"].allowed and by_code["cryptopay"].discount == 0


def test_an_order_with_a_capped_code_keeps_the_price_charged_and_its_redemption(catalog, methods):
    promo("SAVE10")
    order = place(catalog, method="stripe", package=catalog.packages.get(name="Standard"),
                  promo_code="save10", session_key="s1", email="ann@example.com")

    assert (order.price, order.payment_fee) == (D("8.47"), D("0.21"))
    redemption = promo_for_order(order)
    assert redemption is not None
    assert (redemption.code, redemption.discount, redemption.discount_limited) == ("SAVE10", D("0.03"), True)
    assert redemption.buyer_session_hash == buyer_session_hash("s1")
    assert redemption.buyer_email == "ann@example.com"
    assert order.events.get().data["promo_code"] == "SAVE10"
    with pytest.raises(IntegrityError), transaction.atomic():
        PromoRedemption.objects.create(promo=redemption.promo, order=order, code="SAVE10",
                                       discount=D("0.01"), currency="USD")


def test_a_fixed_code_never_takes_the_whole_price(catalog, methods):
    catalog.min_margin = D("0")
    catalog.save()
    Supplier.objects.filter(code="sandbox").update(cost_per_unit=D("0"))
    promo("FREE", kind=PromoCode.Kind.FIXED, value=D("50.00"))

    quote = quote_price(product=catalog, quantity=50, channel="web", payment_method="sandbox",
                        promo_code="FREE")

    assert quote.price == D("0.01") and quote.discount == D("0.89")


def test_a_code_with_no_room_under_the_margin_gives_no_discount_and_no_redemption(catalog, methods):
    promo("SAVE10")
    catalog.packages.filter(name="Standard").update(price=D("8.26"))
    order = place(catalog, package=catalog.packages.get(name="Standard"), promo_code="SAVE10")

    assert order.price == D("8.26")
    assert promo_for_order(order) is None


@pytest.mark.parametrize(("fields", "error", "message"), [
    ({"active": False}, PromoCodeUnknown, "no such promo code"),
    ({"valid_from": timezone.now() + timedelta(hours=1)}, PromoCodeNotValidNow, "not valid yet"),
    ({"valid_until": timezone.now() - timedelta(seconds=1)}, PromoCodeNotValidNow, "expired"),
    ({"kind": PromoCode.Kind.FIXED, "value": D("1"), "currency": "EUR"}, PromoCodeNotApplicable, "currency"),
])
def test_codes_that_cannot_be_used_say_why(catalog, methods, fields, error, message):
    promo("CODE", **fields)

    with pytest.raises(error, match=message):
        quote_price(product=catalog, quantity=500, channel="web", promo_code="CODE")
    with pytest.raises(error):
        place(catalog, quantity=500, promo_code="CODE")
    assert not Order.objects.exists()


def test_unknown_code(catalog, methods):
    with pytest.raises(PromoCodeUnknown):
        quote_price(product=catalog, quantity=500, channel="web", promo_code="NOPE")


def test_a_code_for_some_packages_only(catalog, methods):
    standard, small = catalog.packages.get(name="Standard"), catalog.packages.get(name="Small")
    promo("SMALL", packages=[small])

    assert quote_price(product=catalog, package_id=small.pk, promo_code="SMALL").discount == D("0.20")
    with pytest.raises(PromoCodeNotApplicable, match="package"):
        quote_price(product=catalog, package_id=standard.pk, promo_code="SMALL")
    with pytest.raises(PromoCodeNotApplicable, match="package"):
        quote_price(product=catalog, quantity=500, promo_code="SMALL")


def test_a_code_for_another_product(catalog, methods):
    other = Product.objects.create(name="Premium", slug="premium", platform="telegram",
                                   custom_unit_price=D("1"))
    promo("OTHER", product=other)

    with pytest.raises(PromoCodeNotApplicable, match="product"):
        quote_price(product=catalog, quantity=500, promo_code="OTHER")


def test_the_total_limit_and_abandoned_orders_giving_their_use_back(catalog, methods):
    promo("ONCE", value=D("1"), max_uses=1)
    first = place(catalog, quantity=500, promo_code="ONCE", telegram_id=1, channel="bot")

    with pytest.raises(PromoCodeUsedUp, match="used up"):
        place(catalog, quantity=500, promo_code="ONCE", telegram_id=2, channel="bot")
    assert Order.objects.count() == 1

    order_cancel(order=first, actor="buyer:bot")
    second = place(catalog, quantity=500, promo_code="ONCE", telegram_id=2, channel="bot")
    assert promo_for_order(second).discount == D("0.09")


def test_an_expired_order_gives_its_use_back(catalog, methods):
    promo("ONCE", value=D("1"), max_uses=1)
    first = place(catalog, quantity=500, promo_code="ONCE")
    Order.objects.filter(pk=first.pk).update(status=S.EXPIRED)

    place(catalog, quantity=500, promo_code="ONCE")

    assert PromoRedemption.objects.count() == 2


def test_the_per_buyer_limit_in_the_bot(catalog, methods):
    promo("ONEEACH", max_uses_per_buyer=1)
    place(catalog, quantity=500, promo_code="ONEEACH", telegram_id=7, channel="bot")

    with pytest.raises(PromoCodeBuyerLimit, match="already used"):
        place(catalog, quantity=500, promo_code="ONEEACH", telegram_id=7, channel="bot")
    place(catalog, quantity=500, promo_code="ONEEACH", telegram_id=8, channel="bot")
    assert PromoRedemption.objects.count() == 2


def test_the_per_buyer_limit_on_the_web_by_session_or_email(catalog, methods):
    promo("ONEEACH", max_uses_per_buyer=1)
    place(catalog, quantity=500, promo_code="ONEEACH", session_key="a", email="ann@example.com")

    with pytest.raises(PromoCodeBuyerLimit):
        place(catalog, quantity=500, promo_code="ONEEACH", session_key="a")
    with pytest.raises(PromoCodeBuyerLimit):  # a new session, the same e-mail in another case
        place(catalog, quantity=500, promo_code="ONEEACH", session_key="b", email="ANN@example.com")
    place(catalog, quantity=500, promo_code="ONEEACH", session_key="c", email="bob@example.com")
    assert PromoRedemption.objects.count() == 2


def test_the_code_is_checked_again_when_the_order_is_inserted(catalog, methods):
    """A quote taken before the last use went elsewhere does not get past the insert."""
    code = promo("ONCE", value=D("1"), max_uses=1)
    quote = quote_build(product=catalog, quantity=500, channel="web", payment_method="sandbox",
                        promo_code="ONCE")
    place(catalog, quantity=500, promo_code="ONCE")

    from orders.services import _order_insert

    with pytest.raises(PromoCodeUsedUp):
        _order_insert(channel="web", quote=quote, given="@sandbox_ok", recipient=RECIPIENT,
                      payment_method="sandbox", buyer_telegram_id=None, buyer_session_hash="",
                      request_key="")
    assert Order.objects.count() == 1 and code.redemptions.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_cannot_exceed_the_total_limit(settings):
    """Eight buyers race for two uses: the row lock (PostgreSQL) or IMMEDIATE transactions (SQLite)."""
    from shop.demo import demo_catalog_load

    settings.PAYMENT_METHODS = methods_config(sandbox="0")
    catalog = demo_catalog_load()
    promo("RACE", value=D("1"), max_uses=2)
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def buy(telegram_id: int) -> None:
        try:
            start.wait()
            place(catalog, quantity=500, promo_code="RACE", telegram_id=telegram_id, channel="bot")
            outcomes.append("placed")
        except PromoCodeUsedUp:
            outcomes.append("used up")
        finally:
            connection.close()

    threads = [threading.Thread(target=buy, args=(1000 + n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == ["placed"] * 2 + ["used up"] * 6
    assert PromoRedemption.objects.count() == 2 == Order.objects.count()


def test_promo_code_normalize():
    assert promo_code_normalize("  spring 25 ") == "SPRING25"


def test_a_product_off_sale_is_refused(catalog):
    catalog.active = False
    catalog.save()
    with pytest.raises(ProductUnavailable):
        quote_price(product=catalog, quantity=500)


def test_a_state_change_is_still_refused_before_the_margin(catalog, methods):
    order = place(catalog, package=catalog.packages.get(name="Standard"))
    order_cancel(order=order, actor="buyer:web")

    with pytest.raises(OrderStateChanged):
        payment_method_change(order=order, payment_method="stripe", actor="buyer:web")


def test_buyer_identity_without_anything_matches_nothing():
    assert BuyerIdentity().redemptions_match() is None


def test_before_a_method_is_chosen_the_quote_shows_the_best_offered_price(catalog, methods):
    promo("SAVE10")
    standard = catalog.packages.get(name="Standard")

    quote = quote_price(product=catalog, package_id=standard.pk, channel="web", promo_code="SAVE10")

    assert (quote.price, quote.discount, quote.discount_limited) == (D("8.26"), D("0.24"), True)


def test_promos_for_a_page_of_orders_in_one_query(catalog, methods, django_assert_num_queries):
    from shop.selectors import promos_for_orders

    promo("TEN", kind=PromoCode.Kind.FIXED, value=D("0.10"))
    with_code = place(catalog, quantity=500, promo_code="TEN")
    without = place(catalog, quantity=500)

    with django_assert_num_queries(1):
        found = promos_for_orders([with_code.pk, without.pk])

    assert list(found) == [with_code.pk] and found[with_code.pk].discount == D("0.10")
