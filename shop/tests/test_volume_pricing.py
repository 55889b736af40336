"""Supplier volume pricing: the cost of a quantity by tier, the demo's seven packages at a margin, tiers in the console."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.db import IntegrityError, connection, transaction
from django.db.models import Prefetch
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders.models import Order
from shop.demo import SANDBOX_VOLUME_PRICES, STARS_PACKAGES, demo_catalog_load
from shop.exceptions import MarginTooLow, ProductUnavailable
from shop.models import Package, PriceChange, Product, Supplier, SupplierVolumePrice
from shop.pricing import (
    margin_minimum,
    packages_offered,
    quote_price,
    supplier_cost,
    supplier_current,
    supplier_unit_cost,
    supplier_volume_prices_set,
)
from shop.tests.test_admin import form_data
from shop.tests.test_pricing import methods_config, place

pytestmark = pytest.mark.django_db

D = Decimal
ALL_PACKAGES = {name for name, _ru, _stars, _price in STARS_PACKAGES}


@pytest.fixture
def methods(settings):
    """The demo's fees: sandbox 0%, card 2.5%, Crypto Pay 3%, all on for web and bot."""
    settings.SUPPLIER_CODE = "sandbox"
    settings.PAYMENT_METHODS = methods_config(sandbox="0", stripe="2.5", cryptopay="3")
    return settings.PAYMENT_METHODS


@pytest.fixture
def sandbox(catalog: Product) -> Supplier:
    return Supplier.objects.get(code="sandbox")


def tiers_of(supplier: Supplier) -> dict[int, Decimal]:
    return dict(SupplierVolumePrice.objects.filter(supplier=supplier)
                .values_list("min_quantity", "cost_per_unit"))


# --- The cost of a quantity -----------------------------------------------------------------


@pytest.mark.parametrize(("quantity", "unit_cost", "cost"), [
    (1, "0.0165", "0.02"),       # 0.0165, half up
    (50, "0.0165", "0.83"),      # 0.825, half up
    (500, "0.0165", "8.25"),     # the seed's margin example
    (999, "0.0165", "16.48"),    # 16.4835
    (1000, "0.0150", "15.00"),
    (1001, "0.0150", "15.02"),   # 15.015, half up
    (2499, "0.0150", "37.49"),   # 37.485, half up
    (2500, "0.0140", "35.00"),
    (2501, "0.0140", "35.01"),   # 35.014
    (4999, "0.0140", "69.99"),   # 69.986
    (5000, "0.0132", "66.00"),
    (5001, "0.0132", "66.01"),   # 66.0132
    (10000, "0.0132", "132.00"),
])
def test_the_cost_of_a_quantity_at_and_around_each_tier(catalog, methods, quantity, unit_cost, cost,
                                                        django_assert_num_queries):
    supplier = supplier_current()

    with django_assert_num_queries(0):  # the tiers came with the supplier
        assert supplier_unit_cost(supplier=supplier, quantity=quantity) == D(unit_cost)
        assert supplier_cost(supplier=supplier, quantity=quantity) == D(cost)


def test_the_current_supplier_comes_with_its_tiers_in_one_query(catalog, methods,
                                                                 django_assert_num_queries):
    with django_assert_num_queries(1):
        supplier = supplier_current()
    with django_assert_num_queries(0):
        tiers = [(tier.min_quantity, tier.cost_per_unit, tier.supplier) for tier in supplier.volume_prices.all()]
    assert tiers == [(quantity, D(cost), supplier) for quantity, cost in SANDBOX_VOLUME_PRICES]
    assert (supplier.code, supplier.cost_per_unit, supplier.currency) == ("sandbox", D("0.0165"), "USD")
    supplier.name = "Renamed"
    supplier.save()  # a row read as any other: saving it updates it
    assert Supplier.objects.get(code="sandbox").name == "Renamed"


def test_a_current_supplier_without_tiers_costs_its_base_price_and_an_inactive_one_none(
        catalog, methods, settings, django_assert_num_queries):
    Supplier.objects.create(code="flat", name="Flat", cost_per_unit=D("0.0200"))
    settings.SUPPLIER_CODE = "flat"
    with django_assert_num_queries(1):
        supplier = supplier_current()
    with django_assert_num_queries(0):
        assert list(supplier.volume_prices.all()) == []
        assert supplier_cost(supplier=supplier, quantity=5000) == D("100.00")
    Supplier.objects.filter(code="flat").update(active=False)
    with pytest.raises(ProductUnavailable):
        supplier_current()


def test_the_greatest_tier_reached_wins_in_whatever_order_the_tiers_come(db):
    supplier = Supplier.objects.create(code="b2b", name="B2B", cost_per_unit=D("0.0200"))
    for quantity, cost in [(5000, "0.0100"), (100, "0.0180"), (1000, "0.0150")]:
        SupplierVolumePrice.objects.create(supplier=supplier, min_quantity=quantity, cost_per_unit=D(cost))
    backwards = Supplier.objects.prefetch_related(Prefetch(
        "volume_prices", queryset=SupplierVolumePrice.objects.order_by("-min_quantity"))).get(pk=supplier.pk)
    unprefetched = Supplier.objects.get(pk=supplier.pk)

    for row in (backwards, unprefetched):
        assert [supplier_unit_cost(supplier=row, quantity=q) for q in (99, 100, 999, 1000, 4999, 5000)] == [
            D("0.0200"), D("0.0180"), D("0.0180"), D("0.0150"), D("0.0150"), D("0.0100")]


def test_a_supplier_without_tiers_costs_its_own_price_per_unit(db):
    supplier = Supplier.objects.create(code="flat", name="Flat", cost_per_unit=D("0.0165"))

    assert supplier_cost(supplier=supplier, quantity=5000) == D("82.50")


@pytest.mark.parametrize(("quantity", "cost"), [
    (1000, "0.0150"),  # the demo has a tier from 1,000 already
    (0, "0.0150"),
    (100, "0"),
    (100, "-0.01"),
])
def test_the_database_refuses_a_second_tier_at_one_quantity_and_nonpositive_values(sandbox, quantity, cost):
    with pytest.raises(IntegrityError), transaction.atomic():
        SupplierVolumePrice.objects.create(supplier=sandbox, min_quantity=quantity, cost_per_unit=D(cost))


# --- The demo catalogue at a margin -----------------------------------------------------------

# By hand with the demo's fees (sandbox 0%, card 2.5%, Crypto Pay 3%; fees rounded half up):
# package → (cost, {method: (fee, margin)}).
DEMO_MARGINS = {
    "Starter": ("0.83", {"sandbox": ("0.00", "0.17"), "stripe": ("0.03", "0.14"), "cryptopay": ("0.03", "0.14")}),
    "Small": ("1.65", {"sandbox": ("0.00", "0.35"), "stripe": ("0.05", "0.30"), "cryptopay": ("0.06", "0.29")}),
    "Medium": ("4.13", {"sandbox": ("0.00", "0.37"), "stripe": ("0.11", "0.26"), "cryptopay": ("0.14", "0.23")}),
    "Standard": ("8.25", {"sandbox": ("0.00", "0.25"), "stripe": ("0.21", "0.04"), "cryptopay": ("0.26", "-0.01")}),
    "Large": ("15.00", {"sandbox": ("0.00", "1.00"), "stripe": ("0.40", "0.60"), "cryptopay": ("0.48", "0.52")}),
    "Mega": ("35.00", {"sandbox": ("0.00", "2.00"), "stripe": ("0.93", "1.07"), "cryptopay": ("1.11", "0.89")}),
    "Ultra": ("66.00", {"sandbox": ("0.00", "4.00"), "stripe": ("1.75", "2.25"), "cryptopay": ("2.10", "1.90")}),
}


@pytest.mark.parametrize("channel", ["web", "bot"])
def test_the_demo_offers_all_seven_packages_each_method_above_the_minimum(catalog, methods, channel):
    assert catalog.min_margin == D("0.01") and catalog.min_margin_percent == 0

    assert {p.name for p in packages_offered(product=catalog, channel=channel)} == ALL_PACKAGES
    for package in catalog.packages.all():
        quote = quote_price(product=catalog, package_id=package.pk, channel=channel)
        cost, by_method = DEMO_MARGINS[package.name]
        assert quote.cost == D(cost), package.name
        assert {m.code: (m.fee, m.margin) for m in quote.methods} == {
            code: (D(fee), D(margin)) for code, (fee, margin) in by_method.items()}, package.name
        assert quote.offered, package.name
        for method in quote.offered:
            assert method.margin >= margin_minimum(product=catalog, price=method.price) > 0
        expected = {"sandbox", "stripe"} if package.name == "Standard" else {"sandbox", "stripe", "cryptopay"}
        assert {m.code for m in quote.offered} == expected, package.name


def test_the_storefront_lists_all_seven_packages(client, catalog, methods):
    html = client.get(reverse("shop:catalog")).content.decode()

    for name, stars, price in [("Starter", "50", "$1.00"), ("Large", "1,000", "$16.00"),
                               ("Mega", "2,500", "$37.00"), ("Ultra", "5,000", "$70.00")]:
        assert name in html and f"{stars} Stars" in html and price in html


def test_standard_500_with_crypto_pay_at_3_percent_stays_refused(catalog, methods):
    """The tiers start at 1,000: 500 Stars still cost 8.25, and 8.50 − 8.25 − 0.26 = −0.01."""
    standard = catalog.packages.get(name="Standard")
    quote = quote_price(product=catalog, package_id=standard.pk, channel="web", payment_method="cryptopay")

    assert (quote.cost, quote.fee, quote.margin, quote.allowed) == (D("8.25"), D("0.26"), D("-0.01"), False)
    with pytest.raises(MarginTooLow):
        place(catalog, method="cryptopay", package=standard)
    assert not Order.objects.exists()


def test_an_order_from_a_tier_copies_the_tier_cost(catalog, methods):
    order = place(catalog, method="cryptopay", package=catalog.packages.get(name="Large"))

    assert (order.stars, order.price, order.cost, order.payment_fee) == (
        1000, D("16.00"), D("15.00"), D("0.48"))
    assert order.price - order.cost - order.payment_fee == D("0.52")


def test_a_custom_amount_is_costed_by_the_same_tiers(catalog, methods):
    below = quote_price(product=catalog, quantity=999, channel="web", payment_method="cryptopay")
    at = quote_price(product=catalog, quantity=1000, channel="web", payment_method="cryptopay")

    # 999 × 0.018 = 17.98 (17.982); 16.48 cost; 0.54 fee. 1,000 × 0.018 = 18.00; 15.00; 0.54.
    assert (below.cost, below.margin) == (D("16.48"), D("0.96"))
    assert (at.cost, at.margin) == (D("15.00"), D("2.46"))


def test_without_its_tiers_the_demo_hides_large_mega_and_ultra_again(catalog, methods):
    """The guard still works on the tiers' absence: these three sell under the 0.0165 base cost."""
    Supplier.objects.get(code="sandbox").volume_prices.all().delete()

    offered = {p.name for p in packages_offered(product=catalog, channel="bot")}

    assert offered == ALL_PACKAGES - {"Large", "Mega", "Ultra"}


def test_the_demo_loader_keeps_an_operators_tiers(sandbox):
    supplier_volume_prices_set(supplier=sandbox, tiers={1000: D("0.0155"), 3000: D("0.0131")},
                               actor="test")

    demo_catalog_load()

    assert tiers_of(sandbox) == {1000: D("0.0155"), 3000: D("0.0131")}


def test_the_demo_loader_gives_its_tiers_once_to_a_supplier_without_any(sandbox):
    sandbox.volume_prices.all().delete()

    demo_catalog_load()
    demo_catalog_load()

    assert tiers_of(sandbox) == {quantity: D(cost) for quantity, cost in SANDBOX_VOLUME_PRICES}
    assert Supplier.objects.get(code="sandbox").cost_per_unit == D("0.0165")
    assert not PriceChange.objects.exists()  # the loader's rows are the starting point, not changes


# --- No query per package -------------------------------------------------------------------


def test_packages_offered_and_quotes_read_the_tiers_once(catalog, methods, django_assert_num_queries):
    large = catalog.packages.get(name="Large")
    # The packages; the supplier with its tiers.
    with django_assert_num_queries(2):
        packages_offered(product=catalog, channel="web")
    # The package; the supplier with its tiers.
    with django_assert_num_queries(2):
        quote_price(product=catalog, package_id=large.pk, channel="web")

    for quantity in range(11, 31):
        Package.objects.create(product=catalog, name=f"P{quantity}", quantity=quantity * 100 + 7,
                               price=D("100.00"))
    sandbox = Supplier.objects.get(code="sandbox")
    for quantity in range(6000, 10001, 1000):
        SupplierVolumePrice.objects.create(supplier=sandbox, min_quantity=quantity, cost_per_unit=D("0.0130"))
    with django_assert_num_queries(2):
        assert len(packages_offered(product=catalog, channel="web")) == 27


def test_the_package_list_costs_no_query_per_package_or_tier(admin_client, catalog, methods):
    url = reverse("admin:shop_package_changelist")
    admin_client.get(url)
    with CaptureQueriesContext(connection) as before:
        html = admin_client.get(url).content.decode()
    sandbox = Supplier.objects.get(code="sandbox")
    for quantity in range(11, 31):
        Package.objects.create(product=catalog, name=f"P{quantity}", quantity=quantity * 100 + 7,
                               price=D("100.00"))
        SupplierVolumePrice.objects.create(supplier=sandbox, min_quantity=quantity * 100 + 1,
                                           cost_per_unit=D("0.0130"))
    with CaptureQueriesContext(connection) as after:
        admin_client.get(url)

    assert len(after) == len(before)
    # Large at the tier from 1,000: 16.00 − 15.00 − 0.48 with Crypto Pay.
    assert "Crypto (USDT, TON, BTC via Crypto Pay): 0.52 USD" in html


# --- Price history ----------------------------------------------------------------------------


def test_tiers_added_changed_and_removed_are_each_recorded(sandbox):
    changes = supplier_volume_prices_set(
        supplier=sandbox, actor="command:import_costs",
        tiers={1000: D("0.0150"), 2500: D("0.0138"), 10000: D("0.0125")})

    assert tiers_of(sandbox) == {1000: D("0.0150"), 2500: D("0.0138"), 10000: D("0.0125")}
    recorded = {(c.quantity, c.old_value, c.new_value) for c in PriceChange.objects.all()}
    assert recorded == {(2500, D("0.014"), D("0.0138")),   # changed
                        (5000, D("0.0132"), None),         # removed
                        (10000, None, D("0.0125"))}        # added; 1,000 unchanged: not recorded
    assert len(changes) == 3
    assert {(c.field, c.supplier_id, c.actor, c.changed_by_id, c.currency)
            for c in PriceChange.objects.all()} == {
        (PriceChange.Field.SUPPLIER_VOLUME_COST, sandbox.pk, "command:import_costs", None, "USD")}


def test_setting_the_same_tiers_records_nothing(sandbox):
    assert supplier_volume_prices_set(
        supplier=sandbox, tiers={quantity: D(cost) for quantity, cost in SANDBOX_VOLUME_PRICES}) == []
    assert not PriceChange.objects.exists()


def test_a_supplier_read_before_a_tier_change_is_costed_with_the_new_tiers(catalog, methods):
    supplier = supplier_current()
    assert supplier_cost(supplier=supplier, quantity=5000) == D("66.00")

    supplier_volume_prices_set(supplier=supplier, tiers={5000: D("0.0120")})

    assert supplier_cost(supplier=supplier, quantity=5000) == D("60.00")
    assert supplier_cost(supplier=supplier, quantity=1000) == D("16.50")  # 1,000 and 2,500 removed


# --- The Supplier page ----------------------------------------------------------------------


def supplier_page(client, supplier: Supplier) -> tuple[str, dict]:
    url = reverse("admin:shop_supplier_change", args=[supplier.pk])
    response = client.get(url)
    assert response.status_code == 200
    return url, form_data(response)


def tier_prefix(data: dict, min_quantity: int) -> str:
    return next(key for key, value in data.items()
                if key.endswith("-min_quantity") and value == str(min_quantity)).removesuffix("-min_quantity")


def test_a_manager_edits_the_tiers_and_each_change_is_recorded_with_who(member, sandbox):
    client = member("Managers")
    url, data = supplier_page(client, sandbox)
    assert client.post(url, data).status_code == 302  # saved unchanged: nothing recorded
    assert not PriceChange.objects.exists()

    data[f"{tier_prefix(data, 1000)}-cost_per_unit"] = "0.0148"
    data[f"{tier_prefix(data, 5000)}-DELETE"] = "on"
    total = next(key for key in data if key.endswith("-TOTAL_FORMS"))
    new = f"{total.removesuffix('-TOTAL_FORMS')}-{data[total]}"
    data[total] = str(int(data[total]) + 1)
    data.update({f"{new}-supplier": str(sandbox.pk), f"{new}-min_quantity": "7500",
                 f"{new}-cost_per_unit": "0.0128"})
    response = client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert tiers_of(sandbox) == {1000: D("0.0148"), 2500: D("0.0140"), 7500: D("0.0128")}
    assert {(c.quantity, c.old_value, c.new_value) for c in PriceChange.objects.all()} == {
        (1000, D("0.015"), D("0.0148")), (5000, D("0.0132"), None), (7500, None, D("0.0128"))}
    assert set(PriceChange.objects.values_list("changed_by__username", "field")) == {
        ("managers", PriceChange.Field.SUPPLIER_VOLUME_COST)}
    logged = LogEntry.objects.order_by("-pk").first()
    assert logged is not None
    message = logged.get_change_message()
    assert "Added volume price" in message and "Deleted volume price" in message
    assert "Changed Cost per unit for volume price" in message, message
    history = client.get(reverse("admin:shop_pricechange_changelist")).content.decode()
    assert "Sandbox supplier, from 7500 units" in history


@pytest.mark.parametrize(("min_quantity", "cost", "error"), [
    ("2500", "0.0139", "Please correct the duplicate data"),  # a second tier from 2,500
    ("3000", "0", "greater than or equal to"),
    ("0", "0.0139", "greater than or equal to"),
])
def test_a_tier_the_constraints_refuse_is_an_error_on_the_page_and_saves_nothing(
        member, sandbox, min_quantity, cost, error):
    client = member("Managers")
    url, data = supplier_page(client, sandbox)
    prefix = tier_prefix(data, 1000)
    data.update({f"{prefix}-min_quantity": min_quantity, f"{prefix}-cost_per_unit": cost})

    response = client.post(url, data)

    assert response.status_code == 200 and error in response.content.decode()
    assert tiers_of(sandbox) == {quantity: D(cost) for quantity, cost in SANDBOX_VOLUME_PRICES}
    assert not PriceChange.objects.exists()


def test_an_operator_sees_the_tiers_but_cannot_change_them(member, sandbox):
    client = member("Operators")
    url = reverse("admin:shop_supplier_change", args=[sandbox.pk])

    html = client.get(url).content.decode()
    assert "0.015000" in html and "5000" in html  # shown, read-only
    assert 'name="volume_prices-0-min_quantity"' not in html
    assert 'name="volume_prices-0-DELETE"' not in html
    assert "from 1000: 0.015000" in client.get(reverse("admin:shop_supplier_changelist")).content.decode()

    response = client.post(url, {
        "code": "sandbox", "name": "Sandbox supplier", "cost_per_unit": "0.0165", "currency": "USD",
        "active": "on", "volume_prices-TOTAL_FORMS": "1", "volume_prices-INITIAL_FORMS": "0",
        "volume_prices-0-min_quantity": "500", "volume_prices-0-cost_per_unit": "0.0001"})

    assert response.status_code == 403
    assert tiers_of(sandbox) == {quantity: D(cost) for quantity, cost in SANDBOX_VOLUME_PRICES}
    assert not PriceChange.objects.exists()
