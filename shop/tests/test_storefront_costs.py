"""What the storefront spares per request (issue #11), and that sparing it changes nothing a buyer relies on.

The catalog is read once per process for CATALOG_CACHE_SECONDS (shop.selectors.catalog_current)
and dropped at once on a catalog save; orders are priced from the database all the same.
Confirm tokens are signed for the session rather than kept in it, and confirming the same
account again writes nothing, so a repeat order's pages write no session.
"""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders.models import Order
from shop import selectors, views
from shop.models import Package
from shop.pricing import catalog_row_save
from shop.tests.conftest import Buyer, page, token_from


def _writes(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries
            if query["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def test_catalog_page_reads_nothing_once_the_catalog_is_read(client, catalog):
    client.get(reverse("shop:catalog"))

    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("shop:catalog"))

    assert response.status_code == 200
    assert queries.captured_queries == []


def test_a_price_saved_shows_on_the_catalog_at_once(client, standard):
    assert "$8.50" in page(client.get(reverse("shop:catalog")))

    standard.price = Decimal("8.90")
    catalog_row_save(row=standard, actor="test")

    shown = page(client.get(reverse("shop:catalog")))
    assert "$8.90" in shown and "$8.50" not in shown


def test_a_package_withdrawn_by_admin_delete_leaves_the_catalog_at_once(client, standard):
    assert "Standard" in page(client.get(reverse("shop:catalog")))

    standard.delete()

    assert "Standard" not in page(client.get(reverse("shop:catalog")))


def test_a_change_behind_the_orm_shows_once_the_reading_expires(client, standard):
    """A queryset update() sends no signal: other processes' readings expire the same way."""
    client.get(reverse("shop:catalog"))
    Package.objects.filter(pk=standard.pk).update(price=Decimal("8.90"))

    assert "$8.50" in page(client.get(reverse("shop:catalog")))  # within CATALOG_CACHE_SECONDS

    assert selectors._catalog is not None
    selectors._catalog.expires = 0  # CATALOG_CACHE_SECONDS later
    assert "$8.90" in page(client.get(reverse("shop:catalog")))


def _csrf_field(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF field"
    return match.group(1)


def test_the_kept_catalog_page_carries_each_visitors_own_csrf_token(catalog, standard):
    """The page is kept whole per process; every visitor still gets a working token of their own."""
    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    html_first = page(first.get(reverse("shop:catalog")))
    html_second = page(second.get(reverse("shop:catalog")))  # served from the kept page

    assert views._CSRF_SLOT not in html_second
    token = _csrf_field(html_second)
    assert token != _csrf_field(html_first)
    assert "csrftoken" in second.cookies  # the cookie the token belongs to is set
    assert html_second.replace(token, "T") == html_first.replace(_csrf_field(html_first), "T")
    # The token works for a POST from that visitor, and only from that visitor.
    chosen = second.post(reverse("shop:catalog"), {"package": str(standard.pk),
                                                   "csrfmiddlewaretoken": token})
    assert chosen.status_code == 302
    refused = Client(enforce_csrf_checks=True).post(
        reverse("shop:catalog"), {"package": str(standard.pk), "csrfmiddlewaretoken": token})
    assert refused.status_code == 403


def test_the_kept_catalog_page_is_kept_per_language_and_choice(buyer, catalog, standard):
    english = page(Client().get(reverse("shop:catalog")))
    russian = page(Client(headers={"accept-language": "ru"}).get(reverse("shop:catalog")))
    assert 'lang="en"' in english and 'lang="ru"' in russian

    buyer.choose_package(standard)
    chosen = page(buyer.client.get(reverse("shop:catalog")))
    assert "package selected" in chosen and "package selected" not in english


def test_a_message_is_shown_not_lost_behind_the_kept_catalog_page(client, catalog):
    client.get(reverse("shop:catalog"))  # the page is kept
    sent_back = client.get(reverse("shop:confirm"), follow=True)  # nothing chosen yet

    assert "First choose how many Stars you want." in page(sent_back)
    assert "First choose how many Stars you want." not in page(client.get(reverse("shop:catalog")))


def test_an_order_is_priced_from_the_database_not_from_the_reading(buyer, standard, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    token = token_from(buyer.confirm_page())
    # Another process changed the price; this one still holds its reading of the catalog.
    Package.objects.filter(pk=standard.pk).update(price=Decimal("8.90"))

    response = buyer.confirm(token)

    assert response.status_code == 302
    assert Order.objects.get().price == Decimal("8.90")


def test_a_repeat_order_writes_no_session(buyer, standard, supplier):
    buyer.place(standard, recipient="@sandbox_ok")

    with CaptureQueriesContext(connection) as queries:
        assert buyer.enter_recipient("@sandbox_ok").status_code == 302
        token = token_from(buyer.confirm_page())
        assert buyer.confirm(token).status_code == 302

    assert Order.objects.count() == 2
    assert not [sql for sql in _writes(queries) if "django_session" in sql]


def test_another_account_is_written_and_a_failed_check_forgets_the_last(buyer, standard, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    buyer.enter_recipient("100000002")
    assert buyer.client.session[views.SESSION_RECIPIENT]["user_id"] == "100000002"

    assert buyer.enter_recipient("@sandbox_invalid").status_code == 400

    assert views.SESSION_RECIPIENT not in buyer.client.session


def test_a_confirm_token_works_in_its_own_session_only(buyer, standard, catalog, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    token = token_from(buyer.confirm_page())
    stranger = Buyer(Client())
    stranger.choose_package(standard)
    stranger.enter_recipient("@sandbox_ok")  # the same choice and account: the same fingerprint

    response = stranger.confirm(token)

    assert response.status_code == 400
    assert "This page had expired" in page(response)
    assert not Order.objects.exists()
    assert buyer.confirm(token).status_code == 302


def test_a_confirm_token_expires(buyer, standard, supplier, monkeypatch):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    token = token_from(buyer.confirm_page())
    monkeypatch.setattr(views, "CONFIRM_TOKEN_MAX_AGE", timedelta(seconds=-1))

    response = buyer.confirm(token)

    assert response.status_code == 400
    assert "This page had expired" in page(response)


@pytest.mark.parametrize("tamper", [lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),
                                    lambda token: "x" + token[1:]])
def test_a_tampered_confirm_token_is_refused(buyer, standard, supplier, tamper):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    token = token_from(buyer.confirm_page())

    response = buyer.confirm(tamper(token))

    assert response.status_code == 400
    assert not Order.objects.exists()
