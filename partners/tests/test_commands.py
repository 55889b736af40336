"""manage.py apikey: create (the partner too, if new) prints a key that works, once; list shows
no secrets; revoke makes the key fail with 401."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from partners.models import ApiKey, LedgerEntry, Partner

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"^rsk_(live|test)_[0-9a-f]{8}_\S+$", re.MULTILINE)


def apikey(*args: str) -> str:
    out = StringIO()
    call_command("apikey", *args, stdout=out)
    return out.getvalue()


def get_balance(token: str):
    return Client().get("/api/v1/balance", headers={"Authorization": f"Bearer {token}"})


def test_create_test_makes_the_partner_with_a_sandbox_balance_and_a_working_key(catalog,
                                                                                 settings):
    output = apikey("create", "--partner", "Newbot", "--test", "--name", "trial")
    [match] = TOKEN.finditer(output)
    token = match[0]
    assert match[1] == "test" and token.startswith("rsk_test_")
    partner = Partner.objects.get(name="Newbot")
    assert partner.sandbox_balance == settings.PARTNER_SANDBOX_START_BALANCE > 0
    assert partner.balance == 0
    assert LedgerEntry.objects.get(partner=partner).kind == LedgerEntry.Kind.SANDBOX_GRANT
    key = ApiKey.objects.get(partner=partner)
    assert key.test and key.name == "trial" and token not in key.key_hash

    response = get_balance(token)
    assert response.status_code == 200
    assert response.json()["balance"] == str(settings.PARTNER_SANDBOX_START_BALANCE)
    assert get_balance(token[:-1] + ("A" if token[-1] != "A" else "B")).status_code == 401


def test_create_live_for_an_existing_partner_and_with_a_webhook(partner):
    output = apikey("create", "--partner", partner.name, "--webhook-url",
                    "https://partner.example/hooks")
    [match] = TOKEN.finditer(output)
    assert match[1] == "live"
    assert Partner.objects.count() == 1  # not made again
    key = ApiKey.objects.get(prefix="_".join(match[0].split("_", 3)[:3]))
    assert key.webhook_url == "https://partner.example/hooks"
    assert key.webhook_secret in output
    response = get_balance(match[0])
    assert response.status_code == 200 and response.json()["balance"] == "100.00"


def test_list_shows_every_key_without_secrets(partner):
    live = TOKEN.search(apikey("create", "--partner", partner.name))[0]
    test = TOKEN.search(apikey("create", "--partner", partner.name, "--test"))[0]
    listing = apikey("list")
    assert live not in listing and test not in listing
    for key in ApiKey.objects.all():
        assert key.prefix in listing and key.webhook_secret not in listing
    assert "\tlive\tactive" in listing and "\ttest\tactive" in listing


def test_revoke_makes_the_key_fail_with_401(partner):
    token = TOKEN.search(apikey("create", "--partner", partner.name))[0]
    key = ApiKey.objects.get()
    assert get_balance(token).status_code == 200
    assert key.prefix in apikey("revoke", key.prefix)
    response = get_balance(token)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert "\trevoked" in apikey("list")


def test_revoking_an_unknown_prefix_is_an_error(db):
    with pytest.raises(CommandError, match="No key"):
        apikey("revoke", "rsk_live_00000000")


def test_a_webhook_url_into_our_own_network_is_refused_in_production(db, settings):
    settings.PARTNER_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(CommandError, match="public addresses only"):
        call_command("apikey", "create", "--partner", "Nosy", "--test",
                     "--webhook-url", "http://169.254.169.254/latest/meta-data/")
    assert not ApiKey.objects.filter(partner__name="Nosy").exists()
