"""The wire contract: our own supplier client (orders.suppliers.http) reads every answer of
/api/v1/, so one shop can buy from another. A real HTTP server (live_server), a test key."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.exceptions import (
    IdempotencyConflict,
    InsufficientBalance,
    InvalidRecipient,
    RateLimited,
    SupplierAuthError,
    SupplierNotFound,
)
from orders.models import Order
from orders.suppliers import http as http_client
from orders.suppliers.base import SupplierOrderStatus
from orders.suppliers.http import HttpSupplierClient
from partners.models import ApiKey, Partner
from partners.services import api_key_create, partner_create
from shop.demo import demo_catalog_load

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop_api(live_server, settings) -> tuple[HttpSupplierClient, ApiKey]:
    """An HttpSupplierClient pointed at this shop's /api/v1/ with a partner's test key."""
    settings.PARTNER_SANDBOX_START_BALANCE = Decimal("100.00")
    settings.PARTNER_SANDBOX_DELIVERY_SECONDS = 60
    demo_catalog_load()
    partner = partner_create(name="Downstream Shop", actor="test")
    key, token = api_key_create(partner=partner, test=True)
    return HttpSupplierClient(base_url=f"{live_server.url}/api/v1/", api_key=token,
                              timeout=10.0), key


def test_the_supplier_client_reads_every_answer(shop_api) -> None:
    client, key = shop_api
    since = timezone.now() - timedelta(seconds=1)

    recipient = client.validate_recipient("@sandbox_ok")
    assert (recipient.user_id, recipient.username) == ("100000001", "@sandbox_ok")
    assert client.validate_recipient("123456789").user_id == "123456789"

    placed = client.place_topup(user_id=recipient.user_id, stars=500, idempotency_key="order-1")
    assert placed.reference == "order-1"
    assert (placed.user_id, placed.stars) == ("100000001", 500)
    assert placed.status == SupplierOrderStatus.PENDING
    assert placed.cost == Decimal("8.50")
    assert placed.created_at is not None

    again = client.place_topup(user_id=recipient.user_id, stars=500, idempotency_key="order-1")
    assert again.order_id == placed.order_id
    assert Order.objects.count() == 1

    fetched = client.get_order(placed.order_id)
    assert (fetched.order_id, fetched.reference, fetched.stars) == (placed.order_id, "order-1", 500)

    found = client.find_by_reference("order-1")
    assert found is not None and found.order_id == placed.order_id
    assert client.find_by_reference("never-placed") is None

    balance = client.balance()
    assert (balance.amount, balance.currency) == (Decimal("91.50"), "USD")

    listed = client.orders_between(since=since, until=timezone.now() + timedelta(seconds=1))
    assert [order.order_id for order in listed] == [placed.order_id]
    assert client.orders_between(since=since - timedelta(days=2), until=since) == []


def test_the_supplier_client_follows_the_order_list_page_by_page(shop_api, monkeypatch) -> None:
    client, _key = shop_api
    monkeypatch.setattr(http_client, "ORDERS_PAGE_LIMIT", 2)
    since = timezone.now() - timedelta(seconds=1)
    placed = {client.place_topup(user_id="123456789", stars=50, idempotency_key=f"p-{n}").order_id
              for n in range(5)}

    listed = client.orders_between(since=since, until=timezone.now() + timedelta(seconds=1))

    assert len(listed) == 5
    assert {order.order_id for order in listed} == placed


def test_the_supplier_client_reads_final_statuses(shop_api) -> None:
    client, _key = shop_api
    delivered = client.place_topup(user_id="123456789", stars=50, idempotency_key="done")
    refunded = client.place_topup(user_id="123456789", stars=50, idempotency_key="undone")
    # Test set-up only: final statuses set directly instead of through a fulfilment.
    Order.objects.filter(public_id=delivered.order_id).update(status="delivered")
    Order.objects.filter(public_id=refunded.order_id).update(status="refunded",
                                                            status_reason="recipient_cannot_receive")

    assert client.get_order(delivered.order_id).status == SupplierOrderStatus.COMPLETED
    failed = client.get_order(refunded.order_id)
    assert failed.status == SupplierOrderStatus.FAILED
    assert failed.failure_reason == "recipient_cannot_receive"


def test_the_supplier_client_reads_every_refusal(shop_api) -> None:
    client, key = shop_api

    with pytest.raises(InvalidRecipient):
        client.validate_recipient("@sandbox_invalid")
    with pytest.raises(InvalidRecipient):
        client.place_topup(user_id="100000003", stars=500, idempotency_key="invalid")
    with pytest.raises(SupplierNotFound):
        client.get_order("9c5b94b1-35ad-49bb-b118-8e8fc20ad749")
    client.place_topup(user_id="123456789", stars=500, idempotency_key="taken")
    with pytest.raises(IdempotencyConflict):
        client.place_topup(user_id="123456789", stars=501, idempotency_key="taken")
    with pytest.raises(InsufficientBalance):
        client.place_topup(user_id="123456789", stars=10_000, idempotency_key="too-much")
    ApiKey.objects.filter(pk=key.pk).update(rate_limit="1/minute")
    with pytest.raises(RateLimited) as limited:
        client.balance()
        client.balance()
    assert limited.value.retry_after >= 1
    Partner.objects.filter(pk=key.partner_id).update(active=False)
    with pytest.raises(SupplierAuthError):
        client.balance()
