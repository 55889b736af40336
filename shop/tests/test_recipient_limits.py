"""The storefront's recipient step under a flood: limits per address and session, cached answers."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation
from django.utils.html import escape

from shop import views
from shop.tests.conftest import Buyer, page

LIMITED = escape(str(views.MSG_LOOKUPS_LIMITED))
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')


def fresh_buyer(standard, **client_kwargs) -> Buyer:
    buyer = Buyer(Client(**client_kwargs))
    assert buyer.choose_package(standard).status_code == 302
    return buyer


def test_a_429_before_the_31st_lookup_in_a_minute_from_one_address(standard, supplier,
                                                                   validate_calls, settings):
    """The attack: fresh sessions (each under its own limit) from one address."""
    settings.RECIPIENT_LOOKUP_RATE_PER_IP = "30/minute"
    statuses = []
    for n in range(31):
        buyer = fresh_buyer(standard, REMOTE_ADDR="203.0.113.7")
        statuses.append(buyer.enter_recipient(f"@probe_user_{n:03d}").status_code)
    assert 429 not in statuses[:30] and statuses[30] == 429
    assert len(validate_calls) == 30
    # Another address is not affected.
    assert fresh_buyer(standard, REMOTE_ADDR="203.0.113.8").enter_recipient(
        "@sandbox_ok").status_code == 302


def test_one_session_is_limited_sooner(buyer, standard, supplier, validate_calls, settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_SESSION = "10/minute"
    buyer.choose_package(standard)
    statuses = [buyer.enter_recipient(f"@probe_user_{n:03d}").status_code for n in range(11)]
    assert 429 not in statuses[:10] and statuses[10] == 429
    assert len(validate_calls) == 10


def test_once_limited_valid_unknown_and_malformed_get_the_same_answer(buyer, standard, supplier,
                                                                    validate_calls, settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_SESSION = "2/minute"
    buyer.choose_package(standard)
    buyer.enter_recipient("@probe_user_1")
    buyer.enter_recipient("@probe_user_2")
    answers = []
    for raw in ("@sandbox_ok", "@sandbox_invalid", "@probe_user_3", "not a name!"):
        response = buyer.enter_recipient(raw)
        assert response.status_code == 429
        html = page(response)
        assert LIMITED in html
        assert 'name="recipient"' in html  # the form is still there
        answers.append(CSRF.sub("", html.replace(escape(raw), "RAW")))
    assert len(set(answers)) == 1
    assert views.SESSION_RECIPIENT not in buyer.client.session
    assert len(validate_calls) == 2


def test_the_same_name_again_is_answered_from_the_cache(standard, supplier, validate_calls):
    for _ in range(5):
        assert fresh_buyer(standard).enter_recipient("@sandbox_ok").status_code == 302
        assert fresh_buyer(standard).enter_recipient("@sandbox_invalid").status_code == 400
    assert validate_calls == ["@sandbox_ok", "@sandbox_invalid"]


def test_behind_a_proxy_each_client_counts_by_its_forwarded_address(standard, supplier, settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_IP = "2/minute"
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    for n in range(2):
        fresh_buyer(standard, **proxy, HTTP_X_FORWARDED_FOR="203.0.113.7").enter_recipient(
            f"@probe_user_{n}")
    # A forged left-most entry does not make a new client.
    forged = fresh_buyer(standard, **proxy, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7")
    assert forged.enter_recipient("@sandbox_ok").status_code == 429
    other = fresh_buyer(standard, **proxy, HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert other.enter_recipient("@sandbox_ok").status_code == 302


def test_limited_answer_in_russian(buyer, standard, supplier, settings):
    settings.RECIPIENT_LOOKUP_RATE_PER_SESSION = "1/minute"
    buyer.choose_package(standard)
    buyer.enter_recipient("@probe_user_1")
    # override(): the request activates Russian for this thread; later tests expect English.
    with translation.override("en"):
        response = buyer.client.post(reverse("shop:recipient"), {"recipient": "@sandbox_ok"},
                                     HTTP_ACCEPT_LANGUAGE="ru")
    assert response.status_code == 429
    assert "Слишком много проверок" in page(response)


# --- The receipt e-mail: strict too ----------------------------------------------------------


@pytest.mark.parametrize(("email", "valid"), [
    ("buyer@example.com", True),
    ("ok@пример.рф", True),
    ('"\x01"@example.com', False),  # Django's validator takes a quoted local part with controls
    ('"buyer"@example.com', False),
    ("buyer@exa\u202emple.com", False),  # bidi override in the domain, also accepted by Django
    ("buyer\u200b@example.com", False),
])
def test_receipt_email_refuses_control_and_bidi_characters(email, valid):
    from shop.forms import ConfirmForm

    form = ConfirmForm({"token": "t", "payment_method": "sandbox", "buyer_email": email},
                       payment_methods=[("sandbox", "Sandbox")])
    assert form.is_valid() is valid
    if not valid:
        assert form.errors["buyer_email"] == ["Enter a valid e-mail address, or leave it empty."]
