"""CSV exports: the order list as filtered in the admin, and the margin report; streamed, guarded."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders.exports import csv_cell
from orders.models import Order
from orders.tests.conftest import catalog, make_order  # noqa: F401  (fixtures)
from orders.tests.report_fixtures import MARGIN_CSV, bulk_orders, hand_orders  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

EXPORT = reverse("admin:orders_order_export")
CHANGELIST = reverse("admin:orders_order_changelist")
MARGIN = reverse("admin:dashboard_margin_csv")
HEADER = ("reference,created_at,paid_at,delivered_at,status,channel,payment_method,package,stars,"
          "price,cost,payment_fee,margin,currency,recipient,recipient_user_id,supplier_order_id\r\n")


@pytest.fixture
def login(client, django_user_model):
    """Log in a staff user in a group ("Operators", "Managers"), or with only the named permissions."""

    def as_user(group: str = "", *, permissions: tuple[str, ...] = ()):
        user = django_user_model.objects.create_user(username=f"u-{group or 'staff'}", is_staff=True)
        if group:
            user.groups.add(Group.objects.get(name=group))
        for codename in permissions:
            user.user_permissions.add(Permission.objects.get(codename=codename))
        client.force_login(user)
        return client

    return as_user


def content(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def test_the_export_equals_a_hand_computation(login, hand_orders):
    response = login("Operators").get(EXPORT, {"channel__exact": "bot"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="orders-')
    # Newest first, as the list shows them; times to the second with the shop's offset (UTC).
    # E's recipient is a formula: it gets a leading quote. So does every @username.
    assert content(response) == HEADER + (
        "ORD-E,2026-01-11T11:00:00+00:00,2026-01-11T11:00:15+00:00,,on_hold,bot,sandbox,Small,"
        "100,2.00,1.65,0.00,0.35,USD,'=cmd|' /C calc'!A0,100000001,\r\n"
        "ORD-B,2026-01-10T12:00:00+00:00,2026-01-10T12:01:00+00:00,2026-01-10T12:01:10+00:00,"
        "delivered,bot,stripe,Large,1000,16.00,15.50,0.40,0.10,USD,'@sandbox_ok,100000001,\r\n")


def test_a_refunded_order_exports_a_zero_margin(login, hand_orders):
    body = content(login("Operators").get(EXPORT, {"status__exact": "refunded"}))
    rows = body.splitlines()
    assert len(rows) == 2 and rows[1].startswith("ORD-D,")
    assert rows[1].split(",")[9:14] == ["8.50", "8.25", "0.21", "0.00", "USD"]


@pytest.mark.parametrize("query, references", [
    ({"status__exact": "delivered"}, ["ORD-X2", "ORD-I", "ORD-C", "ORD-B", "ORD-A", "ORD-X1"]),
    ({"q": "ORD-C"}, ["ORD-C"]),
    ({"payment_method__exact": "ton", "o": "1"}, ["ORD-F", "ORD-G"]),  # ordered by reference
    ({"status__exact": "delivered", "q": "sup-a"}, ["ORD-A"]),  # the supplier's order id
    ({"status__exact": "expired", "q": "sup-a"}, []),
    ({"supplier_order_id": "sup-a"}, ["ORD-A"]),
    # The page number is not a filter: every page is exported.
    ({"p": "5"}, ["ORD-X2", "ORD-I", "ORD-G", "ORD-F", "ORD-E", "ORD-D", "ORD-C", "ORD-B",
                  "ORD-A", "ORD-X1"]),
])
def test_the_export_honours_the_list_s_filters_search_and_order(login, hand_orders, query, references):
    rows = content(login("Operators").get(EXPORT, query)).splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == references


def test_invalid_filters_are_refused_not_ignored(login, hand_orders):
    response = login("Operators").get(EXPORT, {"status__nonsense": "x"})
    assert response.status_code == 400


def test_the_export_streams_in_a_bounded_number_of_queries(login, catalog):
    client = login("Operators")
    bulk_orders(catalog, 20)
    with CaptureQueriesContext(connection) as few:
        assert len(content(client.get(EXPORT)).splitlines()) == 1 + 20
    Order.objects.all().delete()
    bulk_orders(catalog, 3000)
    with CaptureQueriesContext(connection) as many:
        response = client.get(EXPORT)
        assert isinstance(response, StreamingHttpResponse) and response.streaming
        assert len(content(response).splitlines()) == 1 + 3000
    assert len(many) == len(few)


@pytest.mark.parametrize("permissions", [(), ("view_order",)])
def test_staff_without_the_export_permission_get_403(login, hand_orders, permissions):
    client = login(permissions=permissions)
    assert client.get(EXPORT).status_code == 403


def test_the_export_needs_a_login(client, hand_orders):
    response = client.get(EXPORT)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_list_links_to_the_export_with_its_query_string(login, hand_orders):
    page = login("Operators").get(CHANGELIST, {"status__exact": "delivered", "q": "ORD"})
    assert page.status_code == 200
    assert f'href="{EXPORT}?q=ORD&amp;status__exact=delivered"' in page.content.decode()


def test_no_export_link_without_the_permission(login, hand_orders):
    page = login(permissions=("view_order",)).get(CHANGELIST)
    assert page.status_code == 200 and EXPORT not in page.content.decode()


def test_the_margin_report_equals_a_hand_computation(login, hand_orders):
    response = login("Managers").get(MARGIN, {"date_from": "2026-01-10", "date_to": "2026-01-11"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="margin-2026-01-10-2026-01-11.csv"'
    assert content(response) == MARGIN_CSV


def test_the_margin_report_follows_the_dashboard_s_filters(login, hand_orders):
    response = login("Managers").get(MARGIN, {"date_from": "2026-01-10", "date_to": "2026-01-11",
                                              "channel": "bot"})
    assert content(response) == "".join(
        line + "\r\n" for line in MARGIN_CSV.splitlines() if line.startswith(("date,", "2026-01-10,bot",
                                                                               "2026-01-11,bot")))


def test_the_margin_report_is_for_managers(login, hand_orders):
    assert login("Operators").get(MARGIN).status_code == 403


def test_the_margin_report_refuses_a_period_it_cannot_read(login, hand_orders):
    response = login("Managers").get(MARGIN, {"date_from": "2026-01-12", "date_to": "2026-01-10"})
    assert response.status_code == 400


@pytest.mark.parametrize("value, cell", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("plain", "plain"), ("a=b", "a=b"), ("", ""),
    (None, ""), (Decimal("-0.01"), Decimal("-0.01")), (500, 500),
])
def test_csv_cells_that_a_spreadsheet_would_run_get_a_quote(value, cell):
    assert csv_cell(value) == cell
