"""The catalog in the console: margin flags, promo codes, the price history and who may change what."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from shop.models import Package, PriceChange, PromoCode, Supplier
from shop.pricing import catalog_row_save
from shop.tests.test_pricing import methods_config

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def demo_fees(settings):
    settings.SUPPLIER_CODE = "sandbox"
    settings.PAYMENT_METHODS = methods_config(sandbox="0", stripe="2.5", cryptopay="3")


def _value(value: Any) -> Any:
    if value is None or value is False:
        return None
    if value is True:
        return "on"
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return str(value)


def form_data(response) -> dict[str, Any]:
    """What the admin's change form would post back unchanged, inlines included."""
    data: dict[str, Any] = {}

    def add(form) -> None:
        for name in form.fields:
            value = _value(form[name].value())
            if value is not None:
                data[form.add_prefix(name)] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add(formset.management_form)
        for form in formset.forms:
            add(form)
    return data


# --- Margin flags ---------------------------------------------------------------------------


def test_the_package_list_shows_each_methods_margin_and_flags_those_under_the_minimum(
        admin_client, catalog, demo_fees):
    html = admin_client.get(reverse("admin:shop_package_changelist")).content.decode()

    # Standard: 8.50 − 8.25 − 0.26 = −0.01 with Crypto Pay.
    assert "Crypto (USDT, TON, BTC via Crypto Pay): -0.01 USD" in html
    assert "under the minimum 0.01: not offered" in html
    assert "Card (Stripe Checkout): 0.04 USD (0.5%)" in html
    assert 'class="margin-low"' in html and 'class="margin-ok"' in html
    assert "css/admin-pricing.css" in html


def test_the_margin_column_costs_no_query_per_package(admin_client, catalog, demo_fees,
                                                      django_assert_num_queries):
    url = reverse("admin:shop_package_changelist")
    admin_client.get(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as seven:
        admin_client.get(url)
    for quantity in range(11, 31):
        Package.objects.create(product=catalog, name=f"P{quantity}", quantity=quantity, price=D("1.00"))
    with CaptureQueriesContext(connection) as twenty_seven:
        admin_client.get(url)

    assert len(twenty_seven) == len(seven)


def test_the_product_page_shows_the_custom_amounts_margins(admin_client, catalog, demo_fees):
    html = admin_client.get(reverse("admin:shop_product_change", args=[catalog.pk])).content.decode()

    assert "Custom amount: net margin per payment method" in html
    # The range's ends and where each of the supplier's volume tiers starts.
    assert all(f"{quantity} units:" in html for quantity in (50, 1000, 2500, 5000, 10000))
    # 10,000 at 0.018 = 180.00; cost at 0.0132 from 5,000 = 132.00; Crypto Pay 5.40 → 42.60.
    assert "Crypto (USDT, TON, BTC via Crypto Pay): 42.60 USD" in html
    # 1,000 at 0.018 = 18.00; cost at 0.0150 from 1,000 = 15.00; Crypto Pay 0.54 → 2.46.
    assert "Crypto (USDT, TON, BTC via Crypto Pay): 2.46 USD" in html


# --- Price history --------------------------------------------------------------------------


def test_a_managers_price_change_is_recorded_with_who_and_old_and_new(member, catalog):
    client = member("Managers")
    package = catalog.packages.get(name="Standard")
    url = reverse("admin:shop_package_change", args=[package.pk])
    data = form_data(client.get(url))

    assert client.post(url, data).status_code == 302  # saved unchanged: nothing recorded
    assert not PriceChange.objects.exists()
    assert client.post(url, {**data, "price": "9.00"}).status_code == 302

    change = PriceChange.objects.get()
    assert (change.field, change.old_value, change.new_value, change.package, change.product) == (
        PriceChange.Field.PACKAGE_PRICE, D("8.50"), D("9.00"), package, catalog)
    assert change.changed_by.username == "managers" and change.currency == "USD"


def test_prices_edited_in_the_package_list_are_recorded(member, catalog):
    client = member("Managers")
    url = reverse("admin:shop_package_changelist")
    changelist = client.get(url)
    formset = changelist.context["cl"].formset
    data: dict[str, Any] = {"_save": "Save"}
    for form in [formset.management_form, *formset.forms]:
        for name in form.fields:
            value = _value(form[name].value())
            if value is not None:
                data[form.add_prefix(name)] = value
    standard = catalog.packages.get(name="Standard")
    row = next(form for form in formset.forms if form.instance.pk == standard.pk)
    data[row.add_prefix("price")] = "8.75"

    response = client.post(url, data)

    assert response.status_code == 302
    standard.refresh_from_db()
    assert standard.price == D("8.75")
    [change] = PriceChange.objects.all()
    assert (change.package, change.old_value, change.new_value) == (standard, D("8.50"), D("8.75"))


def test_product_prices_minimums_and_inline_package_prices_are_recorded(member, catalog):
    client = member("Managers")
    url = reverse("admin:shop_product_change", args=[catalog.pk])
    data = form_data(client.get(url))
    data.update({"custom_unit_price": "0.019", "min_margin": "0.10", "min_margin_percent": "2"})
    small = next(key for key, value in data.items()
                 if key.endswith("-name") and value == "Small").removesuffix("-name")
    data[f"{small}-price"] = "2.10"

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    recorded = {(c.field, c.old_value, c.new_value) for c in PriceChange.objects.all()}
    assert recorded == {
        (PriceChange.Field.CUSTOM_UNIT_PRICE, D("0.018"), D("0.019")),
        (PriceChange.Field.MIN_MARGIN, D("0.01"), D("0.10")),
        (PriceChange.Field.MIN_MARGIN_PERCENT, D("0"), D("2")),
        (PriceChange.Field.PACKAGE_PRICE, D("2.00"), D("2.10")),
    }
    assert set(PriceChange.objects.values_list("changed_by__username", flat=True)) == {"managers"}


def test_a_supplier_cost_change_from_a_service_is_recorded(catalog):
    supplier = Supplier.objects.get(code="sandbox")
    supplier.cost_per_unit = D("0.0170")

    [change] = catalog_row_save(row=supplier, actor="command:import_costs")

    assert (change.field, change.old_value, change.new_value, change.supplier, change.actor) == (
        PriceChange.Field.SUPPLIER_COST, D("0.0165"), D("0.017"), supplier, "command:import_costs")
    assert change.changed_by is None


def test_a_new_package_records_its_first_price(catalog):
    package = Package(product=catalog, name="Huge", quantity=9000, price=D("170.00"))

    [change] = catalog_row_save(row=package)

    assert (change.old_value, change.new_value, change.package) == (None, D("170.00"), package)


# --- Roles ----------------------------------------------------------------------------------


def test_an_operator_reads_but_cannot_edit_promo_codes_or_prices(member, catalog):
    client = member("Operators")
    code = PromoCode.objects.create(code="SPRING", value=D("5"))
    change_url = reverse("admin:shop_promocode_change", args=[code.pk])

    assert client.get(reverse("admin:shop_promocode_changelist")).status_code == 200
    assert client.get(change_url).status_code == 200  # view only
    assert client.post(change_url, {"code": "SPRING", "kind": "percent", "value": "90"}).status_code == 403
    assert client.get(reverse("admin:shop_promocode_add")).status_code == 403
    package = catalog.packages.get(name="Standard")
    assert client.post(reverse("admin:shop_package_change", args=[package.pk]),
                       {"price": "0.01"}).status_code == 403
    assert client.get(reverse("admin:shop_pricechange_changelist")).status_code == 200
    code.refresh_from_db()
    package.refresh_from_db()
    assert code.value == D("5") and package.price == D("8.50")


def test_a_manager_adds_a_promo_code_but_nobody_edits_the_history(member, catalog):
    client = member("Managers")

    response = client.post(reverse("admin:shop_promocode_add"), {
        "code": " spring 25 ", "kind": "percent", "value": "25", "currency": "USD",
        "max_uses_per_buyer": "1", "active": "on"})

    assert response.status_code == 302
    assert PromoCode.objects.get().code == "SPRING25"
    assert client.get(reverse("admin:shop_pricechange_add")).status_code == 403
    assert client.get(reverse("admin:shop_promoredemption_add")).status_code == 403
