"""Storefront fixtures: the demo catalog, settings pointing at the sandbox supplier, and a flow driver."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from orders.models import Order
from shop.demo import demo_catalog_load
from shop.models import Package, Product

TOKEN_RE = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
def catalog(db) -> Product:
    return demo_catalog_load()


@pytest.fixture
def standard(catalog: Product) -> Package:
    """The Standard package: 500 Stars for $8.50."""
    return catalog.packages.get(name="Standard")


@pytest.fixture
def member(client, django_user_model):
    """Log a staff user of the named group (Operators, Managers) in; returns the client."""

    def login(group: str):
        user = django_user_model.objects.create_user(username=group.lower(), is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def q_sync(monkeypatch) -> None:
    """Run django-q2 tasks in-process when enqueued (django_q reads Conf.SYNC on each async_task)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


def token_from(response) -> str:
    match = TOKEN_RE.search(response.content.decode())
    assert match, "confirm page has no token"
    return match.group(1)


class Buyer:
    """A browser session walking the storefront with Django's test client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def choose_package(self, package: Package):
        return self.client.post(reverse("shop:catalog"), {"package": str(package.pk)})

    def choose_quantity(self, quantity: Any):
        return self.client.post(reverse("shop:catalog"), {"quantity": str(quantity)})

    def enter_recipient(self, raw: str):
        return self.client.post(reverse("shop:recipient"), {"recipient": raw})

    def confirm_page(self):
        return self.client.get(reverse("shop:confirm"))

    def confirm(self, token: str | None = None, **extra: Any):
        if token is None:
            token = token_from(self.confirm_page())
        data = {"token": token, "payment_method": "sandbox", **extra}
        return self.client.post(reverse("shop:confirm"), data)

    def place(self, package: Package | None = None, *, quantity: int | None = None,
              recipient: str = "@sandbox_ok") -> Order:
        """Catalog → recipient → confirm; returns the order awaiting payment."""
        chosen = self.choose_package(package) if package else self.choose_quantity(quantity)
        assert chosen.status_code == 302, chosen.content.decode()
        entered = self.enter_recipient(recipient)
        assert entered.status_code == 302, entered.content.decode()
        confirmed = self.confirm()
        assert confirmed.status_code == 302, confirmed.content.decode()
        return Order.objects.get(public_id=confirmed.url.split("/")[2])

    def pay(self, order: Order):
        return self.client.post(reverse("shop:order_pay", args=[order.public_id]), {"action": "pay"})


@pytest.fixture
def buyer(client: Client) -> Buyer:
    return Buyer(client)


@pytest.fixture
def csrf_buyer(catalog) -> Iterator[Buyer]:
    """A buyer whose client enforces CSRF, as a real browser session does."""
    yield Buyer(Client(enforce_csrf_checks=True))


def page(response) -> str:
    """A response's HTML as text."""
    return response.content.decode()


def pay_url(order: Order) -> str:
    return reverse("shop:order_pay", args=[order.public_id])


def status_url(order: Order) -> str:
    return reverse("shop:order_status", args=[order.public_id])
