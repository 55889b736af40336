"""Partner API fixtures: the demo catalog, a partner with a live and a test key, an API client."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from partners.models import ApiKey, Partner
from partners.services import api_key_create, partner_balance_topup, partner_create
from shop.demo import demo_catalog_load
from shop.models import Product


@pytest.fixture
def catalog(db) -> Product:
    return demo_catalog_load()


@pytest.fixture
def q_sync(monkeypatch) -> None:
    """Run django-q2 tasks in-process when enqueued."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


class Api:
    """A partner's HTTP client for /api/v1/, with its key in the Authorization header."""

    def __init__(self, token: str, key: ApiKey) -> None:
        self.client = Client()
        self.token = token
        self.key = key

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.get(f"/api/v1/{path}", params or {}, headers=self._headers(headers))

    def post(self, path: str, body: Any, *, idempotency_key: str | None = None,
             **headers: str) -> Any:
        extra = dict(headers)
        if idempotency_key is not None:
            extra["Idempotency-Key"] = idempotency_key
        return self.client.post(f"/api/v1/{path}", body, content_type="application/json",
                                headers=self._headers(extra))


@pytest.fixture
def partner(catalog) -> Partner:
    partner = partner_create(name="Acme Stars", actor="test")
    partner_balance_topup(partner=partner, amount=Decimal("100.00"), actor="test", note="wire")
    partner.refresh_from_db()
    return partner


@pytest.fixture
def test_api(partner: Partner) -> Api:
    key, token = api_key_create(partner=partner, test=True, name="sandbox")
    return Api(token, key)


@pytest.fixture
def live_api(partner: Partner) -> Api:
    key, token = api_key_create(partner=partner, test=False, name="live")
    return Api(token, key)
