"""Schemathesis against /api/v1/schema/, in-process through the WSGI app, with a test key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis import checks
from schemathesis.config._checks import PositiveDataAcceptanceConfig
from schemathesis.core.parameters import ParameterLocation
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings

from partners.services import api_key_create, partner_create
from reseller.wsgi import application
from shop.demo import demo_catalog_load

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)
schema.config.generation.update(max_examples=25)
# A well-formed top-up may still be refused for what the schema cannot know: a recipient that
# does not exist (422) or a balance that does not cover it (402).
schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig.from_dict(
    {"expected-statuses": [*PositiveDataAcceptanceConfig._DEFAULT_EXPECTED_STATUSES, 402, 422]})


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
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
def test_api_answers_as_its_schema_says(case, bearer) -> None:
    # A cursor is opaque: a schema-valid string that is not one the API gave is rightly 400.
    excluded = [checks.positive_data_acceptance] if "cursor" in (case.query or {}) else []
    if _only_unknown_parameters_added(case):
        excluded.append(checks.negative_data_rejection)
    # The real key replaces the placeholder schemathesis writes; a case that leaves the header
    # out on purpose (a negative one) is sent without it, and must be refused.
    headers = bearer if "Authorization" in (case.headers or {}) else {}
    case.call_and_validate(headers=headers, excluded_checks=excluded)
