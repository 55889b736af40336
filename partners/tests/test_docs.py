"""The partner API's OpenAPI schema and its Swagger UI docs page, served from our own files."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

from shop.tests.test_browser import _new_page, browser  # noqa: F401
from shop.tests.test_browser_csp import REPORT_VIOLATIONS, Watched

OPERATIONS = {
    ("/api/v1/products", "get"), ("/api/v1/validate-user", "post"), ("/api/v1/topup", "post"),
    ("/api/v1/orders", "get"), ("/api/v1/orders/{order_id}", "get"), ("/api/v1/balance", "get"),
    ("/api/v1/ledger", "get"),
}


def _operations(schema: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in schema["paths"].items() for method in item}


@pytest.fixture
def client() -> Client:
    return Client(HTTP_HOST="localhost")


def test_schema_is_openapi_3_with_every_operation_in_yaml_and_json(client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert _operations(schema) == OPERATIONS

    as_json = client.get("/api/v1/schema/", {"format": "json"})
    assert as_json.status_code == 200
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert json.loads(as_json.content) == schema


def test_schema_needs_no_key_and_describes_the_bearer_key_on_every_operation(client):
    schema = client.get("/api/v1/schema/", {"format": "json"}).json()
    assert schema["components"]["securitySchemes"] == {"ApiKey": {
        "type": "http", "scheme": "bearer",
        "description": "A partner API key: rsk_live_… (live) or rsk_test_… (sandbox)."}}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation["security"] == [{"ApiKey": []}], (path, method)
            # Every refusal the API can make before the view runs, in the one error shape.
            for code in ("400", "401", "403", "405", "406", "429"):
                body = operation["responses"][code]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Error"}, (path, method, code)
            assert "Retry-After" in operation["responses"]["429"]["headers"]


def test_schema_topup_requires_idempotency_key_and_lists_its_refusals(client):
    topup = client.get("/api/v1/schema/", {"format": "json"}).json()["paths"]["/api/v1/topup"]["post"]
    header = next(p for p in topup["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and header["required"] is True
    assert header["schema"]["maxLength"] == 100
    assert {"201", "402", "409", "415", "422", "503"} <= set(topup["responses"])
    assert topup["requestBody"]["required"] is True


def test_schema_orders_list_answers_one_order_or_a_page(client):
    schema = client.get("/api/v1/schema/", {"format": "json"}).json()
    ok = schema["paths"]["/api/v1/orders"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OrderOrList"}
    assert schema["components"]["schemas"]["OrderOrList"] == {"oneOf": [
        {"$ref": "#/components/schemas/Order"}, {"$ref": "#/components/schemas/OrderList"}]}


def test_spectacular_validates_the_schema_without_a_warning(tmp_path):
    """drf-spectacular's own check: a view it cannot read would be a warning, and fail here."""
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert _operations(yaml.safe_load(out.read_text())) == OPERATIONS


def test_docs_page_uses_only_our_static_files_under_the_site_policy(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    # Every script and stylesheet is ours; none inline, none from a CDN.
    sources = re.findall(r'<(?:script|link)[^>]* (?:src|href)="([^"]*)"', page)
    assert sources and all(source.startswith("/") and not source.startswith("//")
                           for source in sources), sources
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in sources
    assert not re.search(r"https?://", page)
    assert not re.search(r"<script>|<style", page)

    script = client.get("/api/v1/docs/", {"script": ""})
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/v1/schema/" in script.content.decode()
    for source in sources:
        if source.startswith("/static/"):
            assert client.get(source).status_code == 200, source


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_docs_page_lists_the_operations_in_chromium_with_no_policy_violation(browser, live_server):  # noqa: F811
    playwright_sync = pytest.importorskip("playwright.sync_api")
    context, tab = _new_page(browser, live_server)
    context.add_init_script(REPORT_VIOLATIONS)
    watched = Watched(tab)
    try:
        tab.goto("/api/v1/docs/")
        expect = playwright_sync.expect
        for path, _method in sorted(OPERATIONS):
            expect(tab.locator(f".opblock-summary-path[data-path='{path}']")).to_be_visible()
        # Swagger UI's stylesheet applied: an operation block is laid out, not bare text.
        assert tab.locator(".opblock").first.evaluate(
            "block => getComputedStyle(block).borderRadius") != "0px"
        # Expanding an operation renders its Idempotency-Key parameter and responses.
        tab.locator(".opblock-summary-path[data-path='/api/v1/topup']").click()
        expect(tab.locator(".parameter__name", has_text="Idempotency-Key")).to_be_visible()
        expect(tab.locator(".response-col_status", has_text="402")).to_be_visible()
        tab.wait_for_timeout(200)  # a violation event is queued as a task
        watched.assert_clean()
    finally:
        context.close()


def test_schema_is_rate_limited_per_address(client, settings):
    settings.PARTNER_API_RATE_PER_IP = "2/minute"
    assert client.get("/api/v1/schema/").status_code == 200
    assert client.get("/api/v1/schema/").status_code == 200
    refused = client.get("/api/v1/schema/", {"format": "json"})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert json.loads(refused.content)["error"]["code"] == "rate_limited"
