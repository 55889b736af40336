"""The console's partner pages for each role: partners and top-ups, API keys shown once, revoke
and rotate, the read-only ledger, webhook deliveries and redelivery, and the API order's page."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from orders.models import Order
from orders.models import OrderStatus as S
from partners import webhooks
from partners.models import ApiKey, LedgerEntry, Partner, PartnerOrder, WebhookDelivery
from partners.services import api_key_create, key_hash, partner_update

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"rsk_(live|test)_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}")
OPERATOR = {f"partners.view_{model}" for model in (
    "partner", "apikey", "ledgerentry", "partnerorder", "webhookdelivery")} | {
    "partners.redeliver_webhookdelivery"}
MANAGER = OPERATOR | {"partners.add_partner", "partners.change_partner", "partners.topup_partner",
                      "partners.add_apikey", "partners.change_apikey"}


@pytest.fixture
def member(client, django_user_model):
    """Log in a staff user who is in the named group."""

    def login(group: str) -> Client:
        user = django_user_model.objects.create_user(username=group.lower(), is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(webhooks, "delivery_enqueue", calls.append)
    return calls


def partner_codenames(group: str) -> set[str]:
    return {f"partners.{codename}" for codename in Permission.objects.filter(
        group__name=group, content_type__app_label="partners").values_list("codename", flat=True)}


def balance(key_token: str) -> Any:
    return Client().get("/api/v1/balance", headers={"Authorization": f"Bearer {key_token}"})


def api_key_form(partner: Partner, **fields: Any) -> dict[str, Any]:
    return {"partner": partner.pk, "name": "bot", "allowed_ips": "", "rate_limit": "",
            "webhook_url": "", **fields}


def test_the_migration_gave_each_role_its_permissions():
    assert partner_codenames("Operators") == OPERATOR
    assert partner_codenames("Managers") == MANAGER


# --- Partners and top-ups ---------------------------------------------------------------------


def test_a_partner_made_in_the_admin_gets_the_sandbox_balance(member, settings):
    client = member("Managers")
    response = client.post(reverse("admin:partners_partner_add"), {
        "name": "Bot Co", "contact_email": "ops@bot.example", "discount_percent": "5",
        "currency": "USD", "active": "on", "note": "signed 2026-11"})
    assert response.status_code == 302, response.content
    partner = Partner.objects.get(name="Bot Co")
    assert partner.sandbox_balance == settings.PARTNER_SANDBOX_START_BALANCE > 0
    assert partner.balance == 0 and partner.note == "signed 2026-11"
    [grant] = partner.ledger.all()
    assert grant.kind == LedgerEntry.Kind.SANDBOX_GRANT and grant.sandbox
    assert grant.actor == "admin:managers"
    # The admin's own instance became the new row: its log entry names it.
    assert LogEntry.objects.filter(action_flag=ADDITION, object_id=str(partner.pk)).exists()
    assert Partner.objects.count() == 1


def test_editing_a_partner_never_writes_its_balances_back(partner):
    stale = Partner.objects.get(pk=partner.pk)
    Partner.objects.filter(pk=partner.pk).update(balance=Decimal("7.00"))  # a charge meanwhile
    stale.note = "VIP"
    partner_update(partner=stale)
    partner.refresh_from_db()
    assert partner.balance == Decimal("7.00") and partner.note == "VIP"


def test_the_partner_page_shows_balances_and_the_latest_ledger(member, partner):
    client = member("Operators")
    page = client.get(reverse("admin:partners_partner_change", args=[partner.pk])).content.decode()
    assert "100.00" in page and "wire" in page  # the fixture's top-up and its note
    assert "Sandbox balance to try the API" in page
    assert reverse("admin:partners_partner_topup", args=[partner.pk]) not in page
    listing = client.get(reverse("admin:partners_partner_changelist")).content.decode()
    assert partner.name in listing


def test_the_top_up_page_moves_the_balance_and_writes_a_ledger_entry(member, partner):
    client = member("Managers")
    url = reverse("admin:partners_partner_topup", args=[partner.pk])
    change = client.get(reverse("admin:partners_partner_change", args=[partner.pk]))
    assert url in change.content.decode()
    assert client.get(url).status_code == 200

    response = client.post(url, {"amount": "25.50", "balance": "live", "note": "wire #123"})
    assert response.status_code == 302
    partner.refresh_from_db()
    assert partner.balance == Decimal("125.50")
    entry = partner.ledger.first()
    assert entry is not None
    assert (entry.kind, entry.amount, entry.balance_after, entry.sandbox) == (
        LedgerEntry.Kind.TOPUP, Decimal("25.50"), Decimal("125.50"), False)
    assert entry.note == "wire #123" and entry.actor == "admin:managers"
    assert LogEntry.objects.filter(object_id=str(partner.pk),
                                   change_message__contains="wire #123").exists()

    sandbox_before = partner.sandbox_balance
    client.post(url, {"amount": "10", "balance": "sandbox", "note": "more tries"})
    partner.refresh_from_db()
    assert partner.sandbox_balance == sandbox_before + 10 and partner.balance == Decimal("125.50")


@pytest.mark.parametrize("form", [
    {"amount": "0", "balance": "live", "note": "zero"},
    {"amount": "-5", "balance": "live", "note": "negative"},
    {"amount": "5", "balance": "live", "note": "   "},
    {"amount": "5", "balance": "elsewhere", "note": "no such balance"},
])
def test_a_bad_top_up_moves_nothing(member, partner, form):
    client = member("Managers")
    entries = LedgerEntry.objects.count()
    response = client.post(reverse("admin:partners_partner_topup", args=[partner.pk]), form)
    assert response.status_code == 200 and b"errorlist" in response.content
    assert LedgerEntry.objects.count() == entries
    partner.refresh_from_db()
    assert partner.balance == Decimal("100.00")


# --- API keys -------------------------------------------------------------------------------


def test_a_manager_creates_a_key_and_sees_it_once(member, partner):
    client = member("Managers")
    response = client.post(reverse("admin:partners_apikey_add"), api_key_form(
        partner, allowed_ips="127.0.0.1\n10.0.0.0/8", rate_limit="30/minute",
        webhook_url="https://partner.example/hooks"))
    assert response.status_code == 200, response.content
    page = response.content.decode()
    match = TOKEN.search(page)
    assert match is not None and match[1] == "live"
    token = match[0]
    key = ApiKey.objects.get(partner=partner, name="bot")
    assert key.key_hash == key_hash(token) and token.startswith(key.prefix + "_")
    assert (key.allowed_ips, key.rate_limit, key.webhook_url) == (
        "127.0.0.1\n10.0.0.0/8", "30/minute", "https://partner.example/hooks")
    assert key.webhook_secret in page  # shown with the key, for signature checks
    assert "no-store" in response["Cache-Control"]
    assert balance(token).status_code == 200

    # Never stored, never shown again.
    assert not any(token in str(value) for value in ApiKey.objects.values_list())
    assert not LogEntry.objects.filter(change_message__contains=token).exists()
    assert not any(token in session.session_data for session in Session.objects.all())
    change = client.get(reverse("admin:partners_apikey_change", args=[key.pk])).content.decode()
    assert token not in change and key.prefix in change
    assert key.webhook_secret not in change and key.webhook_secret[:10] + "…" in change
    assert token not in client.get(reverse("admin:partners_apikey_changelist")).content.decode()


def test_a_test_key_from_the_admin_is_a_sandbox_key(member, partner):
    client = member("Managers")
    response = client.post(reverse("admin:partners_apikey_add"),
                           api_key_form(partner, test="on"))
    match = TOKEN.search(response.content.decode())
    assert match is not None and match[1] == "test"
    assert balance(match[0]).json()["balance"] == str(partner.sandbox_balance)


@pytest.mark.parametrize("field,value", [
    ("rate_limit", "lots"), ("allowed_ips", "10.0.0.300"), ("webhook_url", "not a url")])
def test_a_key_with_bad_settings_is_refused(member, partner, field, value):
    client = member("Managers")
    response = client.post(reverse("admin:partners_apikey_add"),
                           api_key_form(partner, **{field: value}))
    assert response.status_code == 200 and b"errorlist" in response.content
    assert TOKEN.search(response.content.decode()) is None
    assert not ApiKey.objects.exists()


def test_a_webhook_url_into_our_own_network_is_refused_in_production(member, partner, settings):
    settings.PARTNER_WEBHOOK_ALLOW_PRIVATE = False
    client = member("Managers")
    response = client.post(reverse("admin:partners_apikey_add"), api_key_form(
        partner, webhook_url="http://10.0.0.5/hooks"))
    assert response.status_code == 200 and "public addresses only" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_editing_a_key_never_un_revokes_it(member, live_api):
    client = member("Managers")
    url = reverse("admin:partners_apikey_change", args=[live_api.key.pk])
    client.get(url)
    ApiKey.objects.filter(pk=live_api.key.pk).update(revoked_at=timezone.now())  # meanwhile
    response = client.post(url, {"name": "renamed", "allowed_ips": "", "rate_limit": "",
                                 "webhook_url": "https://partner.example/new"})
    assert response.status_code == 302
    key = ApiKey.objects.get(pk=live_api.key.pk)
    assert key.name == "renamed" and key.revoked_at is not None


def test_revoke_confirms_with_a_reason_then_the_key_gets_401(member, live_api):
    client = member("Managers")
    assert balance(live_api.token).status_code == 200
    url = reverse("admin:partners_apikey_revoke", args=[live_api.key.pk])
    assert url in client.get(reverse("admin:partners_apikey_change",
                                     args=[live_api.key.pk])).content.decode()
    assert client.get(url).status_code == 200
    refused = client.post(url, {"reason": "  "})
    assert refused.status_code == 200 and b"errorlist" in refused.content
    assert ApiKey.objects.get(pk=live_api.key.pk).revoked_at is None

    assert client.post(url, {"reason": "leaked in a public repo"}).status_code == 302
    assert ApiKey.objects.get(pk=live_api.key.pk).revoked_at is not None
    response = balance(live_api.token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert LogEntry.objects.filter(change_message__contains="leaked in a public repo").exists()


def test_bulk_revoke_confirms_then_revokes(member, partner, live_api, test_api):
    client = member("Managers")
    changelist = reverse("admin:partners_apikey_changelist")
    selection = {"action": "revoke_keys", "_selected_action": [live_api.key.pk, test_api.key.pk]}
    confirm = client.post(changelist, selection)
    assert confirm.status_code == 200 and live_api.key.prefix in confirm.content.decode()
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    done = client.post(changelist, {**selection, "confirm": "yes", "reason": "partner left"})
    assert done.status_code == 302
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    assert balance(test_api.token).status_code == 401


def test_rotating_the_webhook_secret_shows_the_new_one_once(member, live_api):
    client = member("Managers")
    old = live_api.key.webhook_secret
    url = reverse("admin:partners_apikey_rotate", args=[live_api.key.pk])
    response = client.post(url, {"reason": "receiver rebuilt"})
    assert response.status_code == 200
    new = ApiKey.objects.get(pk=live_api.key.pk).webhook_secret
    assert new != old and new in response.content.decode()
    assert TOKEN.search(response.content.decode()) is None
    assert balance(live_api.token).status_code == 200  # the key itself is unchanged


def test_an_operator_cannot_create_keys_top_up_revoke_or_rotate(member, partner, live_api):
    client = member("Operators")
    for name in ("partners_partner_changelist", "partners_apikey_changelist",
                 "partners_ledgerentry_changelist", "partners_webhookdelivery_changelist",
                 "partners_partnerorder_changelist"):
        assert client.get(reverse(f"admin:{name}")).status_code == 200, name
    assert client.get(reverse("admin:partners_apikey_add")).status_code == 403
    assert client.post(reverse("admin:partners_apikey_add"),
                       api_key_form(partner)).status_code == 403
    assert client.get(reverse("admin:partners_partner_add")).status_code == 403
    topup = reverse("admin:partners_partner_topup", args=[partner.pk])
    assert client.get(topup).status_code == 403
    assert client.post(topup, {"amount": "50", "balance": "live",
                               "note": "x"}).status_code == 403
    for name in ("partners_apikey_revoke", "partners_apikey_rotate"):
        assert client.post(reverse(f"admin:{name}", args=[live_api.key.pk]),
                           {"reason": "x"}).status_code == 403
    assert client.post(reverse("admin:partners_apikey_change", args=[live_api.key.pk]),
                       {"name": "mine"}).status_code == 403
    partner.refresh_from_db()
    key = ApiKey.objects.get(pk=live_api.key.pk)
    assert partner.balance == Decimal("100.00") and LedgerEntry.objects.count() == 2
    assert key.revoked_at is None and key.webhook_secret == live_api.key.webhook_secret
    assert ApiKey.objects.count() == 1


def test_nobody_deletes_ledger_entries_partner_orders_or_deliveries(admin_client, test_api):
    from partners.tests.test_webhooks import api_order, delivery_for

    order = api_order(test_api)
    delivery = delivery_for(test_api.key, "https://partner.example/hooks")
    for name, pk in (("ledgerentry", LedgerEntry.objects.filter(order=order).get().pk),
                     ("partnerorder", PartnerOrder.objects.get(order=order).pk),
                     ("webhookdelivery", delivery.pk), ("partner", test_api.key.partner_id),
                     ("apikey", test_api.key.pk)):
        assert admin_client.get(reverse(f"admin:partners_{name}_delete",
                                        args=[pk])).status_code == 403, name
        assert admin_client.post(reverse(f"admin:partners_{name}_delete", args=[pk]),
                                 {"post": "yes"}).status_code == 403, name
    assert admin_client.post(reverse("admin:partners_ledgerentry_change", args=[
        LedgerEntry.objects.first().pk]), {"amount": "1000"}).status_code == 403


# --- Webhook deliveries ---------------------------------------------------------------------


@pytest.fixture
def failed_delivery(test_api) -> WebhookDelivery:
    from partners.tests.test_webhooks import delivery_for

    ApiKey.objects.filter(pk=test_api.key.pk).update(webhook_url="https://partner.example/new")
    delivery = delivery_for(test_api.key, "https://partner.example/old",
                            status=WebhookDelivery.Status.FAILED, attempts=10,
                            last_error="HTTP 500", last_status_code=500)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    return delivery


def test_the_delivery_list_and_page(member, failed_delivery):
    client = member("Operators")
    listing = client.get(reverse("admin:partners_webhookdelivery_changelist"),
                         {"status__exact": "failed"}).content.decode()
    assert "HTTP 500" in listing and failed_delivery.api_key.prefix in listing
    page = client.get(reverse("admin:partners_webhookdelivery_change",
                              args=[failed_delivery.pk])).content.decode()
    assert "&quot;status&quot;: &quot;completed&quot;" in page  # the payload, indented
    assert reverse("admin:partners_webhookdelivery_redeliver",
                   args=[failed_delivery.pk]) in page


def test_an_operator_redelivers_a_failed_delivery(member, failed_delivery, enqueued,
                                                  django_capture_on_commit_callbacks):
    client = member("Operators")
    url = reverse("admin:partners_webhookdelivery_redeliver", args=[failed_delivery.pk])
    assert client.get(url).status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url).status_code == 302
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == WebhookDelivery.Status.PENDING
    assert failed_delivery.attempts == 0 and failed_delivery.next_attempt_at is not None
    assert failed_delivery.url == "https://partner.example/new"
    assert enqueued == [failed_delivery.pk]


def test_bulk_redeliver_skips_pending_deliveries(member, failed_delivery, enqueued,
                                                 django_capture_on_commit_callbacks):
    from partners.tests.test_webhooks import delivery_for

    pending = delivery_for(failed_delivery.api_key, "https://partner.example/new", attempts=3)
    client = member("Operators")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:partners_webhookdelivery_changelist"), {
            "action": "redeliver", "_selected_action": [failed_delivery.pk, pending.pk]},
            follow=True)
    assert "1 not queued" in response.content.decode()
    assert enqueued == [failed_delivery.pk]
    pending.refresh_from_db()
    assert pending.attempts == 3


def test_staff_without_the_redeliver_permission_get_403(client, django_user_model,
                                                        failed_delivery, enqueued):
    user = django_user_model.objects.create_user(username="viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client.force_login(user)
    url = reverse("admin:partners_webhookdelivery_redeliver", args=[failed_delivery.pk])
    assert client.post(url).status_code == 403
    page = client.get(reverse("admin:partners_webhookdelivery_change",
                              args=[failed_delivery.pk])).content.decode()
    assert url not in page
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == WebhookDelivery.Status.FAILED and enqueued == []


# --- The order page -------------------------------------------------------------------------


def test_an_api_order_page_shows_partner_key_reference_and_deliveries(member, test_api):
    from partners.tests.test_webhooks import api_order, delivery_for

    order = api_order(test_api, "partner-ref-42")
    delivery = delivery_for(test_api.key, "https://partner.example/hooks")
    WebhookDelivery.objects.filter(pk=delivery.pk).update(order=order)
    client = member("Operators")
    page = client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert "field-api_reference" in page and test_api.key.partner.name in page
    assert test_api.key.prefix in page and "partner-ref-42" in page
    assert reverse("admin:partners_webhookdelivery_change", args=[delivery.pk]) in page

    other = Order.objects.create(
        channel="web", product=order.product, product_name=order.product_name, platform="telegram",
        stars=500, recipient_input="123456789", recipient_user_id="123456789", price=order.price,
        currency="USD", supplier_code="sandbox", cost=order.cost, cost_currency="USD",
        payment_method="sandbox", idempotency_key=uuid.uuid4().hex, reference="WEB-1",
        expires_at=timezone.now() + timedelta(minutes=30), status=S.AWAITING_PAYMENT)
    plain = client.get(reverse("admin:orders_order_change", args=[other.pk])).content.decode()
    assert "field-api_reference" not in plain and "field-api_webhooks" not in plain


def test_api_key_create_keeps_its_settings(partner):
    key, token = api_key_create(partner=partner, test=False, allowed_ips="10.0.0.1",
                                rate_limit="5/minute", webhook_url="https://h.example/")
    assert (key.allowed_ips, key.rate_limit, key.webhook_url) == (
        "10.0.0.1", "5/minute", "https://h.example/")
