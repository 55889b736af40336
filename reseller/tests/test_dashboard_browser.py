"""The dashboard in headless Chromium: Chart.js from our static files draws both charts under the CSP."""

import pytest
from django.contrib.auth.models import Permission

from orders.demo import demo_orders_load
from orders.reports import margin_totals, period_default
from orders.tests.conftest import catalog  # noqa: F401  (fixture)
from shop.tests.test_browser import _new_page, browser  # noqa: F401  (fixture)
from shop.tests.test_browser_csp import REPORT_VIOLATIONS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_charts_draw_and_nothing_is_blocked(browser, live_server, catalog, client,  # noqa: F811
                                                 django_user_model, settings, tmp_path):
    demo_orders_load()
    # The permission, not the Managers group: a transactional test before this one may have
    # flushed the rows the group's data migration made (permissions come back on flush).
    manager = django_user_model.objects.create_user(username="manager", is_staff=True)
    manager.user_permissions.add(Permission.objects.get(codename="view_report"))
    client.force_login(manager)
    context, tab = _new_page(browser, live_server)
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "url": live_server.url,
                          "value": client.cookies[settings.SESSION_COOKIE_NAME].value}])
    context.add_init_script(REPORT_VIOLATIONS)
    problems: list[str] = []

    def console(message) -> None:
        if message.type in ("error", "warning") and not message.location.get("url", "").endswith(
                "/favicon.ico"):
            problems.append(f"{message.type}: {message.text}")

    tab.on("console", console)
    tab.on("pageerror", lambda error: problems.append(f"uncaught {error}"))
    tab.goto("/admin/dashboard/")
    tab.wait_for_function(
        "() => window.Chart && Chart.getChart('chart-orders') && Chart.getChart('chart-money')")
    total = "(id, n) => Chart.getChart(id).data.datasets[n].data.reduce((a, b) => a + b, 0)"
    stars = tab.evaluate(f"({total})('chart-orders', 2)")
    revenue = tab.evaluate(f"({total})('chart-money', 0)")
    tab.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    context.close()
    assert problems == []
    usd = margin_totals(period_default())[0]
    assert stars == usd.stars > 0
    assert revenue == pytest.approx(float(usd.revenue)) and revenue > 0
