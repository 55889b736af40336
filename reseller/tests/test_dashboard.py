"""The admin dashboard: hand-computed figures, permissions, strict CSP, bounded queries."""

import json
import re
from datetime import date

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders.models import Order
from orders.reports import period_default
from orders.tests.conftest import catalog, make_order  # noqa: F401  (fixtures)
from orders.tests.report_fixtures import (  # noqa: F401  (fixtures)
    BY_CHANNEL,
    BY_METHOD,
    BY_PACKAGE,
    DAYS,
    DELIVERY,
    OUTCOMES,
    PERIOD,
    TOTALS,
    bulk_orders,
    hand_orders,
    line_tuple,
)

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:dashboard")
HAND_PERIOD = {"date_from": "2026-01-10", "date_to": "2026-01-11"}


@pytest.fixture
def login(client, django_user_model):
    """Log in a staff user in a group, with only the named permissions, or a superuser."""

    def as_user(group: str = "", *, permissions: tuple[str, ...] = (), superuser: bool = False):
        user = django_user_model.objects.create_user(
            username=f"u-{group or 'staff'}", is_staff=True, is_superuser=superuser)
        if group:
            user.groups.add(Group.objects.get(name=group))
        for codename in permissions:
            user.user_permissions.add(Permission.objects.get(codename=codename))
        client.force_login(user)
        return client

    return as_user


def test_every_figure_equals_a_hand_computation(login, hand_orders):
    response = login("Managers").get(DASHBOARD, HAND_PERIOD)
    assert response.status_code == 200
    dashboard = response.context["dashboard"]
    assert dashboard.period == PERIOD
    assert [line_tuple(line, with_key=False) for line in dashboard.totals] == TOTALS
    assert [line_tuple(line) for line in dashboard.by_channel] == BY_CHANNEL
    assert [line_tuple(line) for line in dashboard.by_method] == BY_METHOD
    assert [line_tuple(line) for line in dashboard.by_package] == BY_PACKAGE
    assert [(d.day, d.placed, d.sold, d.stars, {c: str(v) for c, v in d.revenue.items()},
             {c: str(v) for c, v in d.net.items()}) for d in dashboard.days] == DAYS
    assert dashboard.delivery.percentiles == DELIVERY
    assert {name: getattr(dashboard.outcomes, name) for name in OUTCOMES} == OUTCOMES
    assert response.context["supplier_balance"] is None  # nothing read yet


def test_the_page_shows_the_figures_with_their_currency(login, hand_orders):
    page = login("Managers").get(DASHBOARD, HAND_PERIOD).content.decode()
    assert "35.00 USD" in page and "0.69 USD" in page and "4.00 EUR" in page
    # The Crypto Pay sale at a loss is marked as one.
    assert '<td class="loss">-0.01 USD</td>' in page
    assert "16.7 % (1)" in page and "12.5 % (1)" in page  # failure and review rates
    assert "10.0 s" in page and "60.0 s" in page  # p50, p90
    assert "Not read yet" in page  # no balance reading stored


def test_the_page_shows_the_last_supplier_balance(login, hand_orders, settings):
    from decimal import Decimal

    from stock.models import BalanceReading

    BalanceReading.objects.create(supplier_code=settings.SUPPLIER_CODE, amount=Decimal("120.00"),
                                  currency="USD", spent_in_window=Decimal("240.00"), window_hours=24)
    response = login("Managers").get(DASHBOARD, HAND_PERIOD)
    assert response.context["supplier_balance"].amount == Decimal("120.00")
    page = response.content.decode()
    # 120.00 left at 240.00 per 24 h: 12 hours of sales.
    assert "<strong>120.00 USD</strong>" in page and "12" in page.split("Hours of sales left")[1][:80]


def test_the_chart_data_is_a_json_block(login, hand_orders):
    page = login("Managers").get(DASHBOARD, HAND_PERIOD).content.decode()
    block = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', page, re.S)
    data = json.loads(block.group(1))
    assert data["days"] == ["2026-01-10", "2026-01-11"]
    assert (data["placed"], data["sold"], data["stars"]) == ([2, 6], [2, 3], [1500, 850])
    assert data["revenue"] == {"EUR": ["0.00", "4.00"], "USD": ["24.50", "10.50"]}
    assert data["net"] == {"EUR": ["0.00", "0.90"], "USD": ["0.35", "0.34"]}
    assert data["labels"]["stars"] == "Stars sold"


def test_filters_narrow_every_figure(login, hand_orders):
    response = login("Managers").get(DASHBOARD, {**HAND_PERIOD, "channel": "bot"})
    dashboard = response.context["dashboard"]
    assert [line_tuple(line, with_key=False) for line in dashboard.totals] == [
        ("USD", 2, 1100, "18.00", "17.15", "0.40", "0.45", "2.5")]
    assert dashboard.outcomes.placed == 2 and dashboard.delivery.delivered == 1


def test_the_default_period_is_the_last_seven_days(login, hand_orders):
    response = login("Managers").get(DASHBOARD)
    assert response.context["period"] == period_default()
    assert len(response.context["dashboard"].days) == 7


def test_a_period_ending_before_it_starts_is_refused(login, hand_orders):
    response = login("Managers").get(DASHBOARD, {"date_from": "2026-01-12", "date_to": "2026-01-10"})
    assert response.status_code == 200
    assert "The period ends before it starts." in response.content.decode()
    assert response.context["period"] == period_default()


def test_the_margin_report_link_keeps_the_period(login, hand_orders):
    page = login("Managers").get(DASHBOARD, {**HAND_PERIOD, "channel": "web"}).content.decode()
    margin = reverse("admin:dashboard_margin_csv")
    assert f'href="{margin}?date_from=2026-01-10&amp;date_to=2026-01-11&amp;channel=web"' in page


@pytest.mark.parametrize("who, status", [
    ({"group": "Managers"}, 200), ({"superuser": True}, 200), ({"group": "Operators"}, 403),
    ({"permissions": ("view_order", "export_order")}, 403), ({}, 403),
])
def test_only_report_viewers_see_the_dashboard(login, hand_orders, who, status):
    assert login(**who).get(DASHBOARD).status_code == status


def test_the_dashboard_needs_a_login(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_admin_home_links_to_it_for_managers_only(login, hand_orders, client):
    home = reverse("admin:index")
    assert f'href="{DASHBOARD}"' in login("Managers").get(home).content.decode()
    client.logout()
    assert DASHBOARD not in login("Operators").get(home).content.decode()


def test_scripts_and_styles_come_from_our_static_files_under_a_strict_csp(login, hand_orders):
    response = login("Managers").get(DASHBOARD, HAND_PERIOD)
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    page = response.content.decode()
    scripts = re.findall(r"<script\b([^>]*)>", page)
    sources = [re.search(r'src="([^"]+)"', attrs) for attrs in scripts]
    # Every script is a file of ours, or the JSON data block (not run by the browser).
    for attrs, source in zip(scripts, sources, strict=True):
        assert source is not None or 'type="application/json"' in attrs, attrs
    own = [source.group(1) for source in sources if source is not None]
    assert "/static/vendor/chartjs/chart.umd.min.js" in own and "/static/js/dashboard.js" in own
    for url in own + re.findall(r'<link rel="stylesheet" href="([^"]+)"', page):
        assert url.startswith("/static/"), url
        assert finders.find(url.removeprefix("/static/")), url
    # No inline style anywhere in the page (the CSP would block it).
    assert "<style" not in page and not re.search(r"\sstyle=", page)


def test_the_vendored_chart_library_is_chart_js_4(settings):
    library = finders.find("vendor/chartjs/chart.umd.min.js")
    with open(library, encoding="utf-8") as source:
        assert "Chart.js v4." in source.read(300)
    assert finders.find("vendor/chartjs/LICENSE.md") and finders.find("vendor/chartjs/chart.umd.min.js.map")


def test_the_page_takes_as_many_queries_for_thousands_of_orders(login, catalog):
    client = login("Managers")
    period = {"date_from": "2026-01-04", "date_to": "2026-01-10"}
    bulk_orders(catalog, 30)
    with CaptureQueriesContext(connection) as few:
        assert client.get(DASHBOARD, period).status_code == 200
    Order.objects.all().delete()
    bulk_orders(catalog, 3000)
    with CaptureQueriesContext(connection) as many:
        response = client.get(DASHBOARD, {"date_from": "2025-12-01", "date_to": "2026-01-10"})
    assert response.status_code == 200
    assert sum(day.placed for day in response.context["dashboard"].days) == 3000
    assert len(many) == len(few)
    assert response.context["period"].date_from == date(2025, 12, 1)



def test_the_form_shows_the_default_period(login, hand_orders):
    page = login("Managers").get(DASHBOARD).content.decode()
    default = period_default()
    assert f'name="date_from" value="{default.date_from.isoformat()}"' in page
    assert f'name="date_to" value="{default.date_to.isoformat()}"' in page


@pytest.mark.parametrize("query, expected", [
    ({"date_to": "2026-01-11"}, (date(2026, 1, 5), date(2026, 1, 11))),
    ({"date_from": "2026-01-10", "date_to": "2026-01-10"}, (date(2026, 1, 10), date(2026, 1, 10))),
])
def test_one_end_of_the_period_is_enough(login, hand_orders, query, expected):
    period = login("Managers").get(DASHBOARD, query).context["period"]
    assert (period.date_from, period.date_to) == expected


def test_a_period_longer_than_a_year_is_refused(login, hand_orders):
    response = login("Managers").get(DASHBOARD, {"date_from": "2025-01-01", "date_to": "2026-01-11"})
    assert "Choose a period of at most 366 days." in response.content.decode()
    assert response.context["period"] == period_default()
