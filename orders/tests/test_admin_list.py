"""The order list reads the same few rows whatever the size of the orders table (issue #11).

No SELECT DISTINCT over orders (Django's date hierarchy and field filter choices), no second
count of the whole table, and the same queries, in number and in shape, at 40 orders and at
ten times as many spread over years. Date navigation and the method filter keep working.
"""

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags import admin_list
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders.admin import OrderListPaginator
from orders.templatetags.order_list import order_rows
from orders.models import Order
from orders.models import OrderStatus as S

CHANGELIST = reverse("admin:orders_order_changelist")
# Session, user, OTP devices, the user's and the group's permissions, the count, the page,
# the first and last order's date (date navigation).
LIST_QUERIES = 8
NEWEST = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def orders_add(catalog, monkeypatch):
    """Add `count` orders, one every `days_apart` days back from NEWEST, over the methods."""
    # History: created_at is given, not the time of the insert.
    monkeypatch.setattr(Order._meta.get_field("created_at"), "auto_now_add", False)

    def add(count: int, *, start: int = 0, days_apart: float = 1.0) -> None:
        Order.objects.bulk_create([Order(
            reference=f"ORD-{number:07d}", channel=("web", "bot")[number % 2],
            status=(S.DELIVERED, S.EXPIRED, S.REVIEW)[number % 3], product=catalog,
            product_name=catalog.name, package_name="Standard", platform="telegram", stars=500,
            recipient_input="@sandbox_ok", recipient_user_id="100000001",
            recipient_username="@sandbox_ok", price=Decimal("8.50"), currency="USD",
            supplier_code="sandbox", cost=Decimal("8.25"), cost_currency="USD",
            payment_method=("sandbox", "stripe", "ton")[number % 3],
            idempotency_key=uuid.uuid4().hex, expires_at=NEWEST,
            created_at=NEWEST - timedelta(days=days_apart * number))
            for number in range(start, start + count)], batch_size=500)

    return add


@pytest.fixture
def operator_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="operator", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    client.force_login(user)
    return client


def list_queries(client, params: dict[str, str]) -> list[str]:
    """The SQL of one list view, literals replaced, so two sizes can be compared by shape.

    A list that fits on one page is read without a LIMIT: that is not growth, so it is left out.
    """
    with CaptureQueriesContext(connection) as captured:
        response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return [re.sub(r" LIMIT \?$", "", re.sub(r"'[^']*'|\b\d+\b", "?", query["sql"]))
            for query in captured.captured_queries]


LIST_VIEWS = [
    {},
    {"created_at__year": "2026"},
    {"created_at__year": "2026", "created_at__month": "6"},
    {"created_at__year": "2026", "created_at__month": "6", "created_at__day": "15"},
    {"payment_method__exact": "ton"},
    {"status__exact": S.REVIEW, "channel__exact": "web"},
    {"queue": "review"},
]


@pytest.mark.parametrize("params", LIST_VIEWS, ids=lambda params: "&".join(params) or "all")
def test_the_list_s_queries_do_not_grow_with_the_table(operator_client, orders_add, params):
    orders_add(360, days_apart=0.1)
    small = list_queries(operator_client, params)
    orders_add(3600, start=360, days_apart=0.3)  # ten times as many, over three years
    large = list_queries(operator_client, params)
    assert large == small
    assert len(large) <= LIST_QUERIES
    assert not [sql for sql in large if "DISTINCT" in sql.upper()]
    # One count, of the list as filtered: the whole table is not counted a second time.
    assert len([sql for sql in large if "COUNT(" in sql.upper()]) <= 1


def test_date_navigation_offers_the_table_s_years_months_and_days(operator_client, orders_add):
    orders_add(3, days_apart=200)  # 2026-06-15, 2025-11-27, 2025-05-11
    body = operator_client.get(CHANGELIST).content.decode()
    assert "?created_at__year=2025" in body and "?created_at__year=2026" in body

    body = operator_client.get(CHANGELIST, {"created_at__year": "2025"}).content.decode()
    months = re.findall(r"created_at__month=(\d+)", body)
    assert sorted(set(map(int, months))) == list(range(5, 13))  # May (the first) to December

    response = operator_client.get(CHANGELIST, {"created_at__year": "2025",
                                                "created_at__month": "11"})
    days = re.findall(r"created_at__day=(\d+)", response.content.decode())
    assert sorted(set(map(int, days))) == list(range(1, 31))
    assert [o.reference for o in response.context["cl"].result_list] == ["ORD-0000001"]

    response = operator_client.get(CHANGELIST, {"created_at__year": "2025",
                                                "created_at__month": "11",
                                                "created_at__day": "27"})
    assert [o.reference for o in response.context["cl"].result_list] == ["ORD-0000001"]
    assert "November 27" in response.content.decode()


def test_one_month_of_orders_starts_at_its_days(operator_client, orders_add):
    orders_add(3)  # 13 to 15 June 2026
    days = re.findall(r"created_at__day=(\d+)", operator_client.get(CHANGELIST).content.decode())
    assert sorted(set(map(int, days))) == [13, 14, 15]


def test_an_empty_table_shows_no_date_navigation(operator_client, catalog):
    body = operator_client.get(CHANGELIST).content.decode()
    assert "created_at__year" not in body


def test_the_method_filter_offers_every_configured_method(operator_client, orders_add, settings):
    orders_add(6)
    response = operator_client.get(CHANGELIST)
    body = response.content.decode()
    for code, conf in settings.PAYMENT_METHODS.items():
        assert f"payment_method__exact={code}" in body and conf["label"] in body
    response = operator_client.get(CHANGELIST, {"payment_method__exact": "ton"})
    assert {o.payment_method for o in response.context["cl"].result_list} == {"ton"}
    assert len(response.context["cl"].result_list) == 2


def test_the_checkbox_is_django_s_own(orders_add):
    orders_add(1)
    order = Order.objects.get()
    model_admin = admin.site._registry[Order]
    assert model_admin.action_checkbox(order) == admin.ModelAdmin.action_checkbox(
        model_admin, order)


# --- The count -------------------------------------------------------------------------


def test_the_count_is_estimated_only_unfiltered_on_postgresql_away_from_the_end(
        orders_add, monkeypatch):
    orders_add(5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order" if connection.vendor == "postgresql" else "SELECT 1")
    orders_add(3, start=5)  # not in the statistics yet: the estimate says 5, the table has 8
    monkeypatch.setattr(OrderListPaginator, "ESTIMATE_FROM", 1)
    postgresql = connection.vendor == "postgresql"

    assert OrderListPaginator(Order.objects.all(), 2).count == (5 if postgresql else 8)
    # The last page of the estimate (3 × 2 rows > 90% of 5) is counted exactly.
    assert OrderListPaginator(Order.objects.all(), 2, page_number=3).count == 8
    assert OrderListPaginator(Order.objects.filter(status=S.REVIEW), 2).count == 2
    monkeypatch.setattr(OrderListPaginator, "ESTIMATE_FROM", 20_000)
    assert OrderListPaginator(Order.objects.all(), 2).count == 8  # a small table: exact


# --- The rows --------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"status__exact": S.REVIEW, "o": "2.-5"}, {"q": "ORD-0000002"}])
def test_the_rows_are_django_s_own_cell_for_cell(operator_client, orders_add, params):
    """order_rows builds the HTML Django's items_for_result builds, kept filters and all."""
    orders_add(9)
    Order.objects.filter(reference="ORD-0000003").update(
        recipient_username="", status_reason="<b>", supplier_order_id="")
    Order.objects.filter(reference="ORD-0000004").update(recipient_username="   ")
    response = operator_client.get(CHANGELIST, params)
    cl = response.context["cl"]
    ours = [list(row) for row in order_rows(cl)]
    django = [list(row) for row in admin_list.results(cl)]
    assert ours == django and ours
    body = response.content.decode()
    assert all(cell in body for row in ours for cell in row)
