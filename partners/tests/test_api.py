"""Every endpoint of /api/v1/ through Django's test client, as a partner's code would call it."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from orders.models import Order
from orders.models import OrderStatus as S
from partners.models import ApiKey, IdempotencyKey, LedgerEntry, Partner, PartnerOrder
from partners.services import (
    api_key_create,
    api_key_revoke,
    partner_balance_topup,
    partner_create,
)
from partners.tests.conftest import Api
from shop.models import Package, Product
from shop.money import money, percent_of
from shop.pricing import margin_minimum, price_floor, supplier_cost, supplier_current

STANDARD = 500  # the demo's "Standard" package: 500 Stars for $8.50


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is `status` with the API's error envelope carrying `code`."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["retryable"], bool)
    return error


def topup(api: Api, *, key: str | None = None, **body: Any) -> Any:
    body.setdefault("platform", "telegram")
    body.setdefault("user_id", "123456789")
    if "package_id" not in body:
        body.setdefault("stars", STANDARD)
    return api.post("topup", body, idempotency_key=key or uuid.uuid4().hex)


def counts() -> tuple[int, int, int, int]:
    return (Order.objects.count(), LedgerEntry.objects.count(), PartnerOrder.objects.count(),
            IdempotencyKey.objects.count())


@pytest.fixture
def other_api(catalog) -> Api:
    """A second partner with its own test key."""
    partner = partner_create(name="Other Reseller", actor="test")
    key, token = api_key_create(partner=partner, test=True)
    return Api(token, key)


# --- products -------------------------------------------------------------------------------


def test_products_lists_packages_at_list_price_for_a_partner_without_discount(
        test_api: Api, catalog: Product) -> None:
    response = test_api.get("products")

    assert response.status_code == 200
    [product] = response.json()["products"]
    assert product["id"] == catalog.slug
    assert product["platform"] == "telegram"
    assert (product["min_stars"], product["max_stars"]) == (50, 10_000)
    assert product["custom_amount"] is True
    on_sale = {package.pk: package for package in catalog.packages.filter(active=True)}
    assert {package["id"] for package in product["packages"]} == set(on_sale)
    for package in product["packages"]:
        assert Decimal(package["price"]) == on_sale[package["id"]].price
        assert package["list_price"] == package["price"]
        assert package["stars"] == on_sale[package["id"]].quantity


@pytest.mark.parametrize("discount", [Decimal("5"), Decimal("90")])
def test_products_apply_the_partner_discount_never_under_the_margin_floor(
        test_api: Api, partner: Partner, catalog: Product, discount: Decimal) -> None:
    Partner.objects.filter(pk=partner.pk).update(discount_percent=discount)
    supplier = supplier_current()

    [product] = test_api.get("products").json()["products"]

    assert Decimal(product["discount_percent"]) == discount
    assert product["packages"], "every demo package stays on sale at some price"
    for package in product["packages"]:
        list_price = Decimal(package["list_price"])
        price = Decimal(package["price"])
        cost = supplier_cost(supplier=supplier, quantity=package["stars"])
        floor = price_floor(product=catalog, cost=cost, fee_percent=Decimal(0))
        assert floor is not None
        assert price == max(money(list_price - percent_of(list_price, discount)), floor)
        assert price - cost >= margin_minimum(product=catalog, price=price)
        assert price <= list_price


def test_products_leave_out_packages_the_margin_guard_refuses_and_inactive_ones(
        test_api: Api, catalog: Product) -> None:
    # 50 Stars cost $0.83 wholesale: at $0.50 no discount could make it pay.
    Package.objects.filter(product=catalog, quantity=50).update(price=Decimal("0.50"))
    Package.objects.filter(product=catalog, quantity=100).update(active=False)

    [product] = test_api.get("products").json()["products"]

    stars = {package["stars"] for package in product["packages"]}
    assert 50 not in stars and 100 not in stars
    assert 500 in stars


# --- validate-user --------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "user_id", "username"), [
    ("123456789", "123456789", "@user123456789"),
    ("@user42000", "42000", "@user42000"),
    ("@sandbox_ok", "100000001", "@sandbox_ok"),
])
def test_validate_user_with_a_test_key_resolves_ids_and_usernames(
        test_api: Api, given: str, user_id: str, username: str) -> None:
    response = test_api.post("validate-user", {"platform": "telegram", "user_id": given})

    assert response.status_code == 200
    assert response.json() == {"valid": True, "user_id": user_id, "username": username}


@pytest.mark.parametrize("given", ["12ab34", "@ab", "", "@" + "x" * 40, "-5"])
def test_validate_user_refuses_a_malformed_recipient_with_a_reason(test_api: Api, given: str) -> None:
    response = test_api.post("validate-user", {"platform": "telegram", "user_id": given})

    if given == "":
        assert_error(response, 400, "invalid_request")
        return
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert body["user_id"] is None
    assert body["reason"]


@pytest.mark.parametrize("given", ["@sandbox_invalid", "100000003"])
def test_validate_user_says_invalid_for_the_sandbox_invalid_recipient(
        test_api: Api, given: str) -> None:
    response = test_api.post("validate-user", {"user_id": given})

    assert response.status_code == 200
    assert response.json()["valid"] is False


@pytest.mark.parametrize("body", [{}, {"user_id": ["123"]}, {"user_id": None}, {"platform": "vk", "user_id": "123456789"},
                                  [], "not an object"])
def test_validate_user_refuses_a_malformed_body(test_api: Api, body: Any) -> None:
    assert_error(test_api.post("validate-user", body), 400, "invalid_request")


def test_validate_user_refuses_a_body_that_is_not_json(test_api: Api) -> None:
    response = test_api.client.post("/api/v1/validate-user", "{nope", content_type="application/json",
                                    headers=test_api._headers(None))
    assert_error(response, 400, "invalid_request")


def test_validate_user_with_a_live_key_asks_the_http_supplier(live_api: Api, supplier) -> None:
    ok = live_api.post("validate-user", {"user_id": "@sandbox_ok"})
    invalid = live_api.post("validate-user", {"user_id": "@sandbox_invalid"})

    assert ok.status_code == 200
    assert ok.json() == {"valid": True, "user_id": "100000001", "username": "@sandbox_ok"}
    assert invalid.status_code == 200
    assert invalid.json()["valid"] is False


def test_validate_user_with_a_live_key_is_503_retryable_when_the_supplier_is_down(
        live_api: Api, supplier) -> None:
    supplier.stop()

    response = live_api.post("validate-user", {"user_id": "123456789"})

    error = assert_error(response, 503, "unavailable")
    assert error["retryable"] is True
    assert int(response["Retry-After"]) >= 1


def test_topup_with_a_live_key_is_503_and_places_nothing_when_the_supplier_is_down(
        live_api: Api, supplier) -> None:
    supplier.stop()
    before = counts()

    assert_error(topup(live_api), 503, "unavailable")
    assert counts() == before


# --- topup ----------------------------------------------------------------------------------


def test_topup_with_stars_places_a_paid_order_and_charges_the_sandbox_balance(
        test_api: Api, partner: Partner) -> None:
    response = topup(test_api, key="first", user_id="@user777777", stars=STANDARD, reference="inv-1")

    assert response.status_code == 201
    body = response.json()
    assert body["reference"] == "inv-1"
    assert body["status"] == "pending"
    assert (body["user_id"], body["username"], body["stars"]) == ("777777", "@user777777", STANDARD)
    assert body["cost"] == "8.50"
    assert body["currency"] == "USD"
    assert body["refunded"] is False
    order = Order.objects.get(public_id=body["order_id"])
    assert order.status == S.PAID
    assert order.channel == "api"
    assert order.payment_method == "balance"
    assert order.supplier_code == "partner-sandbox"
    assert order.partner_order.sandbox is True
    partner.refresh_from_db()
    assert partner.sandbox_balance == Decimal("91.50")
    assert partner.balance == Decimal("100.00")
    charge = LedgerEntry.objects.get(order=order)
    assert (charge.kind, charge.amount, charge.balance_after, charge.sandbox) == (
        "charge", Decimal("-8.50"), Decimal("91.50"), True)


def test_topup_with_a_package_id_buys_that_package(test_api: Api, catalog: Product) -> None:
    package = catalog.packages.get(quantity=1000)

    response = topup(test_api, package_id=package.pk)

    assert response.status_code == 201
    body = response.json()
    assert (body["stars"], body["package_id"], body["cost"]) == (1000, package.pk, str(package.price))


def test_topup_of_a_custom_amount_is_priced_per_star(test_api: Api, catalog: Product) -> None:
    response = topup(test_api, stars=777)

    assert response.status_code == 201
    assert response.json()["package_id"] is None
    assert Decimal(response.json()["cost"]) == money(catalog.custom_unit_price * 777)


def test_topup_with_a_live_key_charges_the_live_balance(live_api: Api, partner: Partner,
                                                        supplier) -> None:
    response = topup(live_api, user_id="@sandbox_ok")

    assert response.status_code == 201
    order = Order.objects.get(public_id=response.json()["order_id"])
    assert order.supplier_code == "sandbox"
    assert order.partner_order.sandbox is False
    partner.refresh_from_db()
    assert (partner.balance, partner.sandbox_balance) == (Decimal("91.50"), Decimal("100.00"))


@pytest.mark.parametrize("body", [
    {"user_id": "123456789"},
    {"user_id": "123456789", "stars": 500, "package_id": 4},
    {"user_id": "123456789", "stars": 0},
    {"user_id": "123456789", "stars": "many"},
    {"user_id": "123456789", "stars": 500, "platform": "vk"},
    {"stars": 500},
    {"user_id": "123456789", "stars": 500, "reference": ""},
    {"user_id": "123456789", "stars": 500, "reference": "r" * 101},
    [], "a string", None,
])
def test_topup_refuses_a_malformed_body_with_invalid_request(test_api: Api, body: Any) -> None:
    before = counts()

    assert_error(test_api.post("topup", body, idempotency_key=uuid.uuid4().hex), 400,
                 "invalid_request")
    assert counts() == before


@pytest.mark.parametrize("stars", [49, 10_001])
def test_topup_out_of_range_is_amount_out_of_range(test_api: Api, stars: int) -> None:
    before = counts()

    assert_error(topup(test_api, stars=stars), 422, "amount_out_of_range")
    assert counts() == before


def test_topup_of_a_package_not_on_sale_is_product_unavailable(
        test_api: Api, catalog: Product) -> None:
    package = catalog.packages.get(quantity=1000)
    Package.objects.filter(pk=package.pk).update(active=False)
    before = counts()

    assert_error(topup(test_api, package_id=package.pk), 422, "product_unavailable")
    assert_error(topup(test_api, package_id=2**31 - 1), 422, "product_unavailable")
    assert counts() == before


def test_topup_the_margin_guard_refuses_is_product_unavailable(
        test_api: Api, catalog: Product) -> None:
    Package.objects.filter(product=catalog, quantity=50).update(price=Decimal("0.50"))
    package = catalog.packages.get(quantity=50)
    before = counts()

    assert_error(topup(test_api, package_id=package.pk), 422, "product_unavailable")
    # 50 Stars by amount is that same package, refused the same way.
    assert_error(topup(test_api, stars=50), 422, "product_unavailable")
    assert counts() == before


def test_topup_when_the_product_is_off_sale_is_product_unavailable(
        test_api: Api, catalog: Product) -> None:
    Product.objects.filter(pk=catalog.pk).update(active=False)

    assert_error(topup(test_api), 422, "product_unavailable")


@pytest.mark.parametrize("user_id", ["@sandbox_invalid", "100000003", "12ab", "@ab"])
def test_topup_to_an_invalid_recipient_is_invalid_recipient(test_api: Api, user_id: str) -> None:
    before = counts()

    assert_error(topup(test_api, user_id=user_id), 422, "invalid_recipient")
    assert counts() == before


@pytest.mark.parametrize("live", [False, True])
def test_topup_over_the_balance_is_402_and_changes_nothing(
        request, partner: Partner, live: bool) -> None:
    if live:
        request.getfixturevalue("supplier")
    api: Api = request.getfixturevalue("live_api" if live else "test_api")
    assert topup(api, package_id=Package.objects.get(quantity=5000).pk).status_code == 201  # $70
    partner.refresh_from_db()
    balances = (partner.balance, partner.sandbox_balance)
    before = counts()

    response = topup(api, key="too-much", stars=5000)  # $90 more, $30 left

    error = assert_error(response, 402, "insufficient_balance")
    assert error["retryable"] is False
    assert counts() == before
    partner.refresh_from_db()
    assert (partner.balance, partner.sandbox_balance) == balances
    # The refusal is not remembered: once topped up, the same key goes through.
    partner_balance_topup(partner=partner, amount=Decimal("100"), actor="test", note="more",
                          sandbox=not live)
    assert topup(api, key="too-much", stars=5000).status_code == 201


# --- Idempotency-Key ------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   ", "k" * 101])
def test_topup_without_a_usable_idempotency_key_is_400(test_api: Api, header: str | None) -> None:
    before = counts()

    response = test_api.post("topup", {"user_id": "123456789", "stars": 500},
                             idempotency_key=header)

    error = assert_error(response, 400, "invalid_request")
    assert "Idempotency-Key" in error["message"]
    assert counts() == before


def test_topup_retried_with_the_same_key_and_body_returns_the_original_order(
        test_api: Api, partner: Partner) -> None:
    first = topup(test_api, key="retry-me", stars=500)
    again = topup(test_api, key="retry-me", stars=500)

    assert first.status_code == again.status_code == 201
    # The very bytes, not only equal JSON (jsonb would reorder a stored body's keys).
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="charge").count() == 1
    partner.refresh_from_db()
    assert partner.sandbox_balance == Decimal("91.50")


def test_topup_replay_ignores_key_order_and_whitespace_of_the_json(test_api: Api) -> None:
    headers = {**test_api._headers({"Idempotency-Key": "formatted"})}
    first = test_api.client.post(
        "/api/v1/topup", '{"platform":"telegram","user_id":"123456789","stars":500}',
        content_type="application/json", headers=headers)
    again = test_api.client.post(
        "/api/v1/topup", '{\n  "stars": 500,\n  "user_id" : "123456789",  "platform": "telegram"\n}',
        content_type="application/json", headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Order.objects.count() == 1


@pytest.mark.parametrize("changed", [{"stars": 501}, {"user_id": "987654321"},
                                     {"reference": "other"}, {"package_id": 4, "stars": None}])
def test_topup_same_key_with_another_body_is_409_and_changes_nothing(
        test_api: Api, partner: Partner, changed: dict) -> None:
    assert topup(test_api, key="once", stars=500).status_code == 201
    before = counts()
    body = {"platform": "telegram", "user_id": "123456789", "stars": 500, **changed}
    body = {name: value for name, value in body.items() if value is not None}

    response = test_api.post("topup", body, idempotency_key="once")

    assert_error(response, 409, "idempotency_conflict")
    assert counts() == before
    partner.refresh_from_db()
    assert partner.sandbox_balance == Decimal("91.50")


def test_topup_reusing_a_reference_under_a_new_key_is_409(test_api: Api, partner: Partner) -> None:
    assert topup(test_api, key="a", reference="invoice-7").status_code == 201
    before = counts()

    assert_error(topup(test_api, key="b", reference="invoice-7"), 409, "idempotency_conflict")
    # A key that equals an earlier order's defaulted reference clashes the same way.
    assert topup(test_api, key="c").status_code == 201
    assert_error(topup(test_api, key="d", reference="c"), 409, "idempotency_conflict")
    assert counts()[0] == before[0] + 1
    partner.refresh_from_db()
    assert partner.sandbox_balance == Decimal("83.00")


def test_idempotency_keys_are_per_partner_and_per_mode(
        test_api: Api, live_api: Api, other_api: Api, supplier) -> None:
    orders = {topup(api, key="same-key").json()["order_id"] for api in (test_api, live_api, other_api)}

    assert len(orders) == 3


def test_long_idempotency_keys_that_differ_only_at_the_end_are_different_topups(
        test_api: Api) -> None:
    # Same body, no reference: only the keys (each a valid reference) tell them apart.
    stem = "order-2026-11-30-" + "x" * 80

    first = topup(test_api, key=stem + "-1")
    second = topup(test_api, key=stem + "-2")

    assert first.status_code == second.status_code == 201
    assert first.json()["order_id"] != second.json()["order_id"]


def test_a_long_idempotency_key_without_a_reference_is_found_by_reference(test_api: Api) -> None:
    key = "k" * 100

    placed = topup(test_api, key=key)

    assert placed.status_code == 201, placed.content
    found = test_api.get("orders", {"reference": placed.json()["reference"]})
    assert found.status_code == 200
    assert found.json()["order_id"] == placed.json()["order_id"]


# --- orders ---------------------------------------------------------------------------------


def test_order_by_id_answers_the_order(test_api: Api) -> None:
    placed = topup(test_api, reference="mine").json()

    response = test_api.get(f"orders/{placed['order_id']}")

    assert response.status_code == 200
    assert response.json() == placed


@pytest.mark.parametrize("order_id", [str(uuid.uuid4()), "not-a-uuid", "1"])
def test_order_by_unknown_id_is_404(test_api: Api, order_id: str) -> None:
    assert_error(test_api.get(f"orders/{order_id}"), 404, "not_found")


def test_order_by_reference_and_by_idempotency_key(test_api: Api) -> None:
    with_reference = topup(test_api, key="key-1", reference="ref-1").json()
    without_reference = topup(test_api, key="key-2").json()

    by_reference = test_api.get("orders", {"reference": "ref-1"})
    by_key = test_api.get("orders", {"reference": "key-2"})

    assert by_reference.status_code == by_key.status_code == 200
    assert by_reference.json() == with_reference
    assert by_key.json() == without_reference
    assert without_reference["reference"] == "key-2"
    assert_error(test_api.get("orders", {"reference": "key-1"}), 404, "not_found")
    assert_error(test_api.get("orders", {"reference": "nobody"}), 404, "not_found")


def test_another_partners_order_is_404_not_403(test_api: Api, other_api: Api) -> None:
    theirs = topup(other_api, reference="secret").json()

    assert_error(test_api.get(f"orders/{theirs['order_id']}"), 404, "not_found")
    assert_error(test_api.get("orders", {"reference": "secret"}), 404, "not_found")
    assert test_api.get("orders").json()["orders"] == []


def test_test_and_live_keys_do_not_see_each_others_orders(
        test_api: Api, live_api: Api, supplier) -> None:
    sandbox_order = topup(test_api, reference="sbx").json()
    live_order = topup(live_api, reference="live", user_id="@sandbox_ok").json()

    assert_error(live_api.get(f"orders/{sandbox_order['order_id']}"), 404, "not_found")
    assert_error(test_api.get(f"orders/{live_order['order_id']}"), 404, "not_found")
    assert_error(live_api.get("orders", {"reference": "sbx"}), 404, "not_found")
    assert_error(test_api.get("orders", {"reference": "live"}), 404, "not_found")
    assert [o["order_id"] for o in test_api.get("orders").json()["orders"]] == [sandbox_order["order_id"]]
    assert [o["order_id"] for o in live_api.get("orders").json()["orders"]] == [live_order["order_id"]]


def test_a_second_key_of_the_same_partner_sees_the_partners_orders(
        test_api: Api, partner: Partner) -> None:
    placed = topup(test_api).json()
    key, token = api_key_create(partner=partner, test=True)

    assert Api(token, key).get(f"orders/{placed['order_id']}").status_code == 200


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [order["order_id"] for order in response.json()["orders"]]


def test_order_list_filters_by_status_user_and_time(test_api: Api) -> None:
    placed = [topup(test_api, user_id=user_id).json()["order_id"]
              for user_id in ("111111", "222222", "111111", "333333")]
    orders = {order.public_id: order for order in Order.objects.all()}
    delivered, refunded = Order.objects.get(public_id=placed[1]), Order.objects.get(public_id=placed[2])
    # Test set-up only: statuses and times set directly instead of through a fulfilment.
    Order.objects.filter(pk=delivered.pk).update(status=S.DELIVERED)
    Order.objects.filter(pk=refunded.pk).update(status=S.REFUNDED)
    now = timezone.now()
    for position, public_id in enumerate(placed):
        Order.objects.filter(public_id=public_id).update(created_at=now - timedelta(days=4 - position))
    assert len(orders) == 4

    assert _ids(test_api.get("orders")) == placed[::-1]
    assert _ids(test_api.get("orders", {"status": "completed"})) == [placed[1]]
    assert _ids(test_api.get("orders", {"status": "failed"})) == [placed[2]]
    assert _ids(test_api.get("orders", {"status": "pending"})) == [placed[3], placed[0]]
    assert _ids(test_api.get("orders", {"status": "processing"})) == []
    assert _ids(test_api.get("orders", {"user_id": "111111"})) == [placed[2], placed[0]]
    after = (now - timedelta(days=3)).isoformat()
    before = (now - timedelta(days=1)).isoformat()
    assert _ids(test_api.get("orders", {"created_after": after})) == placed[:0:-1]
    assert _ids(test_api.get("orders", {"created_before": before})) == placed[2::-1]
    assert _ids(test_api.get("orders", {"created_after": after, "created_before": before,
                                        "user_id": "111111"})) == [placed[2]]
    completed = test_api.get("orders", {"status": "completed"}).json()["orders"][0]
    assert completed["status"] == "completed"


@pytest.mark.parametrize("params", [
    {"status": "delivered"}, {"created_after": "yesterday"},
    {"created_after": "2026-11-30T00:00:00"},  # no zone
    {"limit": "0"}, {"limit": "101"}, {"limit": "-1"}, {"limit": "ten"}, {"limit": "1.5"},
    {"cursor": "!!!"}, {"cursor": base64.urlsafe_b64encode(b"0").decode()},
    {"cursor": base64.urlsafe_b64encode(b"abc").decode()}, {"cursor": "\u00e9t\u00e9"},
])
def test_order_list_refuses_bad_parameters(test_api: Api, params: dict) -> None:
    assert_error(test_api.get("orders", params), 400, "invalid_request")


def test_order_list_limit_bounds_are_accepted(test_api: Api) -> None:
    for _ in range(3):
        topup(test_api, stars=50)

    assert len(_ids(test_api.get("orders", {"limit": "1"}))) == 1
    assert len(_ids(test_api.get("orders", {"limit": "100"}))) == 3
    assert len(_ids(test_api.get("orders"))) == 3


def test_order_list_pages_with_a_cursor_without_gaps_or_duplicates(test_api: Api) -> None:
    placed = [topup(test_api, stars=50).json()["order_id"] for _ in range(8)]
    seen: list[str] = []
    params: dict[str, str] = {"limit": "3"}
    pages = 0
    while True:
        response = test_api.get("orders", params)
        seen += _ids(response)
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        params = {"limit": "3", "cursor": cursor}
        # An order placed meanwhile lands on the first page, never in the middle of a walk.
        if pages == 1:
            topup(test_api, stars=50)

    assert pages == 3
    assert seen == placed[::-1]


def test_order_list_cursor_page_that_ends_exactly_has_no_next_cursor(test_api: Api) -> None:
    for _ in range(4):
        topup(test_api, stars=50)

    first = test_api.get("orders", {"limit": "2"}).json()
    second = test_api.get("orders", {"limit": "2", "cursor": first["next_cursor"]}).json()

    assert len(second["orders"]) == 2
    assert second["next_cursor"] is None


# --- balance and ledger ---------------------------------------------------------------------


def test_balance_is_the_live_one_for_a_live_key_and_the_sandbox_one_for_a_test_key(
        test_api: Api, live_api: Api, partner: Partner) -> None:
    Partner.objects.filter(pk=partner.pk).update(balance=Decimal("12.34"))

    assert live_api.get("balance").json() == {"balance": "12.34", "currency": "USD",
                                              "sandbox": False}
    assert test_api.get("balance").json() == {"balance": "100.00", "currency": "USD",
                                              "sandbox": True}
    topup(test_api)
    assert test_api.get("balance").json()["balance"] == "91.50"
    assert live_api.get("balance").json()["balance"] == "12.34"


def test_ledger_shows_the_keys_own_balance_moves_newest_first(
        test_api: Api, live_api: Api) -> None:
    placed = topup(test_api).json()

    sandbox = test_api.get("ledger").json()
    live = live_api.get("ledger").json()

    assert [(e["kind"], e["amount"], e["balance_after"], e["order_id"]) for e in sandbox["entries"]] == [
        ("charge", "-8.50", "91.50", placed["order_id"]),
        ("sandbox_grant", "100.00", "100.00", None),
    ]
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in live["entries"]] == [
        ("topup", "100.00", "100.00")]
    assert sandbox["next_cursor"] is None


def test_ledger_pages_with_a_cursor(test_api: Api) -> None:
    for _ in range(3):
        topup(test_api, stars=50)
    ids: list[int] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        page = test_api.get("ledger", params).json()
        ids += [entry["id"] for entry in page["entries"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": "2", "cursor": page["next_cursor"]}

    assert len(ids) == 4 == len(set(ids))
    assert ids == sorted(ids, reverse=True)
    assert_error(test_api.get("ledger", {"cursor": "%%%"}), 400, "invalid_request")


def test_another_partners_ledger_is_not_shown(test_api: Api, other_api: Api) -> None:
    topup(other_api)

    assert [entry["kind"] for entry in test_api.get("ledger").json()["entries"]] == ["sandbox_grant"]


# --- authentication, allowlist, rate limits -------------------------------------------------

ENDPOINTS = [("get", "products"), ("post", "validate-user"), ("post", "topup"), ("get", "orders"),
             ("get", f"orders/{uuid.uuid4()}"), ("get", "balance"), ("get", "ledger")]


def _call(client: Any, method: str, path: str, authorization: str | None) -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    if method == "post":
        headers["Idempotency-Key"] = "auth-test"
        return client.post(f"/api/v1/{path}", {"user_id": "123456789", "stars": 500},
                           content_type="application/json", headers=headers)
    return client.get(f"/api/v1/{path}", headers=headers)


def _assert_unauthorized(response: Any) -> None:
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_needs_a_key(test_api: Api, method: str, path: str) -> None:
    _assert_unauthorized(_call(test_api.client, method, path, None))


@pytest.mark.parametrize("authorization", [
    "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token {token}", "{token}",
    "Bearer rsk_test_deadbeef_nothing", "Bearer rsk_live_{hex}_{secret}", "Bearer nonsense",
    "Bearer {token}x", "Bearer " + "rsk_test_" + "a" * 300,
])
def test_bad_credentials_are_401_with_the_error_body(test_api: Api, authorization: str) -> None:
    # The right prefix (live instead of test) with the right secret is still someone else's key.
    _, hex_part, secret = test_api.token.split("_", 3)[1:]
    value = authorization.format(token=test_api.token, hex=hex_part, secret=secret)
    before = counts()

    _assert_unauthorized(_call(test_api.client, "post", "topup", value))
    _assert_unauthorized(_call(test_api.client, "get", "balance", value))
    assert counts() == before


def test_right_prefix_with_a_wrong_secret_is_401(test_api: Api) -> None:
    prefix = test_api.key.prefix
    forged = f"{prefix}_{'A' * 43}"

    _assert_unauthorized(_call(test_api.client, "get", "balance", f"Bearer {forged}"))


def test_the_bearer_scheme_is_case_insensitive(test_api: Api) -> None:
    assert _call(test_api.client, "get", "balance", f"bearer {test_api.token}").status_code == 200


def test_a_revoked_key_is_401(test_api: Api) -> None:
    assert test_api.get("balance").status_code == 200
    api_key_revoke(key=test_api.key)

    _assert_unauthorized(test_api.get("balance"))
    _assert_unauthorized(topup(test_api))


def test_an_inactive_partners_keys_are_401(test_api: Api, live_api: Api, partner: Partner) -> None:
    Partner.objects.filter(pk=partner.pk).update(active=False)

    _assert_unauthorized(test_api.get("balance"))
    _assert_unauthorized(live_api.get("products"))


def test_a_key_records_when_it_was_last_used(test_api: Api) -> None:
    assert ApiKey.objects.get(pk=test_api.key.pk).last_used_at is None

    test_api.get("balance")

    assert ApiKey.objects.get(pk=test_api.key.pk).last_used_at is not None


@pytest.mark.parametrize(("allowed", "address", "status"), [
    ("10.0.0.0/8", "10.1.2.3", 200),
    ("10.0.0.0/8", "192.168.1.1", 403),
    ("203.0.113.7", "203.0.113.7", 200),
    ("203.0.113.7", "203.0.113.8", 403),
    ("192.168.0.0/16\n10.0.0.0/8", "10.9.9.9", 200),
    ("192.168.0.0/16, 2001:db8::/32", "2001:db8::1", 200),
    ("2001:db8::/32", "2001:db9::1", 403),
    ("not an address\n10.0.0.0/8", "10.0.0.1", 200),
    ("", "198.51.100.1", 200),
])
def test_ip_allowlist(test_api: Api, allowed: str, address: str, status: int) -> None:
    ApiKey.objects.filter(pk=test_api.key.pk).update(allowed_ips=allowed)
    test_api.client.defaults["REMOTE_ADDR"] = address

    response = test_api.get("balance")

    if status == 200:
        assert response.status_code == 200
    else:
        assert_error(response, 403, "forbidden")
        before = counts()
        assert_error(topup(test_api), 403, "forbidden")
        assert counts() == before


def test_per_key_rate_limit_is_429_with_retry_after(test_api: Api, partner: Partner) -> None:
    ApiKey.objects.filter(pk=test_api.key.pk).update(rate_limit="3/minute")
    other_key, other_token = api_key_create(partner=partner, test=True)

    answers = [test_api.get("balance") for _ in range(3)]
    limited = test_api.get("balance")

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    error = assert_error(limited, 429, "rate_limited")
    assert error["retryable"] is True
    assert int(limited["Retry-After"]) >= 1
    before = counts()
    assert_error(topup(test_api), 429, "rate_limited")
    assert counts() == before
    # The limit is the key's, not the partner's or the address's.
    assert Api(other_token, other_key).get("balance").status_code == 200


def test_per_address_rate_limit_counts_requests_without_a_valid_key(
        test_api: Api, settings) -> None:
    settings.PARTNER_API_RATE_PER_IP = "5/minute"

    answers = [_call(test_api.client, "get", "balance", "Bearer rsk_test_guess_guess").status_code
               for _ in range(5)]
    limited = _call(test_api.client, "get", "balance", f"Bearer {test_api.token}")

    assert answers == [401] * 5
    assert_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) >= 1


# --- unknown paths and methods --------------------------------------------------------------


@pytest.mark.parametrize("path", ["nothing", "orders/1/2", "topup/", "v2/topup", ""])
def test_unknown_path_is_a_json_404(test_api: Api, path: str) -> None:
    assert_error(test_api.get(path), 404, "not_found")


def test_unknown_path_without_a_key_is_a_json_404_too(test_api: Api) -> None:
    assert_error(test_api.client.get("/api/v1/nothing"), 404, "not_found")


@pytest.mark.parametrize(("method", "path"), [
    ("get", "topup"), ("get", "validate-user"), ("post", "products"), ("post", "balance"),
    ("delete", "orders"), ("put", "ledger"), ("patch", f"orders/{uuid.uuid4()}"),
])
def test_wrong_method_is_405_in_the_error_shape(test_api: Api, method: str, path: str) -> None:
    response = getattr(test_api.client, method)(f"/api/v1/{path}", headers=test_api._headers(None))

    assert_error(response, 405, "method_not_allowed")
    assert "Allow" in response


def test_the_schema_and_docs_are_served_without_a_key(client) -> None:
    schema = client.get("/api/v1/schema/")
    docs = client.get("/api/v1/docs/")

    assert schema.status_code == 200
    assert b"/api/v1/topup" in schema.content
    assert docs.status_code == 200


# --- answers match the published schema ------------------------------------------------------


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema's null type, recursively."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {name: _json_schema(value) for name, value in node.items() if name != "nullable"}
    if node.get("nullable"):
        converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


@pytest.fixture
def schema_check(client) -> Any:
    """check(response, path, method): the answer validates against /api/v1/schema/."""
    import jsonschema
    import yaml

    document = yaml.safe_load(client.get("/api/v1/schema/").content)
    components = _json_schema(document["components"])

    def check(response: Any, path: str, method: str) -> None:
        answers = document["paths"][path][method]["responses"]
        answer = answers.get(str(response.status_code))
        assert answer is not None, f"{method} {path} answered {response.status_code}, not documented"
        schema = _json_schema(answer["content"]["application/json"]["schema"])
        jsonschema.validate(response.json(), {**schema, "components": components})

    return check


def test_every_answer_matches_the_schema(test_api: Api, other_api: Api, schema_check,
                                         catalog: Product) -> None:
    Partner.objects.filter(pk=test_api.key.partner_id).update(discount_percent=Decimal("12.5"))
    placed = topup(test_api, key="s-1", stars=777)
    topup(test_api, key="s-2", package_id=catalog.packages.get(quantity=500).pk)
    order_id = placed.json()["order_id"]
    checks = [
        (test_api.get("products"), "/api/v1/products", "get"),
        (test_api.post("validate-user", {"user_id": "123456789"}), "/api/v1/validate-user", "post"),
        (test_api.post("validate-user", {"user_id": "@sandbox_invalid"}), "/api/v1/validate-user",
         "post"),
        (test_api.post("validate-user", {"user_id": "bad!"}), "/api/v1/validate-user", "post"),
        (test_api.post("validate-user", {}), "/api/v1/validate-user", "post"),
        (placed, "/api/v1/topup", "post"),
        (topup(test_api, key="s-1", stars=777), "/api/v1/topup", "post"),
        (topup(test_api, key="s-1", stars=778), "/api/v1/topup", "post"),
        (topup(test_api, stars=10_000), "/api/v1/topup", "post"),
        (topup(test_api, stars=1), "/api/v1/topup", "post"),
        (topup(test_api, user_id="@sandbox_invalid"), "/api/v1/topup", "post"),
        (test_api.post("topup", {"user_id": "1", "stars": 50}), "/api/v1/topup", "post"),
        (test_api.get(f"orders/{order_id}"), "/api/v1/orders/{order_id}", "get"),
        (test_api.get(f"orders/{uuid.uuid4()}"), "/api/v1/orders/{order_id}", "get"),
        (test_api.get("orders"), "/api/v1/orders", "get"),
        (test_api.get("orders", {"limit": "1"}), "/api/v1/orders", "get"),
        (test_api.get("orders", {"reference": "s-2"}), "/api/v1/orders", "get"),
        (test_api.get("orders", {"reference": "none"}), "/api/v1/orders", "get"),
        (test_api.get("orders", {"limit": "0"}), "/api/v1/orders", "get"),
        (test_api.get("balance"), "/api/v1/balance", "get"),
        (test_api.get("ledger"), "/api/v1/ledger", "get"),
        (test_api.get("ledger", {"limit": "1"}), "/api/v1/ledger", "get"),
        (test_api.client.get("/api/v1/balance"), "/api/v1/balance", "get"),
    ]
    for response, path, method in checks:
        schema_check(response, path, method)


@pytest.mark.parametrize("params", [{"reference": "a\x00b"}, {"user_id": "1\x00"},
                                    {"status": "\x00"}, {"limit": "1\x00"}])
def test_order_list_refuses_nul_characters(test_api: Api, params: dict) -> None:
    """PostgreSQL cannot compare text with NUL in it: a 400, not a database error."""
    assert_error(test_api.get("orders", params), 400, "invalid_request")


@pytest.mark.parametrize("path", ["orders", "ledger"])
def test_a_cursor_past_any_id_is_not_a_server_error(test_api: Api, path: str) -> None:
    response = test_api.get(path, {"cursor": base64.urlsafe_b64encode(b"9" * 30).decode()})

    assert response.status_code in (200, 400), response.content


@pytest.mark.parametrize("body", [{"user_id": "12\x0034"}, {"user_id": "123456789", "stars": 500,
                                                            "reference": "r\x00"}])
def test_nul_characters_in_a_body_are_invalid_request(test_api: Api, body: dict) -> None:
    before = counts()

    assert_error(test_api.post("topup", {"stars": 500, **body}, idempotency_key="nul"), 400,
                 "invalid_request")
    if "reference" not in body:
        assert_error(test_api.post("validate-user", body), 400, "invalid_request")
    assert counts() == before


def test_topup_priced_in_another_currency_than_the_balance_is_refused(
        test_api: Api, partner: Partner) -> None:
    Partner.objects.filter(pk=partner.pk).update(currency="EUR")
    before = counts()

    assert_error(topup(test_api), 422, "product_unavailable")
    assert counts() == before
    partner.refresh_from_db()
    assert partner.sandbox_balance == Decimal("100.00")
