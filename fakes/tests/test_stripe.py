"""The fake Stripe's wire behaviour, checked with the real `stripe` library over HTTP on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe

from fakes.stripe import parse_form
from fakes.stripe_fixtures import (  # noqa: F401 - pytest fixtures
    FakeStripe,
    WebhookReceiver,
    fake_stripe,
    fake_stripe_options,
    webhook_receiver,
)

TIMEOUT = 5.0


def client_for(fake: FakeStripe, api_key: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(api_key or fake.api_key, base_addresses={"api": fake.url},
                               http_client=stripe.RequestsClient(timeout=TIMEOUT), max_network_retries=0)


@pytest.fixture
def client(fake_stripe: FakeStripe) -> stripe.StripeClient:
    return client_for(fake_stripe)


def session_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 850,
                                       "product_data": {"name": "500 Telegram Stars for @a<b>"}},
                        "quantity": 1}],
        "client_reference_id": "ORD-000001",
        "metadata": {"order_reference": "ORD-000001"},
        "success_url": "http://shop.test/orders/x/?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://shop.test/orders/x/pay/",
        "expires_at": int(time.time()) + 40 * 60,
    }
    params.update(overrides)
    return params


def create(client: stripe.StripeClient, key: str | None = None, **overrides: Any) -> Any:
    return client.v1.checkout.sessions.create(session_params(**overrides),
                                              {"idempotency_key": key} if key else None)


# --- form encoding, auth ------------------------------------------------------------------


def test_parse_form_reads_stripes_bracket_encoding() -> None:
    pairs = [("line_items[0][price_data][currency]", "usd"), ("line_items[0][quantity]", "1"),
             ("line_items[1][quantity]", "2"), ("metadata[order_reference]", "ORD-1"),
             ("expand[]", "line_items"), ("mode", "payment")]
    assert parse_form(pairs) == {
        "line_items": [{"price_data": {"currency": "usd"}, "quantity": "1"}, {"quantity": "2"}],
        "metadata": {"order_reference": "ORD-1"}, "expand": ["line_items"], "mode": "payment"}


def test_a_wrong_or_missing_key_is_a_401_error_object(fake_stripe: FakeStripe) -> None:
    with pytest.raises(stripe.AuthenticationError) as raised:
        client_for(fake_stripe, "sk_test_wrong").v1.checkout.sessions.create(session_params())
    assert raised.value.http_status == 401
    missing = requests.get(f"{fake_stripe.url}/v1/checkout/sessions/cs_test_x", timeout=TIMEOUT)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    basic = requests.get(f"{fake_stripe.url}/v1/checkout/sessions/cs_test_x",
                         auth=(fake_stripe.api_key, ""), timeout=TIMEOUT)
    assert basic.status_code == 404  # authenticated; the session just does not exist
    assert fake_stripe.sessions() == []


# --- checkout sessions ---------------------------------------------------------------------


def test_the_library_creates_a_session_with_form_encoded_nested_params(
    client: stripe.StripeClient, fake_stripe: FakeStripe
) -> None:
    session = create(client, key="order-1-attempt-1")
    assert session.object == "checkout.session" and session.id.startswith("cs_test_")
    assert (session.amount_total, session.currency, session.mode) == (850, "usd", "payment")
    assert (session.status, session.payment_status, session.livemode) == ("open", "unpaid", False)
    assert session.url == f"{fake_stripe.url}/checkout/{session.id}"
    assert session.client_reference_id == "ORD-000001"
    assert session.metadata.to_dict() == {"order_reference": "ORD-000001"}
    (request,) = fake_stripe.requests("/v1/checkout/sessions")
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["idempotency_key"] == "order-1-attempt-1"
    assert request["stripe_version"]
    assert request["params"]["line_items"][0]["price_data"]["unit_amount"] == "850"
    assert request["params"]["line_items"][0]["price_data"]["product_data"]["name"].endswith("@a<b>")


def test_same_idempotency_key_and_params_replay_the_same_session(
    client: stripe.StripeClient, fake_stripe: FakeStripe
) -> None:
    params = session_params()
    first = client.v1.checkout.sessions.create(params, {"idempotency_key": "k"})
    again = client.v1.checkout.sessions.create(params, {"idempotency_key": "k"})
    assert again.id == first.id
    assert len(fake_stripe.sessions()) == 1
    assert [r["replayed"] for r in fake_stripe.requests("/v1/checkout/sessions")] == [False, True]
    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.checkout.sessions.create({**params, "expires_at": params["expires_at"] + 1},
                                           {"idempotency_key": "k"})
    assert raised.value.http_status == 400
    assert raised.value.error is not None and raised.value.error.type == "idempotency_error"
    assert len(fake_stripe.sessions()) == 1


def test_concurrent_requests_with_one_key_make_one_session(fake_stripe: FakeStripe) -> None:
    body = {"mode": "payment", "line_items[0][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": "850",
            "line_items[0][price_data][product_data][name]": "x", "line_items[0][quantity]": "1"}
    headers = {"Authorization": f"Bearer {fake_stripe.api_key}", "Idempotency-Key": "twins"}
    barrier = threading.Barrier(8)
    answers: list[requests.Response] = []

    def post() -> None:
        barrier.wait()
        answers.append(requests.post(f"{fake_stripe.url}/v1/checkout/sessions", data=body,
                                     headers=headers, timeout=TIMEOUT))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_stripe.sessions()) == 1
    ok = [a.json()["id"] for a in answers if a.status_code == 200]
    busy = [a.json()["error"] for a in answers if a.status_code == 409]
    assert len(ok) + len(busy) == 8 and len(set(ok)) == 1
    assert all(e["type"] == "idempotency_error" and e["code"] == "idempotency_key_in_use"
               for e in busy)


def test_a_request_that_failed_validation_may_reuse_its_key(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        create(client, key="retry-me", expires_at=int(time.time()) + 60)
    assert create(client, key="retry-me").status == "open"


@pytest.mark.parametrize("overrides,param,code", [
    ({"expires_at": int(time.time()) + 29 * 60}, "expires_at", None),
    ({"expires_at": int(time.time()) + 25 * 3600}, "expires_at", None),
    ({"bogus": "1"}, "bogus", "parameter_unknown"),
    ({"line_items": None}, "line_items", "parameter_missing"),
    ({"line_items": [{"price_data": {"currency": "usd", "unit_amount": 49,
                                     "product_data": {"name": "x"}}, "quantity": 1}]},
     None, "amount_too_small"),
    ({"line_items": [{"price_data": {"currency": "usd", "unit_amount": 850,
                                     "product_data": {"name": "x"}}}]},
     "line_items[0][quantity]", "parameter_missing"),
    ({"mode": "subscription"}, "mode", "parameter_invalid_empty"),
])
def test_invalid_sessions_are_refused_like_stripe(
    client: stripe.StripeClient, fake_stripe: FakeStripe, overrides: dict[str, Any],
    param: str | None, code: str | None
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        create(client, **overrides)
    assert raised.value.http_status == 400
    assert raised.value.param == param and raised.value.code == code
    assert fake_stripe.sessions() == []


def test_retrieving_an_unknown_session_is_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")


@pytest.mark.parametrize("fake_stripe_options", [{"api_key": "sk_live_fake"}])
def test_live_keys_make_live_objects(fake_stripe: FakeStripe) -> None:
    session = create(client_for(fake_stripe))
    assert session.livemode is True and session.id.startswith("cs_live_")
    fake_stripe.complete(session.id)
    (event,) = fake_stripe.events("checkout.session.completed")
    assert fake_stripe.event(event["id"])["event"]["livemode"] is True


# --- payments, events and webhooks ---------------------------------------------------------


def test_complete_pays_and_posts_a_signed_completed_event(
    client: stripe.StripeClient, fake_stripe: FakeStripe, webhook_receiver: WebhookReceiver
) -> None:
    fake_stripe.set_webhook_url(webhook_receiver.url)
    session = create(client)
    result = fake_stripe.complete(session.id)
    assert result["delivery"]["status"] == 200
    (webhook,) = webhook_receiver.received
    assert webhook.headers["Content-Type"].startswith("application/json")
    event = stripe.Webhook.construct_event(webhook.body, webhook.headers["Stripe-Signature"],
                                           fake_stripe.webhook_secret, tolerance=300)
    assert event.type == "checkout.session.completed" and event.id == result["event_id"]
    snapshot = event.data.object
    assert (snapshot.id, snapshot.status, snapshot.payment_status) == (session.id, "complete", "paid")
    assert snapshot.payment_intent.startswith("pi_") and snapshot.amount_total == 850
    assert webhook.body.decode() == fake_stripe.event(event.id)["body"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(webhook.body, webhook.headers["Stripe-Signature"],
                                       "whsec_other")
    now = client.v1.checkout.sessions.retrieve(session.id)
    assert (now.status, now.payment_status, now.url) == ("complete", "paid", None)
    assert client.v1.payment_intents.retrieve(now.payment_intent).status == "succeeded"


def test_resend_delivers_the_same_event_freshly_signed(
    client: stripe.StripeClient, fake_stripe: FakeStripe, webhook_receiver: WebhookReceiver
) -> None:
    session = create(client)
    event_id = fake_stripe.complete(session.id)["event_id"]
    assert webhook_receiver.received == []  # no webhook URL yet: nothing sent
    fake_stripe.set_webhook_url(webhook_receiver.url)
    fake_stripe.resend(event_id)
    time.sleep(1.1)  # the next signature carries a later timestamp
    fake_stripe.resend(event_id)
    first, second = webhook_receiver.received
    assert first.body == second.body and first.json()["id"] == event_id
    assert first.headers["Stripe-Signature"] != second.headers["Stripe-Signature"]
    webhook_receiver.status = 500
    assert fake_stripe.resend(event_id)["delivery"]["status"] == 500
    assert [d["status"] for d in fake_stripe.deliveries()] == [200, 200, 500]


def test_expire_sends_the_expired_event_and_closes_the_session(
    client: stripe.StripeClient, fake_stripe: FakeStripe
) -> None:
    session = create(client)
    result = fake_stripe.expire(session.id)
    assert result["session"]["status"] == "expired" and result["delivery"] is None
    assert fake_stripe.event(result["event_id"])["event"]["type"] == "checkout.session.expired"
    with pytest.raises(requests.HTTPError):
        fake_stripe.complete(session.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(session.id)
    assert client.v1.checkout.sessions.expire(create(client).id).status == "expired"


def test_a_session_past_its_expiry_expires_when_next_read(
    client: stripe.StripeClient, fake_stripe: FakeStripe, webhook_receiver: WebhookReceiver
) -> None:
    fake_stripe.set_webhook_url(webhook_receiver.url)
    session = create(client)
    with fake_stripe.state.lock:
        fake_stripe.state.sessions[session.id]["expires_at"] = int(time.time()) - 1
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    deadline = time.monotonic() + 5
    while not webhook_receiver.received and time.monotonic() < deadline:
        time.sleep(0.05)  # Stripe sends it after answering, and so does the fake
    (webhook,) = webhook_receiver.received
    assert webhook.json()["type"] == "checkout.session.expired"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    assert len(fake_stripe.events()) == 1


def test_delayed_payment_completes_unpaid_then_succeeds_or_fails(
    client: stripe.StripeClient, fake_stripe: FakeStripe
) -> None:
    pending = create(client)
    assert fake_stripe.complete(pending.id, payment_status="unpaid")["session"]["payment_status"] == "unpaid"
    succeeded = fake_stripe.async_succeed(pending.id)
    assert succeeded["session"]["payment_status"] == "paid"
    failing = create(client)
    fake_stripe.complete(failing.id, payment_status="unpaid")
    failed = fake_stripe.async_fail(failing.id)
    assert failed["session"]["payment_status"] == "unpaid"
    assert [e["type"] for e in fake_stripe.events()] == [
        "checkout.session.completed", "checkout.session.async_payment_succeeded",
        "checkout.session.completed", "checkout.session.async_payment_failed"]
    with pytest.raises(requests.HTTPError):
        fake_stripe.async_succeed(failing.id)


# --- refunds -------------------------------------------------------------------------------


def test_refunds_are_idempotent_and_cannot_exceed_the_charge(
    client: stripe.StripeClient, fake_stripe: FakeStripe
) -> None:
    session = create(client)
    intent = fake_stripe.complete(session.id)["session"]["payment_intent"]
    refund = client.v1.refunds.create({"payment_intent": intent}, {"idempotency_key": "refund-1"})
    assert (refund.object, refund.status, refund.amount, refund.currency) == ("refund", "succeeded", 850, "usd")
    assert refund.payment_intent == intent and refund.charge.startswith("ch_")
    again = client.v1.refunds.create({"payment_intent": intent}, {"idempotency_key": "refund-1"})
    assert again.id == refund.id and len(fake_stripe.refunds()) == 1
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create({"payment_intent": intent})
    assert raised.value.code == "charge_already_refunded"
    assert client.v1.refunds.retrieve(refund.id).amount == 850
    assert "refund.created" in [e["type"] for e in fake_stripe.events()]


def test_refund_errors(client: stripe.StripeClient, fake_stripe: FakeStripe) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.refunds.create({"payment_intent": "pi_nope"})
    assert missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as neither:
        client.v1.refunds.create({})
    assert neither.value.code == "parameter_missing"
    session = create(client)
    intent = fake_stripe.complete(session.id, payment_status="unpaid")["session"]["payment_intent"]
    with pytest.raises(stripe.InvalidRequestError) as processing:
        client.v1.refunds.create({"payment_intent": intent})
    assert processing.value.code == "charge_not_refundable"
    paid = fake_stripe.complete(create(client).id)["session"]["payment_intent"]
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create({"payment_intent": paid, "amount": 851})
    assert too_much.value.code == "amount_too_large"
    assert client.v1.refunds.create({"payment_intent": paid, "amount": 300}).amount == 300
    assert client.v1.refunds.create({"payment_intent": paid}).amount == 550


# --- hosted checkout page ------------------------------------------------------------------


def test_hosted_page_pays_and_redirects_to_the_success_url(
    client: stripe.StripeClient, fake_stripe: FakeStripe, webhook_receiver: WebhookReceiver
) -> None:
    fake_stripe.set_webhook_url(webhook_receiver.url)
    session = create(client)
    page = requests.get(session.url, timeout=TIMEOUT)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "Pay (fake Stripe)" in page.text and "8.50 USD" in page.text
    assert "@a&lt;b&gt;" in page.text  # escaped
    paid = requests.post(f"{session.url}/pay", data={"method": "card"}, allow_redirects=False,
                         timeout=TIMEOUT)
    assert paid.status_code == 303
    assert paid.headers["Location"] == f"http://shop.test/orders/x/?session={session.id}"
    assert webhook_receiver.received[0].json()["type"] == "checkout.session.completed"
    assert "complete" in requests.get(session.url, timeout=TIMEOUT).text
    again = requests.post(f"{session.url}/pay", data={"method": "card"}, allow_redirects=False,
                          timeout=TIMEOUT)
    assert again.status_code == 400 and len(fake_stripe.events()) == 1


def test_reset_forgets_everything(client: stripe.StripeClient, fake_stripe: FakeStripe) -> None:
    fake_stripe.complete(create(client).id)
    fake_stripe.reset()
    assert fake_stripe.sessions() == [] and fake_stripe.events() == []


def test_runs_as_a_module() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.stripe", "--port", "0", "--api-key", "sk_test_cli",
         "--webhook-secret", "whsec_cli", "--webhook-url", ""],
        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        url = banner.split(" listening on ")[1].split()[0]
        client = stripe.StripeClient("sk_test_cli", base_addresses={"api": url},
                                     http_client=stripe.RequestsClient(timeout=TIMEOUT),
                                     max_network_retries=0)
        assert client.v1.checkout.sessions.create(session_params()).status == "open"
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)
