"""Every admin page of the shop's own models, for every role, with thousands of orders.

Each changelist and each change page of the orders, shop, stock and bots models is opened by
a superuser, a Manager and an Operator over about 3,000 orders with their rows, and more than a
page (100) of promo codes, code uses, price changes, balance readings, mismatches and notices.
A role that may view the model gets the page in a bounded number of queries (a page that asks
once per row needs hundreds); a role that may not gets 403. The console's own pages (the order
list and page, the queues, the confirmations) have tighter bounds in
orders/tests/test_admin_queries.py.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from bots.models import BuyerNotice
from orders.tests.conftest import catalog  # noqa: F401
from orders.tests.test_admin_queries import console_client, many_orders  # noqa: F401
from shop.models import PriceChange, PromoCode, PromoRedemption, Supplier
from stock.models import BalanceAlert, BalanceReading, ReconciliationMismatch

pytestmark = pytest.mark.django_db

OUR_APPS = ("orders", "shop", "stock", "bots")
ROWS = 120  # more than one changelist page of each model
PAGE_BOUND = 25  # the busiest page takes 18 today; a per-row query would take 100 more


@pytest.fixture
def busy_shop(many_orders):  # noqa: F811
    """Many orders, and more than a page of every other model an operator looks at."""
    now = timezone.now()
    supplier = Supplier.objects.get(code="sandbox")
    codes = PromoCode.objects.bulk_create([
        PromoCode(code=f"CODE{n}", value=Decimal("5"), max_uses=1000) for n in range(ROWS)])
    PromoRedemption.objects.bulk_create([
        PromoRedemption(promo=codes[n % len(codes)],
                        order=order, code=f"CODE{n}", discount=Decimal("0.40"), currency="USD")
        for n, order in enumerate(many_orders[:ROWS])])
    PriceChange.objects.bulk_create([
        PriceChange(actor="admin:manager", field=PriceChange.Field.SUPPLIER_COST,
                    supplier=supplier, old_value=Decimal("0.0165"), new_value=Decimal("0.0160"),
                    currency="USD") for _ in range(ROWS)])
    readings = BalanceReading.objects.bulk_create([
        BalanceReading(supplier_code="sandbox", checked_at=now - timedelta(minutes=5 * n),
                       amount=Decimal("100.00") - n, currency="USD") for n in range(ROWS)])
    if readings[0].pk is None:
        readings = list(BalanceReading.objects.all())
    BalanceAlert.objects.bulk_create([
        BalanceAlert(supplier_code="sandbox", kind=BalanceAlert.Kind.values[0], reading=reading,
                     amount=reading.amount, currency="USD", threshold=Decimal("50.00"))
        for reading in readings[:ROWS]])
    ReconciliationMismatch.objects.bulk_create([
        ReconciliationMismatch(supplier_code="sandbox", day=now.date(), kind=kind,
                               reference=order.idempotency_key, order=order)
        for order, kind in zip(many_orders[:ROWS], [ReconciliationMismatch.Kind.values[0]] * ROWS,
                               strict=True)])
    BuyerNotice.objects.bulk_create([
        BuyerNotice(order=order, status="delivered", chat_id=300000000 + n)
        for n, order in enumerate(many_orders[:ROWS])])


def _our_models():
    return [model for model in admin.site._registry if model._meta.app_label in OUR_APPS]


def test_every_page_of_our_models_is_bounded_or_refused(console_client, busy_shop,  # noqa: F811
                                                        django_assert_max_num_queries):
    client = console_client
    user = client.get(reverse("admin:index")).wsgi_request.user
    opened = 0
    for model in _our_models():
        opts = model._meta
        allowed = user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or user.has_perm(
            f"{opts.app_label}.change_{opts.model_name}")
        urls = [reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")]
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change",
                                args=[first.pk]))
        for url in urls:
            if not allowed:
                assert client.get(url).status_code == 403, url
                continue
            with django_assert_max_num_queries(PAGE_BOUND):
                response = client.get(url)
            assert response.status_code == 200, url
            opened += 1
    assert opened >= 2 * len(OUR_APPS)  # the roles see most of these pages
