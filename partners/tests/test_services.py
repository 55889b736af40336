"""Partner services: keys, fingerprints, Idempotency-Key retention, and the money rule when
many top-ups race (threads, each with its own database connection); and a test key's order
driven through the fulfilment jobs to its end.

The racing and end-to-end tests are transactional, so they run on SQLite and on PostgreSQL
as CI runs them. pytest-django runs transactional tests after all others, and the one later
test that needs the migrated roles restores them itself (orders.tests.roles.roles_restore).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from orders.models import Order, OrderEvent, SandboxTopup
from orders.models import OrderStatus as S
from orders.services import order_refund
from partners.api.authentication import key_from_token
from partners.models import ApiKey, IdempotencyKey, LedgerEntry, Partner, PartnerOrder
from partners.services import (
    api_key_create,
    api_key_revoke,
    idempotency_keys_purge,
    key_hash,
    partner_create,
    request_fingerprint,
)
from partners.tests.conftest import Api
from shop.demo import demo_catalog_load

PRICE = Decimal("8.50")  # 500 Stars, the demo's Standard package


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("test", "prefix"), [(True, "rsk_test_"), (False, "rsk_live_")])
def test_api_key_create_returns_the_key_once_and_stores_only_its_hash(
        partner: Partner, test: bool, prefix: str) -> None:
    key, token = api_key_create(partner=partner, test=test, name="ci")

    assert token.startswith(key.prefix + "_")
    assert key.prefix.startswith(prefix)
    assert key.key_hash == key_hash(token)
    assert token not in {key.key_hash, key.prefix, key.name}
    assert key.webhook_secret.startswith("whsec_")
    assert key_from_token(token) == key
    other_key, other_token = api_key_create(partner=partner, test=test)
    assert other_token != token and other_key.prefix != key.prefix


def test_api_key_revoke_keeps_the_first_revocation_time(test_api: Api) -> None:
    first = api_key_revoke(key=test_api.key).revoked_at
    again = api_key_revoke(key=ApiKey.objects.get(pk=test_api.key.pk)).revoked_at

    assert first is not None and again == first
    assert key_from_token(test_api.token) is None


def test_request_fingerprint_is_the_parsed_json_not_its_text() -> None:
    assert request_fingerprint({"a": 1, "b": [1, 2]}) == request_fingerprint({"b": [1, 2], "a": 1})
    assert request_fingerprint({"stars": 500}) != request_fingerprint({"stars": "500"})
    assert request_fingerprint({"stars": 500}) != request_fingerprint({"stars": 501})


def test_idempotency_keys_are_kept_for_the_retention_then_purged(test_api: Api, settings) -> None:
    settings.PARTNER_IDEMPOTENCY_HOURS = 48
    for key in ("fresh", "day-old", "old"):
        assert test_api.post("topup", {"user_id": "123456789", "stars": 50},
                             idempotency_key=key).status_code == 201
    now = timezone.now()
    IdempotencyKey.objects.filter(key="day-old").update(created_at=now - timedelta(hours=25))
    IdempotencyKey.objects.filter(key="old").update(created_at=now - timedelta(hours=49))

    assert idempotency_keys_purge(now=now) == 1

    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {"fresh", "day-old"}
    # The order stays; the purged key's replay is gone, its reference still guards a retry.
    assert Order.objects.count() == 3
    retry = test_api.post("topup", {"user_id": "123456789", "stars": 50}, idempotency_key="old")
    assert retry.status_code == 409
    assert Order.objects.count() == 3


# --- racing top-ups (transactional: real commits, one connection per thread) -----------------


@pytest.fixture
def racing_api(transactional_db, settings) -> Callable[[Decimal], Api]:
    """A partner with a test key and the sandbox balance given, in a committed database."""

    def make(sandbox_balance: Decimal) -> Api:
        settings.PARTNER_SANDBOX_START_BALANCE = sandbox_balance
        demo_catalog_load()
        partner = partner_create(name=f"Racer {uuid.uuid4().hex[:6]}", actor="test")
        key, token = api_key_create(partner=partner, test=True)
        return Api(token, key)

    return make


def race(count: int, request: Callable[[int], Any]) -> list[Any]:
    """Run request(i) for i in range(count) at once, each thread on its own connection."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = request(index)
        except BaseException as error:  # reported below, not swallowed
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a top-up hung"
    errors = [result for result in results if isinstance(result, BaseException)]
    assert not errors, errors
    return results


def post_topup(api: Api, idempotency_key: str, body: dict[str, Any]) -> tuple[int, dict]:
    response = Client().post("/api/v1/topup", body, content_type="application/json",
                             headers={"Authorization": f"Bearer {api.token}",
                                      "Idempotency-Key": idempotency_key})
    return response.status_code, response.json()


@pytest.mark.django_db(transaction=True)
def test_twenty_racing_topups_never_overdraw_the_balance(racing_api) -> None:
    # Covers 7 orders of 8.50 and leaves 5.00: not an eighth.
    api = racing_api(PRICE * 7 + Decimal("5.00"))

    results = race(20, lambda index: post_topup(
        api, f"race-{index}", {"user_id": str(200000000 + index), "stars": 500}))

    statuses = sorted(status for status, _body in results)
    assert statuses == [201] * 7 + [402] * 13
    refused = [body for status, body in results if status == 402]
    assert all(body["error"]["code"] == "insufficient_balance" for body in refused)
    partner = Partner.objects.get(pk=api.key.partner_id)
    assert partner.sandbox_balance == Decimal("5.00")
    assert Order.objects.count() == PartnerOrder.objects.count() == 7
    assert IdempotencyKey.objects.count() == 7
    charges = LedgerEntry.objects.filter(partner=partner, kind="charge")
    assert charges.count() == 7
    entries = LedgerEntry.objects.filter(partner=partner, sandbox=True)
    assert entries.aggregate(total=Sum("amount"))["total"] == partner.sandbox_balance
    # Each charge saw the balance the one before it left: a serial history.
    afters = sorted(charges.values_list("balance_after", flat=True), reverse=True)
    assert afters == [PRICE * n + Decimal("5.00") for n in range(6, -1, -1)]
    placed = {body["order_id"] for status, body in results if status == 201}
    assert placed == {str(public_id) for public_id in Order.objects.values_list("public_id", flat=True)}


@pytest.mark.django_db(transaction=True)
def test_ten_racing_retries_of_one_topup_place_one_order(racing_api) -> None:
    api = racing_api(Decimal("100.00"))
    body = {"platform": "telegram", "user_id": "123456789", "stars": 500, "reference": "inv-1"}

    results = race(10, lambda _index: post_topup(api, "the-same-key", body))

    assert {status for status, _body in results} == {201}
    # Equal as JSON: PostgreSQL's jsonb keeps a replay's keys in its own order.
    assert all(answer == results[0][1] for _status, answer in results)
    assert Order.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="charge").count() == 1
    assert IdempotencyKey.objects.count() == 1
    assert Partner.objects.get(pk=api.key.partner_id).sandbox_balance == Decimal("91.50")
    assert results[0][1]["order_id"] == str(Order.objects.get().public_id)


@pytest.mark.django_db(transaction=True)
def test_racing_topups_with_one_key_and_different_bodies_place_one_order(racing_api) -> None:
    api = racing_api(Decimal("100.00"))

    results = race(6, lambda index: post_topup(
        api, "contested", {"user_id": "123456789", "stars": 500 + index}))

    statuses = sorted(status for status, _body in results)
    assert statuses == [201] + [409] * 5
    assert Order.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="charge").count() == 1


@pytest.mark.django_db(transaction=True)
def test_racing_topups_with_one_reference_under_different_keys_place_one_order(racing_api) -> None:
    api = racing_api(Decimal("100.00"))

    results = race(6, lambda index: post_topup(
        api, f"key-{index}", {"user_id": "123456789", "stars": 500, "reference": "invoice-1"}))

    statuses = sorted(status for status, _body in results)
    assert statuses == [201] + [409] * 5
    assert all(body["error"]["code"] == "idempotency_conflict"
               for status, body in results if status == 409)
    assert Order.objects.count() == 1
    assert Partner.objects.get(pk=api.key.partner_id).sandbox_balance == Decimal("91.50")


# --- a test key's order through the fulfilment jobs -----------------------------------------


@pytest.fixture
def sandbox_partner(transactional_db, settings, q_sync) -> Api:
    """A test key whose orders the sandbox completes at once, with django-q2 run in-process."""
    settings.PARTNER_SANDBOX_DELIVERY_SECONDS = 0
    settings.PARTNER_SANDBOX_START_BALANCE = Decimal("100.00")
    demo_catalog_load()
    partner = partner_create(name="E2E Partner", actor="test")
    key, token = api_key_create(partner=partner, test=True)
    return Api(token, key)


@pytest.mark.django_db(transaction=True)
def test_a_test_key_topup_is_delivered_by_the_sandbox(sandbox_partner: Api) -> None:
    placed = sandbox_partner.post("topup", {"user_id": "@sandbox_ok", "stars": 500},
                                  idempotency_key="e2e-ok")
    assert placed.status_code == 201

    # The sync queue ran fulfilment (and the refund) when the top-up committed.
    order = Order.objects.get(public_id=placed.json()["order_id"])

    assert order.status == S.DELIVERED
    assert SandboxTopup.objects.filter(user_id="100000001", stars=500).count() == 1
    shown = sandbox_partner.get(f"orders/{order.public_id}").json()
    assert shown["status"] == "completed"
    assert shown["delivered_at"] is not None
    assert shown["refunded"] is False
    partner = Partner.objects.get(pk=sandbox_partner.key.partner_id)
    assert (partner.sandbox_balance, partner.balance) == (Decimal("91.50"), Decimal("0.00"))
    assert not LedgerEntry.objects.filter(kind="refund").exists()
    assert PartnerOrder.objects.get(order=order).announced_status == "completed"


@pytest.mark.django_db(transaction=True)
def test_a_test_key_topup_the_sandbox_fails_is_refunded_to_the_sandbox_balance(
        sandbox_partner: Api) -> None:
    placed = sandbox_partner.post("topup", {"user_id": "@sandbox_fail", "stars": 500},
                                  idempotency_key="e2e-fail")
    assert placed.status_code == 201

    # The sync queue ran fulfilment (and the refund) when the top-up committed.
    order = Order.objects.get(public_id=placed.json()["order_id"])

    assert order.status == S.REFUNDED
    partner = Partner.objects.get(pk=sandbox_partner.key.partner_id)
    assert partner.sandbox_balance == Decimal("100.00")
    [refund] = LedgerEntry.objects.filter(order=order, kind="refund")
    assert (refund.amount, refund.sandbox, refund.balance_after) == (PRICE, True, Decimal("100.00"))
    shown = sandbox_partner.get(f"orders/{order.public_id}").json()
    assert shown["status"] == "failed"
    assert shown["refunded"] is True
    assert shown["failure_reason"]
    # Running the refund job again gives nothing back twice.
    order_refund(order_id=order.pk)
    assert Partner.objects.get(pk=partner.pk).sandbox_balance == Decimal("100.00")
    assert LedgerEntry.objects.filter(order=order, kind="refund").count() == 1
    assert OrderEvent.objects.filter(order=order, to_status=S.REFUNDED).count() == 1
