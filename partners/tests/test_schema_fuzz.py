"""Schemathesis against /api/v1/schema/, in-process through the WSGI app, with a test key.

Every operation, with every check schemathesis has on by default: no 5xx, status codes, content
types, response headers and bodies as the schema declares them, requests the schema refuses
refused (and ones it allows accepted), a missing required header refused, an undeclared method
answered 405. A bounded number of examples keeps the run well under a minute.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client, override_settings
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import PositiveDataAcceptanceConfig
from schemathesis.core.parameters import ParameterLocation

from partners.services import api_key_create, partner_create
from reseller.wsgi import application
from shop.demo import demo_catalog_load

# Loaded at collection, outside any test's settings: the schema's per-address limit would
# count in the configured cache (the database's, on SQLite), before any test database exists.
with override_settings(PARTNER_API_RATE_PER_IP=""):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)
schema.config.generation.update(max_examples=25)
# A well-formed top-up may still be refused for what the schema cannot know: a recipient that
# does not exist (422) or a balance that does not cover it (402).
schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig.from_dict(
    {"expected-statuses": ["2xx", "3xx", 401, 402, 403, 404, 409, 422, 429]})


@pytest.fixture
def bearer(db, settings) -> Iterator[dict[str, str]]:
    """A test key's Authorization header, for a partner that has placed one top-up already (so
    lists, the ledger and the balance answer with content to check)."""
    settings.PARTNER_API_RATE = ""
    settings.PARTNER_API_RATE_PER_IP = ""
    demo_catalog_load()
    partner = partner_create(name="Fuzz", actor="test")
    _key, token = api_key_create(partner=partner, test=True, name="fuzz")
    headers = {"Authorization": f"Bearer {token}"}
    placed = Client().post("/api/v1/topup", {"user_id": "@sandbox_ok", "stars": 500},
                           content_type="application/json",
                           headers={**headers, "Idempotency-Key": "fuzz-first"})
    assert placed.status_code == 201, placed.content
    # Schemathesis calls the WSGI app directly, not through Django's test client, which
    # disconnects these too: at each request's start and end they would close the connection
    # that holds the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield headers
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _only_unknown_parameters_added(case) -> bool:
    """Whether the case's only "invalid" part is query parameters or headers the operation does
    not declare: the API ignores those, as HTTP APIs do (proxies add headers of their own)."""
    mutations = getattr(case.meta.phase.data, "mutations", ()) if case.meta else ()
    return bool(mutations) and all(
        mutation.keywords == ("additionalProperties",)
        and mutation.parameter_location in (ParameterLocation.QUERY, ParameterLocation.HEADER)
        for mutation in mutations)


@schema.parametrize()
# In CI the same examples every run (a failure there is one anybody can replay); locally each
# run draws new ones, so the fuzzing keeps exploring.
@settings(deadline=None, derandomize=os.environ.get("CI") == "true", print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_api_answers_as_its_schema_says(case, bearer) -> None:
    # A cursor is opaque: a schema-valid string that is not one the API gave is rightly 400.
    excluded = [checks.positive_data_acceptance] if "cursor" in (case.query or {}) else []
    if _only_unknown_parameters_added(case):
        excluded.append(checks.negative_data_rejection)
    # The real key replaces the placeholder schemathesis writes; a case that leaves the header
    # out on purpose (a negative one) is sent without it, and must be refused.
    headers = bearer if "Authorization" in (case.headers or {}) else {}
    case.call_and_validate(headers=headers, excluded_checks=excluded)


# What the fuzz run found once, kept as plain cases: a random run may not draw them again.
@pytest.mark.parametrize("query", [
    # PostgreSQL refuses UTC offsets past ±15:59, which Python parses (500 before the fix).
    {"created_before": "0635-11-24T17:31:41+17:22"},
    # Times UTC cannot hold: the earliest and the latest there is.
    {"created_after": "0001-01-01T00:00:00+01:00"},
    {"created_before": "9999-12-31T23:59:59-01:00"},
])
def test_orders_list_answers_odd_but_valid_filters(bearer, query):
    response = Client().get("/api/v1/orders", query, headers=bearer)
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"orders", "next_cursor"}


def test_filters_that_the_schema_refuses_are_refused(bearer):
    for query in ({"created_after": ""}, {"status": ""}, {"limit": ""}, {"limit": "101"},
                  {"created_after": "2026-11-30T00:00:00"}):
        response = Client().get("/api/v1/orders", query, headers=bearer)
        assert response.status_code == 400, (query, response.content)
        assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("name", ["reference", "user_id"])
def test_text_filters_with_nul_are_refused_not_a_database_error(bearer, name):
    """PostgreSQL text cannot hold NUL: the query would fail with a 500 (it did on PostgreSQL)."""
    response = Client().get("/api/v1/orders", {name: "1\x00"}, headers=bearer)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("body", [
    {"user_id": 100000001, "stars": 500},          # a number where a string is due
    {"user_id": "@sandbox_ok", "stars": "500"},    # a string where a number is due
    {"user_id": "@sandbox_ok", "stars": 500.0},
    {"user_id": "@sandbox_ok", "stars": True},
    {"user_id": "@sandbox_ok", "stars": 500, "package_id": 1},  # both
    {"user_id": "@sandbox_ok"},                                 # neither
    {"user_id": "@sandbox_ok", "stars": 500, "reference": "a\x00"},
])
def test_topup_refuses_bodies_the_schema_refuses(bearer, body):
    response = Client().post("/api/v1/topup", body, content_type="application/json",
                             headers={**bearer, "Idempotency-Key": "strict-1"})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("key", ["", " ", " padded", "padded ", "x" * 101, "ключ"])
def test_topup_refuses_idempotency_keys_outside_the_schema(bearer, key):
    response = Client().post("/api/v1/topup", {"user_id": "@sandbox_ok", "stars": 500},
                             content_type="application/json",
                             headers={**bearer, "Idempotency-Key": key})
    assert response.status_code == 400, response.content
    assert "Idempotency-Key" in response.json()["error"]["message"]
