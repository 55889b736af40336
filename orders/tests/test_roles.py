"""The console's roles from migrations 0006 and 0007 (and shop 0004): Operators work orders; Managers also edit the catalog."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from orders.models import OrderStatus as S

pytestmark = pytest.mark.django_db

ORDERS_MODELS = ("order", "orderevent", "paymentinvoice", "paymentevent", "payment",
                 "supplierattempt", "providercursor")
# (Supplier volume prices: shop 0006.)
SHOP_MODELS = ("product", "package", "supplier", "suppliervolumeprice")
# Promo codes, their uses and the price history (shop 0004): both roles read them.
PRICING_MODELS = ("promocode", "promoredemption", "pricechange")
VIEW_ALL = ({f"orders.view_{model}" for model in ORDERS_MODELS}
            | {f"shop.view_{model}" for model in SHOP_MODELS + PRICING_MODELS})
OPERATOR = VIEW_ALL | {"orders.change_order", "orders.add_orderevent", "orders.export_order"}
# Reports (migration 0007) are the Managers' alone.
MANAGER = OPERATOR | {f"shop.{action}_{model}" for model in SHOP_MODELS + ("promocode",)
                      for action in ("add", "change")} | {"orders.view_report"}
# The supplier account (stock migration 0002): both see it and resolve reconciliation
# mismatches; Managers set the low-balance thresholds.
STOCK_OPERATOR = {f"stock.view_{model}" for model in (
    "balancereading", "balancethreshold", "balancealert", "reconciliationmismatch")} | {
    "stock.change_reconciliationmismatch"}
OPERATOR |= STOCK_OPERATOR
MANAGER |= STOCK_OPERATOR | {"stock.add_balancethreshold", "stock.change_balancethreshold"}
# The partner API (partners migration 0002): both see it all and redeliver webhooks; Managers
# add and edit partners and keys and top up balances.
PARTNERS_OPERATOR = {f"partners.view_{model}" for model in (
    "partner", "apikey", "ledgerentry", "partnerorder", "webhookdelivery")} | {
    "partners.redeliver_webhookdelivery"}
OPERATOR |= PARTNERS_OPERATOR
MANAGER |= PARTNERS_OPERATOR | {"partners.add_partner", "partners.change_partner",
                                "partners.topup_partner", "partners.add_apikey",
                                "partners.change_apikey"}


def codenames(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}"
            for p in group.permissions.select_related("content_type")}


@pytest.fixture
def member(client, django_user_model):
    """Log in a staff user who is in the named group."""

    def login(group: str):
        user = django_user_model.objects.create_user(username=group.lower(), is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


def test_the_migration_made_both_groups_with_their_permissions():
    assert codenames(Group.objects.get(name="Operators")) == OPERATOR
    assert codenames(Group.objects.get(name="Managers")) == MANAGER
    # Nobody in either role may delete anything, or edit a price as an operator.
    assert not Permission.objects.filter(group__name__in=["Operators", "Managers"],
                                         codename__startswith="delete_").exists()


def test_an_operator_works_orders(member, make_order):
    client = member("Operators")
    order = make_order(S.ON_HOLD)
    changelist = client.get(reverse("admin:orders_order_changelist"))
    assert changelist.status_code == 200 and order.reference in changelist.content.decode()
    change = client.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert change.status_code == 200
    assert "resume_fulfilment" in changelist.content.decode()  # the actions are offered


def test_an_operator_cannot_edit_the_catalog(member, catalog):
    client = member("Operators")
    product_url = reverse("admin:shop_product_change", args=[catalog.pk])
    assert client.get(product_url).status_code == 200  # view only
    assert client.post(product_url, {"name": "Cheap Stars"}).status_code == 403

    package = catalog.packages.first()
    assert client.post(reverse("admin:shop_package_change", args=[package.pk]),
                       {"price": "0.01"}).status_code == 403
    packages = client.get(reverse("admin:shop_package_changelist"))
    assert packages.status_code == 200
    assert reverse("admin:shop_package_add") not in packages.content.decode()
    assert client.get(reverse("admin:shop_package_add")).status_code == 403


def test_a_manager_changes_a_package_price(member, catalog):
    client = member("Managers")
    package = catalog.packages.first()
    assert reverse("admin:shop_package_add") in client.get(
        reverse("admin:shop_package_changelist")).content.decode()
    response = client.post(reverse("admin:shop_package_change", args=[package.pk]), {
        "product": package.product_id, "name": package.name, "name_ru": package.name_ru,
        "quantity": package.quantity, "price": "12.34", "currency": package.currency,
        "active": "on", "sort_order": package.sort_order,
    })
    assert response.status_code == 302, response.context["adminform"].form.errors
    package.refresh_from_db()
    assert str(package.price) == "12.34"
