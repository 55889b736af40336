"""Fixtures for order tests: the demo catalog and orders in any state."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.models import Order, OrderStatus
from shop.demo import demo_catalog_load
from shop.models import Product


@pytest.fixture
def catalog(db) -> Product:
    return demo_catalog_load()


@pytest.fixture
def make_order(catalog):
    """Build an order row directly in a given status (test set-up only; code uses services)."""

    def make(status: str = OrderStatus.AWAITING_PAYMENT, *, recipient_user_id: str = "100000001",
             recipient_username: str = "@sandbox_ok", stars: int = 500, channel: str = "web",
             **fields) -> Order:
        order = Order.objects.create(
            channel=channel, product=catalog, product_name=catalog.name, package_name="Standard",
            platform="telegram", stars=stars, recipient_input=recipient_username or recipient_user_id,
            recipient_user_id=recipient_user_id, recipient_username=recipient_username,
            price=Decimal("8.50"), currency="USD", supplier_code="sandbox", cost=Decimal("8.25"),
            cost_currency="USD", payment_method="sandbox", idempotency_key=uuid.uuid4().hex,
            expires_at=timezone.now() + timedelta(minutes=30), status=status, **fields,
        )
        order.reference = f"ORD-{order.pk:06d}"
        order.save(update_fields=["reference"])
        return order

    return make
