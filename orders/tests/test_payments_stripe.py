"""Card payments through Stripe Checkout, against the fake Stripe over real HTTP.

The shop's real `stripe` client opens sessions and refunds at the fake; webhooks are the
fake's own events, signed as Stripe signs them, posted to the real webhook view. Events Stripe
would only send in odd cases (another order's reference, a wrong amount) are built from a
real session's snapshot and signed with the endpoint secret.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
import stripe
from django.db import IntegrityError, connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import orders.payments
from fakes.stripe_fixtures import FakeStripe, fake_stripe, fake_stripe_options  # noqa: F401
from orders import services
from orders.exceptions import PaymentProviderError
from orders.models import Order, OrderEvent, Payment, PaymentEvent, PaymentInvoice
from orders.models import OrderStatus as S
from orders.payments import payment_provider_get
from orders.payments.services import invoice_open, payment_method_change, payments_poll
from orders.payments.stripe_checkout import StripeCheckoutProvider, session_expiry
from orders.suppliers.base import RecipientInfo
from orders.transitions import order_transition

WEBHOOK_URL = reverse("orders:payment_webhook", args=["stripe"])
SITE_URL = "http://shop.test"


@pytest.fixture
def stripe_shop(settings, monkeypatch, fake_stripe: FakeStripe) -> FakeStripe:
    """The Stripe method registered, enabled and pointed at the fake (until settings carry it)."""
    monkeypatch.setitem(orders.payments._PROVIDERS, "stripe", StripeCheckoutProvider)
    methods = copy.deepcopy(settings.PAYMENT_METHODS)
    methods["stripe"] = {"label": "Card (Stripe Checkout)", "fee_percent": Decimal("2.5"),
                         "channels": ["web", "bot"], "enabled": True, "quote_minutes": 30}
    settings.PAYMENT_METHODS = methods
    settings.STRIPE_SECRET_KEY = fake_stripe.api_key
    settings.STRIPE_WEBHOOK_SECRET = fake_stripe.webhook_secret
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.STRIPE_LIVEMODE = False
    settings.STRIPE_TIMEOUT = 3.0
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.SITE_URL = SITE_URL
    return fake_stripe


@pytest.fixture
def enqueued(monkeypatch) -> dict[str, list[int]]:
    """Record jobs instead of sending them to a broker; tests run them by hand."""
    jobs: dict[str, list[int]] = {"fulfil": [], "refund": []}
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", jobs["fulfil"].append)
    monkeypatch.setattr("orders.queue.enqueue_refund", jobs["refund"].append)
    return jobs


def place(catalog, recipient: str = "@sandbox_ok", user_id: str = "100000001") -> Order:
    """A web order for 500 Stars ($8.50), paid by card, placed through the real service."""
    return services.order_create(
        channel="web", product=catalog, recipient_input=recipient,
        recipient=RecipientInfo(user_id=user_id, username=recipient if recipient.startswith("@") else None),
        payment_method="stripe", package_id=catalog.packages.get(quantity=500).pk,
    )


@pytest.fixture
def invoice(catalog, stripe_shop) -> PaymentInvoice:
    return invoice_open(order=place(catalog))


def post_webhook(client: Client, body: str | bytes, signature: str | None) -> Any:
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)


def deliver(client: Client, fake: FakeStripe, event_id: str) -> Any:
    """Post one of the fake's events to our webhook exactly as Stripe would: its body, signed now."""
    body = fake.event(event_id)["body"]
    return post_webhook(client, body, fake.sign(body))


def forged_event(fake: FakeStripe, session_id: str, event_type: str = "checkout.session.completed",
                 **changes: Any) -> str:
    """An event about a real session with some fields changed (what a confused sender might say)."""
    session = next(s for s in fake.sessions() if s["id"] == session_id)
    livemode = changes.pop("livemode", False)
    return json.dumps({
        "id": f"evt_{uuid.uuid4().hex}", "object": "event",
        "api_version": "2026-10-28.endive", "created": int(time.time()), "livemode": livemode,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": event_type,
        "data": {"object": {**session, "status": "complete", "payment_status": "paid", **changes}},
    }, indent=2)


def order_of(invoice: PaymentInvoice) -> Order:
    return Order.objects.get(pk=invoice.order_id)


# --- invoices ------------------------------------------------------------------------------


def test_create_invoice_opens_a_checkout_session_through_the_stripe_library(
    invoice: PaymentInvoice, stripe_shop: FakeStripe
) -> None:
    order = order_of(invoice)
    assert invoice.provider == "stripe" and invoice.provider_invoice_id.startswith("cs_test_")
    assert invoice.account == "test"  # session ids are unique across Stripe accounts; modes never mix
    assert (invoice.amount_minor, invoice.currency, invoice.exponent) == (850, "USD", 2)
    assert invoice.pay_url == f"{stripe_shop.url}/checkout/{invoice.provider_invoice_id}"
    (session,) = stripe_shop.sessions()
    assert invoice.raw["id"] == session["id"]
    # Stripe's minimum lifetime (30 min) outlasts the order's window: we store Stripe's expiry.
    assert int(invoice.expires_at.timestamp()) == session["expires_at"]
    assert invoice.expires_at >= timezone.now() + timedelta(minutes=31)
    (request,) = stripe_shop.requests("/v1/checkout/sessions")
    assert request["method"] == "POST"
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["idempotency_key"].startswith(f"stars-checkout-{order.public_id}-1-")
    params = request["params"]
    assert params["mode"] == "payment"
    assert params["line_items"] == [{"price_data": {
        "currency": "usd", "unit_amount": "850",
        "product_data": {"name": "500 Telegram Stars for @sandbox_ok"}}, "quantity": "1"}]
    assert params["client_reference_id"] == order.reference
    assert params["metadata"]["order_reference"] == order.reference
    assert params["success_url"] == f"{SITE_URL}/orders/{order.public_id}/"
    assert params["cancel_url"] == f"{SITE_URL}/orders/{order.public_id}/pay/"
    assert params["adaptive_pricing"] == {"enabled": "false"}
    assert invoice_open(order=order).pk == invoice.pk  # reused, no second session
    assert len(stripe_shop.sessions()) == 1


def test_create_invoice_twice_for_one_attempt_is_one_session(
    catalog, stripe_shop: FakeStripe
) -> None:
    order = place(catalog)
    provider = payment_provider_get("stripe")
    first = provider.create_invoice(order, expires_at=order.expires_at)
    again = provider.create_invoice(order, expires_at=order.expires_at)
    assert again.provider_invoice_id == first.provider_invoice_id
    assert len(stripe_shop.sessions()) == 1
    assert [r["replayed"] for r in stripe_shop.requests("/v1/checkout/sessions")] == [False, True]
    # A twin of invoice_open racing the one that recorded the invoice: still the same session.
    invoice = invoice_open(order=order)
    assert invoice.provider_invoice_id == first.provider_invoice_id
    assert provider.create_invoice(order, expires_at=order.expires_at).provider_invoice_id == (
        first.provider_invoice_id)
    # Once that invoice can no longer be offered, the next attempt is a new session.
    PaymentInvoice.objects.filter(pk=invoice.pk).update(status=PaymentInvoice.Status.EXPIRED)
    assert provider.create_invoice(order, expires_at=order.expires_at).provider_invoice_id != (
        first.provider_invoice_id)
    assert len(stripe_shop.sessions()) == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_invoice_opens_make_one_session(catalog, stripe_shop: FakeStripe, settings) -> None:
    # Stripe answers 409 to a key whose first request is still running; the library retries.
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    order = place(catalog)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def open_invoice() -> None:
        try:
            barrier.wait()
            invoice_open(order=Order.objects.get(pk=order.pk))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_invoice) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stripe_shop.sessions()) == 1 and PaymentInvoice.objects.count() == 1
    # A twin that reached Stripe after the first one checked for an invoice gets the same
    # session and then loses the insert race; until invoice_open returns the winner's row on
    # IntegrityError (a core change), that twin's request fails and a reload shows the invoice.
    assert all(isinstance(exc, IntegrityError) for exc in errors)


def test_session_expiry_stays_within_stripes_limits_on_a_stable_grid() -> None:
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    # Asked for 5 minutes: Stripe's 30-minute minimum plus margin, rounded up to the grid.
    soon = session_expiry(now + timedelta(minutes=5), now=now)
    assert soon == datetime(2026, 1, 1, 12, 35, tzinfo=UTC)
    # A retry seconds later asks for the very same expiry, hence the same idempotent request.
    assert session_expiry(now + timedelta(minutes=5), now=now + timedelta(seconds=20)) == soon
    assert session_expiry(now + timedelta(hours=2), now=now) == datetime(2026, 1, 1, 14, 5, tzinfo=UTC)
    # Asked for 3 days: Stripe's 24-hour maximum minus margin, rounded down to the grid.
    assert session_expiry(now + timedelta(days=3), now=now) == datetime(2026, 1, 2, 11, 55, tzinfo=UTC)


def test_names_a_recipient_without_username_by_id(catalog, stripe_shop: FakeStripe) -> None:
    invoice_open(order=place(catalog, recipient="100000001"))
    (request,) = stripe_shop.requests("/v1/checkout/sessions")
    name = request["params"]["line_items"][0]["price_data"]["product_data"]["name"]
    assert name == "500 Telegram Stars for Telegram ID 100000001"


def test_create_invoice_reports_stripe_errors(catalog, stripe_shop: FakeStripe, settings) -> None:
    order = place(catalog)
    settings.STRIPE_SECRET_KEY = "sk_test_wrong"
    with pytest.raises(PaymentProviderError, match="Invalid API Key"):
        invoice_open(order=order)
    settings.STRIPE_SECRET_KEY = stripe_shop.api_key
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    with pytest.raises(PaymentProviderError):
        invoice_open(order=order)
    assert not PaymentInvoice.objects.exists()


# --- webhooks: paying ----------------------------------------------------------------------


def test_signed_webhook_marks_paid_and_stars_are_delivered_once(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, supplier, enqueued,
    django_capture_on_commit_callbacks
) -> None:
    completed = stripe_shop.complete(invoice.provider_invoice_id)
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, stripe_shop, completed["event_id"])
    assert response.status_code == 200 and response.json()["events"] == ["applied"]
    order = order_of(invoice)
    assert order.status == S.PAID and enqueued["fulfil"] == [order.pk]
    payment = Payment.objects.get(order=order)
    assert payment.provider_reference == f"{invoice.provider_invoice_id}:paid"
    assert (payment.amount, payment.currency) == (Decimal("8.50"), "USD")
    assert payment.raw["payment_intent"] == completed["session"]["payment_intent"]
    assert payment.raw["event_id"] == completed["event_id"]
    event = PaymentEvent.objects.get()
    assert event.body == stripe_shop.event(completed["event_id"])["body"]
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.PAID

    order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.DELIVERED
    # Stripe retries the event (at least once, for days): nothing more happens.
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, stripe_shop, completed["event_id"]).status_code == 200
    services.order_fulfil(order_id=order.pk)
    assert supplier.topup_calls(order.idempotency_key) == 1
    assert Payment.objects.count() == 1 and enqueued["fulfil"] == [order.pk]


def test_the_same_event_five_times_is_one_payment(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued,
    django_capture_on_commit_callbacks
) -> None:
    event_id = stripe_shop.complete(invoice.provider_invoice_id)["event_id"]
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            assert deliver(client, stripe_shop, event_id).status_code == 200
    assert PaymentEvent.objects.count() == 1 and Payment.objects.count() == 1
    assert OrderEvent.objects.filter(order_id=invoice.order_id, to_status=S.PAID).count() == 1
    assert enqueued["fulfil"] == [invoice.order_id]


@pytest.mark.django_db(transaction=True)
def test_the_same_event_concurrently_is_one_payment(
    catalog, stripe_shop: FakeStripe, enqueued
) -> None:
    invoice = invoice_open(order=place(catalog))
    body = stripe_shop.event(stripe_shop.complete(invoice.provider_invoice_id)["event_id"])["body"]
    barrier = threading.Barrier(5)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            barrier.wait()
            statuses.append(post_webhook(Client(), body, stripe_shop.sign(body)).status_code)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and statuses == [200] * 5
    assert PaymentEvent.objects.count() == 1 and Payment.objects.count() == 1
    assert OrderEvent.objects.filter(order_id=invoice.order_id, to_status=S.PAID).count() == 1
    assert enqueued["fulfil"] == [invoice.order_id]


def test_completed_and_async_succeeded_for_one_session_are_one_payment(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued
) -> None:
    session_id = invoice.provider_invoice_id
    completed = stripe_shop.complete(session_id)["event_id"]
    deliver(client, stripe_shop, completed)
    # The same money announced again under another event id and type.
    body = forged_event(stripe_shop, session_id, "checkout.session.async_payment_succeeded")
    assert post_webhook(client, body, stripe_shop.sign(body)).status_code == 200
    assert Payment.objects.count() == 1
    assert PaymentEvent.objects.get().event_key == f"{session_id}:paid"
    assert order_of(invoice).status == S.PAID


def test_delayed_payment_pays_on_async_success_only(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued
) -> None:
    session_id = invoice.provider_invoice_id
    pending = stripe_shop.complete(session_id, payment_status="unpaid")["event_id"]
    assert deliver(client, stripe_shop, pending).json()["events"] == ["ignored"]
    assert order_of(invoice).status == S.AWAITING_PAYMENT and not Payment.objects.exists()
    succeeded = stripe_shop.async_succeed(session_id)["event_id"]
    assert deliver(client, stripe_shop, succeeded).json()["events"] == ["applied"]
    # Out of order and repeated: the unpaid "completed" arriving again changes nothing.
    deliver(client, stripe_shop, pending)
    deliver(client, stripe_shop, succeeded)
    assert order_of(invoice).status == S.PAID and Payment.objects.count() == 1
    assert set(PaymentEvent.objects.values_list("event_key", "outcome")) == {
        (pending, PaymentEvent.Outcome.IGNORED), (f"{session_id}:paid", PaymentEvent.Outcome.APPLIED)}


def test_failed_delayed_payment_leaves_the_order_waiting(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued
) -> None:
    session_id = invoice.provider_invoice_id
    deliver(client, stripe_shop, stripe_shop.complete(session_id, payment_status="unpaid")["event_id"])
    response = deliver(client, stripe_shop, stripe_shop.async_fail(session_id)["event_id"])
    assert response.json()["events"] == ["ignored"]
    assert order_of(invoice).status == S.AWAITING_PAYMENT and not Payment.objects.exists()


# --- webhooks: refusing ----------------------------------------------------------------------


@pytest.mark.parametrize("how", [
    "wrong secret", "missing", "old", "altered body", "restamped", "garbage"])
def test_unverifiable_webhooks_are_400_and_leave_no_trace(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued, how: str
) -> None:
    body = stripe_shop.event(stripe_shop.complete(invoice.provider_invoice_id)["event_id"])["body"]
    old = stripe_shop.sign(body, timestamp=int(time.time()) - 301)
    signature = {
        "wrong secret": stripe_shop.sign(body, secret="whsec_attacker"),
        "missing": None,
        "old": old,
        "altered body": stripe_shop.sign(body),
        # A captured old signature replayed with a fresh timestamp.
        "restamped": f"t={int(time.time())},{old.split(',')[1]}",
        "garbage": "not a signature",
    }[how]
    if how == "altered body":
        body = body.replace('"amount_total": 850', '"amount_total": 85000')
    assert post_webhook(client, body, signature).status_code == 400
    assert not PaymentEvent.objects.exists() and not Payment.objects.exists()
    assert order_of(invoice).status == S.AWAITING_PAYMENT


def test_a_signature_within_tolerance_is_accepted(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued
) -> None:
    body = stripe_shop.event(stripe_shop.complete(invoice.provider_invoice_id)["event_id"])["body"]
    assert post_webhook(client, body, stripe_shop.sign(body, timestamp=int(time.time()) - 290)
                        ).status_code == 200


def test_signed_non_events_are_refused(client, db, stripe_shop: FakeStripe) -> None:
    for body in ['["not", "an", "object"]', "{not json", '{"object": "event", "id": "evt_1"}']:
        assert post_webhook(client, body, stripe_shop.sign(body)).status_code == 400
    assert not PaymentEvent.objects.exists()


def test_livemode_mismatch_is_refused(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, settings, enqueued
) -> None:
    live = forged_event(stripe_shop, invoice.provider_invoice_id, livemode=True)
    assert post_webhook(client, live, stripe_shop.sign(live)).status_code == 400
    settings.STRIPE_LIVEMODE = True
    test_mode = stripe_shop.event(stripe_shop.complete(invoice.provider_invoice_id)["event_id"])["body"]
    settings.STRIPE_WEBHOOK_SECRET = "whsec_live_secret"
    assert post_webhook(client, test_mode, stripe_shop.sign(test_mode, secret="whsec_live_secret")
                        ).status_code == 400
    # The fake's published secret is never trusted in live mode.
    settings.STRIPE_WEBHOOK_SECRET = stripe_shop.webhook_secret
    assert post_webhook(client, live, stripe_shop.sign(live)).status_code == 400
    assert not PaymentEvent.objects.exists()
    assert order_of(invoice).status == S.AWAITING_PAYMENT


@pytest.mark.parametrize("changes", [
    {"client_reference_id": "{other}"},
    {"client_reference_id": None, "metadata": {"order_reference": "{other}"}},
])
def test_event_naming_another_order_goes_to_review(
    client, catalog, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued, changes
) -> None:
    other = place(catalog)
    changes = json.loads(json.dumps(changes).replace("{other}", other.reference))
    body = forged_event(stripe_shop, invoice.provider_invoice_id, **changes)
    response = post_webhook(client, body, stripe_shop.sign(body))
    assert response.json()["events"] == ["review"]
    event = PaymentEvent.objects.get()
    assert other.reference in event.detail and order_of(invoice).reference in event.detail
    assert order_of(invoice).status == S.AWAITING_PAYMENT
    assert Order.objects.get(pk=other.pk).status == S.REVIEW
    assert not Payment.objects.exists()


@pytest.mark.parametrize("changes,reason", [
    ({"amount_total": 849}, "8.49"), ({"currency": "eur"}, "EUR")])
def test_wrong_amount_or_currency_goes_to_review(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued, changes, reason
) -> None:
    body = forged_event(stripe_shop, invoice.provider_invoice_id, **changes)
    assert post_webhook(client, body, stripe_shop.sign(body)).json()["events"] == ["review"]
    order = order_of(invoice)
    assert order.status == S.REVIEW and reason in order.status_reason
    assert enqueued["fulfil"] == []


def test_other_event_types_are_recorded_and_ignored(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued
) -> None:
    body = forged_event(stripe_shop, invoice.provider_invoice_id, "checkout.session.async_payment_failed")
    assert post_webhook(client, body, stripe_shop.sign(body)).json()["events"] == ["ignored"]
    refund_created = json.dumps({"id": "evt_refund", "object": "event", "type": "refund.created",
                                 "created": int(time.time()), "livemode": False,
                                 "data": {"object": {"id": "re_1", "object": "refund"}}})
    assert post_webhook(client, refund_created, stripe_shop.sign(refund_created)
                        ).json()["events"] == ["ignored"]
    assert order_of(invoice).status == S.AWAITING_PAYMENT


# --- expiry and ordering ---------------------------------------------------------------------


def test_expired_session_cancels_the_unpaid_order(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe
) -> None:
    event_id = stripe_shop.expire(invoice.provider_invoice_id)["event_id"]
    assert deliver(client, stripe_shop, event_id).json()["events"] == ["applied"]
    assert order_of(invoice).status == S.CANCELLED
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.EXPIRED


def test_expired_event_after_the_payment_changes_nothing(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued
) -> None:
    paid = stripe_shop.complete(invoice.provider_invoice_id)["event_id"]
    expired = forged_event(stripe_shop, invoice.provider_invoice_id, "checkout.session.expired",
                           status="expired", payment_status="unpaid")
    deliver(client, stripe_shop, paid)
    post_webhook(client, expired, stripe_shop.sign(expired))
    deliver(client, stripe_shop, paid)
    assert order_of(invoice).status == S.PAID
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.PAID
    assert Payment.objects.count() == 1


# --- poll backstop -----------------------------------------------------------------------------


def test_poll_finds_a_payment_whose_webhook_was_lost(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued,
    django_capture_on_commit_callbacks
) -> None:
    event_id = stripe_shop.complete(invoice.provider_invoice_id)["event_id"]  # no webhook sent
    with django_capture_on_commit_callbacks(execute=True):
        assert payments_poll()["accepted"] == 1
    order = order_of(invoice)
    assert order.status == S.PAID and enqueued["fulfil"] == [order.pk]
    payment = Payment.objects.get()
    assert payment.provider_reference == f"{invoice.provider_invoice_id}:paid"
    assert payment.raw["source"] == "poll" and payment.raw["payment_intent"].startswith("pi_")
    # The webhook arrives after all: the same inbox key, so nothing more happens.
    assert deliver(client, stripe_shop, event_id).status_code == 200
    assert payments_poll()["accepted"] == 0  # the invoice is no longer open
    assert PaymentEvent.objects.count() == 1 and Payment.objects.count() == 1


def test_poll_sees_nothing_in_an_open_or_pending_session(
    invoice: PaymentInvoice, stripe_shop: FakeStripe
) -> None:
    assert payments_poll()["accepted"] == 0
    stripe_shop.complete(invoice.provider_invoice_id, payment_status="unpaid")
    assert payments_poll()["accepted"] == 0
    assert order_of(invoice).status == S.AWAITING_PAYMENT


def test_poll_cancels_the_order_of_an_expired_session(
    invoice: PaymentInvoice, stripe_shop: FakeStripe
) -> None:
    stripe_shop.expire(invoice.provider_invoice_id)
    payments_poll()
    assert order_of(invoice).status == S.CANCELLED
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.EXPIRED


def test_poll_closes_the_session_of_a_cancelled_order(
    invoice: PaymentInvoice, stripe_shop: FakeStripe
) -> None:
    services.order_cancel(order=order_of(invoice), actor="buyer:web")
    payments_poll()
    (session,) = stripe_shop.sessions()
    assert session["status"] == "expired"
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.EXPIRED
    assert order_of(invoice).status == S.CANCELLED


def test_poll_closes_the_session_the_buyer_switched_away_from(
    invoice: PaymentInvoice, stripe_shop: FakeStripe
) -> None:
    order = payment_method_change(order=order_of(invoice), payment_method="sandbox",
                                  actor="buyer:web")
    payments_poll()
    (session,) = stripe_shop.sessions()
    assert session["status"] == "expired"  # the old card page can no longer take money
    # Its expiry is ours, not the buyer's: the order still waits for the new method.
    assert order_of(invoice).status == S.AWAITING_PAYMENT
    assert order_of(invoice).payment_method == order.payment_method == "sandbox"
    assert PaymentInvoice.objects.get(pk=invoice.pk).status == PaymentInvoice.Status.CANCELLED


def test_poll_skips_a_session_stripe_does_not_know(
    catalog, stripe_shop: FakeStripe, enqueued
) -> None:
    lost, paid = invoice_open(order=place(catalog)), invoice_open(order=place(catalog))
    PaymentInvoice.objects.filter(pk=lost.pk).update(provider_invoice_id="cs_test_unknown")
    stripe_shop.complete(paid.provider_invoice_id)
    assert payments_poll()["accepted"] == 1
    assert (order_of(lost).status, order_of(paid).status) == (S.AWAITING_PAYMENT, S.PAID)


def test_poll_survives_stripe_being_down(invoice: PaymentInvoice, settings) -> None:
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    assert payments_poll()["accepted"] == 0
    assert order_of(invoice).status == S.AWAITING_PAYMENT


# --- refunds -------------------------------------------------------------------------------------


def test_failed_fulfilment_is_refunded_at_stripe(
    client, catalog, stripe_shop: FakeStripe, supplier, enqueued, django_capture_on_commit_callbacks
) -> None:
    invoice = invoice_open(order=place(catalog, "@sandbox_fail", "100000004"))
    completed = stripe_shop.complete(invoice.provider_invoice_id)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, stripe_shop, completed["event_id"])
        order = services.order_fulfil(order_id=invoice.order_id, budget_seconds=15)
    assert order.status == S.REFUND_PENDING and enqueued["refund"] == [order.pk]
    order = services.order_refund(order_id=order.pk)
    assert order.status == S.REFUNDED
    (refund,) = stripe_shop.refunds()
    assert refund["payment_intent"] == completed["session"]["payment_intent"]
    assert (refund["amount"], refund["currency"], refund["status"]) == (850, "usd", "succeeded")
    assert refund["metadata"]["order_reference"] == order.reference
    payment = Payment.objects.get(order=order)
    assert payment.status == Payment.Status.REFUNDED and payment.refund_reference == refund["id"]
    services.order_refund(order_id=order.pk)
    assert len(stripe_shop.refunds()) == 1


def test_a_repeated_refund_request_is_one_refund(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued
) -> None:
    deliver(client, stripe_shop, stripe_shop.complete(invoice.provider_invoice_id)["event_id"])
    payment = Payment.objects.get()
    provider = payment_provider_get("stripe")
    first, again = provider.refund(payment), provider.refund(payment)
    assert first.refunded and again.refunded
    assert first.provider_reference == again.provider_reference
    assert len(stripe_shop.refunds()) == 1
    (request, replay) = stripe_shop.requests("/v1/refunds")
    assert request["idempotency_key"] == replay["idempotency_key"] and replay["replayed"]


def test_a_refund_stripe_refuses_sends_the_order_to_review(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued
) -> None:
    completed = stripe_shop.complete(invoice.provider_invoice_id)
    deliver(client, stripe_shop, completed["event_id"])
    # Someone refunded it in Stripe's dashboard already.
    dashboard = stripe.StripeClient(stripe_shop.api_key, base_addresses={"api": stripe_shop.url},
                                    http_client=stripe.RequestsClient(timeout=5))
    dashboard.v1.refunds.create({"payment_intent": completed["session"]["payment_intent"]})
    result = payment_provider_get("stripe").refund(Payment.objects.get())
    assert not result.refunded and "charge_already_refunded" in result.message
    # An operator decides to refund the paid order.
    order = order_transition(order=order_of(invoice), to_status=S.REVIEW, actor="test")
    order = services.order_refund_start(order=order, actor="operator")
    order = services.order_refund(order_id=order.pk)
    assert order.status == S.REVIEW and "charge_already_refunded" in order.status_reason
    assert Payment.objects.get().status == Payment.Status.CONFIRMED


def test_a_refund_that_could_not_reach_stripe_is_not_counted(
    client, invoice: PaymentInvoice, stripe_shop: FakeStripe, enqueued, settings
) -> None:
    deliver(client, stripe_shop, stripe_shop.complete(invoice.provider_invoice_id)["event_id"])
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    result = payment_provider_get("stripe").refund(Payment.objects.get())
    assert not result.refunded and "may exist" in result.message
    assert stripe_shop.refunds() == []


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_end_to_end_the_fake_posts_a_signed_webhook_to_the_live_shop(
    live_server, catalog, stripe_shop: FakeStripe, supplier, enqueued
) -> None:
    stripe_shop.set_webhook_url(f"{live_server.url}{WEBHOOK_URL}")
    order = place(catalog)
    from shop.ownership import order_owner_path

    # Only the order's buyer gets the pay page: the buyer's link makes this session theirs.
    buyer = requests.Session()
    buyer.get(f"{live_server.url}{order_owner_path(order)}", timeout=10)
    page = buyer.get(f"{live_server.url}{reverse('shop:order_pay', args=[order.public_id])}",
                     timeout=10)
    assert page.status_code == 200
    invoice = PaymentInvoice.objects.get(order=order)
    assert invoice.pay_url in page.text  # the storefront links to Stripe's hosted page
    checkout = requests.get(invoice.pay_url, timeout=10)
    assert "Pay (fake Stripe)" in checkout.text
    result = stripe_shop.complete(invoice.provider_invoice_id)
    assert result["delivery"]["status"] == 200
    order.refresh_from_db()
    assert order.status == S.PAID and enqueued["fulfil"] == [order.pk]
    order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.DELIVERED
    # Stripe delivers again (it retries for days): still one payment, one top-up.
    assert stripe_shop.resend(result["event_id"])["delivery"]["status"] == 200
    assert Payment.objects.filter(order=order).count() == 1
    assert supplier.topup_calls(order.idempotency_key) == 1
