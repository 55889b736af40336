"""The in-process sandbox supplier that partner test keys buy from (orders.suppliers.sandbox)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orders.exceptions import InvalidRecipient, SupplierNotFound
from orders.models import SandboxTopup
from orders.suppliers import SupplierOrderStatus, get_supplier_client
from orders.suppliers.sandbox import (
    FAIL_ID,
    INVALID_ID,
    SANDBOX_SUPPLIER_CODE,
    SLOW_ID,
    SandboxSupplierClient,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox(settings) -> SandboxSupplierClient:
    settings.PARTNER_SANDBOX_DELIVERY_SECONDS = 60
    return SandboxSupplierClient()


def due(reference: str) -> None:
    """Move a sandbox top-up's completion into the past (test set-up only)."""
    SandboxTopup.objects.filter(reference=reference).update(
        completes_at=timezone.now() - timedelta(seconds=1))


def test_the_partner_sandbox_code_selects_the_sandbox_client() -> None:
    assert isinstance(get_supplier_client(SANDBOX_SUPPLIER_CODE), SandboxSupplierClient)
    assert not isinstance(get_supplier_client(""), SandboxSupplierClient)


@pytest.mark.parametrize(("given", "user_id", "username"), [
    ("123456789", "123456789", "@user123456789"),
    ("@user42", "42", "@user42"),
    ("@sandbox_ok", "100000001", "@sandbox_ok"),
    ("@Sandbox_Fail", FAIL_ID, "@Sandbox_Fail"),
    ("@sandbox_slow", SLOW_ID, "@sandbox_slow"),
])
def test_validate_resolves_ids_and_usernames(sandbox: SandboxSupplierClient, given: str,
                                             user_id: str, username: str) -> None:
    info = sandbox.validate_recipient(given)

    assert (info.user_id, info.username) == (user_id, username)


def test_validate_gives_other_usernames_a_stable_ten_digit_id(sandbox: SandboxSupplierClient) -> None:
    first = sandbox.validate_recipient("@alice_wonder").user_id

    assert first == sandbox.validate_recipient("@Alice_Wonder").user_id
    assert first != sandbox.validate_recipient("@bob_builder").user_id
    assert first.isdigit() and len(first) == 10


@pytest.mark.parametrize("given", ["@sandbox_invalid", INVALID_ID, "@SANDBOX_INVALID"])
def test_validate_refuses_the_invalid_recipient(sandbox: SandboxSupplierClient, given: str) -> None:
    with pytest.raises(InvalidRecipient) as refused:
        sandbox.validate_recipient(given)
    assert refused.value.code == "invalid_recipient"


def test_place_topup_is_processing_until_it_is_due_then_completed(
        sandbox: SandboxSupplierClient) -> None:
    placed = sandbox.place_topup(user_id="123456789", stars=500, idempotency_key="k-1")

    assert placed.status == SupplierOrderStatus.PROCESSING
    assert (placed.reference, placed.user_id, placed.stars) == ("k-1", "123456789", 500)
    assert placed.order_id.startswith("sbx_")
    assert placed.created_at is not None
    due("k-1")
    completed = sandbox.get_order(placed.order_id)
    assert completed.status == SupplierOrderStatus.COMPLETED
    assert completed.failure_reason == ""


def test_place_topup_completes_at_once_when_the_delay_is_zero(settings) -> None:
    settings.PARTNER_SANDBOX_DELIVERY_SECONDS = 0

    placed = SandboxSupplierClient().place_topup(user_id="123456789", stars=50,
                                                 idempotency_key="now")

    assert placed.status == SupplierOrderStatus.COMPLETED


def test_place_topup_completes_after_the_configured_delay(settings) -> None:
    settings.PARTNER_SANDBOX_DELIVERY_SECONDS = 30
    before = timezone.now()

    SandboxSupplierClient().place_topup(user_id="123456789", stars=50, idempotency_key="t")
    SandboxSupplierClient().place_topup(user_id=SLOW_ID, stars=50, idempotency_key="slow")

    normal = SandboxTopup.objects.get(reference="t").completes_at - before
    slow = SandboxTopup.objects.get(reference="slow").completes_at - before
    assert timedelta(seconds=30) <= normal < timedelta(seconds=32)
    assert slow - normal >= timedelta(seconds=4)


def test_place_topup_is_idempotent_per_key(sandbox: SandboxSupplierClient) -> None:
    first = sandbox.place_topup(user_id="123456789", stars=500, idempotency_key="same")
    again = sandbox.place_topup(user_id="123456789", stars=500, idempotency_key="same")

    assert again.order_id == first.order_id
    assert SandboxTopup.objects.count() == 1
    other = sandbox.place_topup(user_id="123456789", stars=500, idempotency_key="other")
    assert other.order_id != first.order_id
    assert SandboxTopup.objects.count() == 2


def test_place_topup_for_the_fail_recipient_fails_when_due(sandbox: SandboxSupplierClient) -> None:
    placed = sandbox.place_topup(user_id=FAIL_ID, stars=500, idempotency_key="doomed")
    assert placed.status == SupplierOrderStatus.PROCESSING

    due("doomed")
    failed = sandbox.get_order(placed.order_id)

    assert failed.status == SupplierOrderStatus.FAILED
    assert failed.status.is_final
    assert failed.failure_reason == "recipient_cannot_receive"


def test_place_topup_refuses_the_invalid_recipient_and_an_empty_key(
        sandbox: SandboxSupplierClient) -> None:
    with pytest.raises(InvalidRecipient):
        sandbox.place_topup(user_id=INVALID_ID, stars=500, idempotency_key="bad")
    with pytest.raises(ValueError):
        sandbox.place_topup(user_id="123456789", stars=500, idempotency_key="")
    assert not SandboxTopup.objects.exists()


def test_get_order_and_find_by_reference(sandbox: SandboxSupplierClient) -> None:
    placed = sandbox.place_topup(user_id="123456789", stars=250, idempotency_key="ref-9")

    assert sandbox.get_order(placed.order_id).reference == "ref-9"
    found = sandbox.find_by_reference("ref-9")
    assert found is not None and found.order_id == placed.order_id
    assert sandbox.find_by_reference("nobody") is None
    with pytest.raises(SupplierNotFound):
        sandbox.get_order("sbx_missing")


def test_orders_between_is_inclusive_of_since_and_exclusive_of_until(
        sandbox: SandboxSupplierClient) -> None:
    for reference in ("a", "b", "c"):
        sandbox.place_topup(user_id="123456789", stars=50, idempotency_key=reference)
    start = timezone.now() - timedelta(hours=3)
    for hours, reference in ((3, "a"), (2, "b"), (1, "c")):
        SandboxTopup.objects.filter(reference=reference).update(
            created_at=start + timedelta(hours=3 - hours))
    at = {topup.reference: topup.created_at for topup in SandboxTopup.objects.all()}

    listed = sandbox.orders_between(since=at["a"], until=at["c"])

    assert [order.reference for order in listed] == ["a", "b"]
    assert sandbox.orders_between(since=at["c"], until=at["c"] + timedelta(seconds=1))[0].reference == "c"
    assert sandbox.orders_between(since=at["c"] + timedelta(seconds=1),
                                  until=timezone.now() + timedelta(hours=1)) == []


def test_balance_is_plenty_and_never_spent(sandbox: SandboxSupplierClient) -> None:
    before = sandbox.balance()
    sandbox.place_topup(user_id="123456789", stars=10_000, idempotency_key="big")

    assert sandbox.balance().amount == before.amount > 0
    assert before.currency == "USD"
