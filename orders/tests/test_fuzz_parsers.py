"""Fuzzing (Hypothesis) of everything that reads outside input: recipients, amounts, payment notices.

Each parser may only answer or refuse in its own way (InvalidRecipientInput, a form error,
WebhookRejected, PaymentProviderError); anything else would be a 500 for a buyer or a webhook
the provider retries for days. Runs derandomized (the same examples every run, so CI is
stable) with 200 examples each; HYPOTHESIS_PROFILE=long runs many more, freshly random.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bots.handlers import MAX_AMOUNT_DIGITS, _quantity
from orders.exceptions import InvalidRecipientInput, PaymentProviderError, WebhookRejected
from orders.payments.base import PaymentNotice
from orders.payments.cryptopay import CryptoPayProvider, webhook_signature
from orders.payments.stripe_checkout import StripeCheckoutProvider
from orders.payments.ton import (
    TonPaymentProvider,
    _lt,
    _tx_key,
    ton_address_parse,
    ton_comment_normalize,
)
from orders.recipients import MAX_USER_ID, recipient_parse
from shop.forms import CustomAmountForm
from shop.models import Product

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
fuzz = hypothesis_settings(
    max_examples=5_000 if LONG else 200,
    derandomize=not LONG,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- Strategies ------------------------------------------------------------------------------

TRICKY = [
    "@", "t.me/", "https://t.me/", "telegram.me/", "/", "?", "#", "_", "0", "1", "9", "a", "Z",
    "sandbox_ok", "4503599627370496", "\u200b", "\u200d", "\ufeff", "\u00ad", "\u200e",
    "\u202e", "\u2066", "\u2069", "\x00", "\x1b", "\t", "\n", " ", "\u00a0", "１", "٣", "²",
    "ѕ", "İ", "ß", "\ud800", "\U0001f600", "\ue000", ",", ".", "'", "-", "+", "e", "E",
]
tricky_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=3)), max_size=20).map("".join),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=20), st.sampled_from(TRICKY),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
# Numbers and strings a provider might send as an amount or id, hostile ones included.
number_like = st.one_of(
    json_values,
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from(["1", "0", "-1", "1.5", "1e999999999", "NaN", "Infinity", "²", "٣", "1" * 5000,
                     "00012", " 12 ", "0x10", "1_000", "9" * 30]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)

# --- Recipient ---------------------------------------------------------------------------------

STRICT_RECIPIENT = re.compile(r"[1-9][0-9]{0,15}|@[A-Za-z][A-Za-z0-9_]{3,30}[A-Za-z0-9]")


@fuzz
@given(raw=tricky_text)
def test_recipient_parse_answers_in_the_strict_format_or_refuses(raw):
    try:
        parsed = recipient_parse(raw)
    except InvalidRecipientInput as exc:
        assert str(exc)
        return
    assert STRICT_RECIPIENT.fullmatch(parsed), parsed
    if not parsed.startswith("@"):
        assert 1 <= int(parsed) <= MAX_USER_ID
    assert recipient_parse(parsed) == parsed


@fuzz
@given(name=st.from_regex(r"[A-Za-z][A-Za-z0-9_]{3,30}[A-Za-z0-9]", fullmatch=True),
       invisible=st.lists(st.sampled_from("\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u00ad"),
                          max_size=3),
       prefix=st.sampled_from(["", "@", "https://t.me/", "t.me/"]))
def test_every_good_username_is_accepted_whatever_was_pasted_around_it(name, invisible, prefix):
    raw = "".join(invisible) + prefix + name + "".join(invisible)
    if len(raw) <= 64:
        assert recipient_parse(raw) == "@" + name


@fuzz
@given(raw=tricky_text, hidden=st.sampled_from(["\x00", "\x1b", "\x7f", "\u202e", "\u2066",
                                                "\u061c", "\ue000", "\ud800"]))
def test_control_and_bidi_characters_never_pass(raw, hidden):
    with pytest.raises(InvalidRecipientInput):
        recipient_parse("x" + raw[: len(raw) // 2] + hidden + raw[len(raw) // 2:] + "x")


# --- Amounts ---------------------------------------------------------------------------------

PRODUCT = Product(name="Telegram Stars", min_quantity=50, max_quantity=10_000)


@fuzz
@given(raw=st.one_of(tricky_text, st.integers().map(str)))
def test_custom_amount_form_gives_a_number_in_range_or_a_message(raw):
    form = CustomAmountForm({"quantity": raw}, product=PRODUCT)
    if form.is_valid():
        quantity = form.cleaned_data["quantity"]
        assert type(quantity) is int and 50 <= quantity <= 10_000
    else:
        assert all(form.errors["quantity"])


@fuzz
@given(raw=st.one_of(tricky_text, st.integers().map(str), st.integers().map("{:,}".format)))
def test_bot_amount_is_a_small_number_or_none(raw):
    quantity = _quantity(raw)
    assert quantity is None or (type(quantity) is int and 0 <= quantity < 10**MAX_AMOUNT_DIGITS)


# --- Crypto Pay webhook ------------------------------------------------------------------------

CRYPTOPAY_TOKEN = "1234:fuzz-token"


@pytest.fixture
def cryptopay(settings) -> CryptoPayProvider:
    settings.CRYPTOPAY_TOKEN = CRYPTOPAY_TOKEN
    settings.CRYPTOPAY_NETWORK = "testnet"
    return CryptoPayProvider()


def _only_notices(result: Any) -> None:
    assert all(isinstance(notice, PaymentNotice) for notice in result)


@fuzz
@given(body=st.binary(max_size=300),
       headers=st.dictionaries(st.sampled_from(["crypto-pay-api-signature", "Crypto-Pay-Api-Signature",
                                                "content-type", "x"]), st.text(max_size=70)))
def test_cryptopay_unsigned_anything_is_rejected(cryptopay, body, headers):
    with pytest.raises(WebhookRejected):
        cryptopay.verify_webhook(headers=headers, body=body)


def _cryptopay_verify(provider: CryptoPayProvider, body: bytes) -> None:
    signature = webhook_signature(CRYPTOPAY_TOKEN, body)
    try:
        _only_notices(provider.verify_webhook(headers={"crypto-pay-api-signature": signature},
                                              body=body))
    except WebhookRejected:
        pass


@fuzz
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                      json_values.map(lambda v: json.dumps(v).encode("utf-16"))))
def test_cryptopay_signed_garbage_is_rejected_not_a_crash(cryptopay, body):
    _cryptopay_verify(cryptopay, body)


cryptopay_invoices = st.fixed_dictionaries(
    {},
    optional={
        "invoice_id": number_like, "status": st.sampled_from(["paid", "active", None, 1]),
        "currency_type": st.sampled_from(["crypto", "fiat", None, 7]),
        "asset": st.sampled_from(["USDT", "TON", "BTC", "", "usdt", "XXX", None, 5]),
        "fiat": st.sampled_from(["USD", "EUR", "JPY", "", None, "ZZZ"]),
        "amount": number_like, "paid_at": st.one_of(json_values, st.datetimes().map(str)),
        "payload": json_values,
    },
)


@fuzz
@given(update=st.fixed_dictionaries(
    {"update_type": st.sampled_from(["invoice_paid", "other", None])},
    optional={"update_id": json_values, "payload": st.one_of(cryptopay_invoices, json_values)},
))
def test_cryptopay_signed_updates_of_every_shape_are_notices_or_rejected(cryptopay, update):
    update["request_date"] = timezone.now().isoformat()
    _cryptopay_verify(cryptopay, json.dumps(update).encode())


@fuzz
@given(request_date=st.one_of(json_values, st.datetimes().map(str),
                              st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())))
def test_cryptopay_any_request_date_is_read_or_rejected(cryptopay, request_date):
    body = json.dumps({"update_type": "invoice_paid", "request_date": request_date,
                       "payload": {"invoice_id": 1, "status": "paid", "asset": "USDT",
                                   "amount": "1"}}, default=str).encode()
    _cryptopay_verify(cryptopay, body)


# --- Stripe webhook ----------------------------------------------------------------------------

STRIPE_SECRET = "whsec_fuzz"


@pytest.fixture
def stripe_provider(settings) -> StripeCheckoutProvider:
    settings.STRIPE_SECRET_KEY = "sk_test_fuzz"
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.STRIPE_LIVEMODE = False
    return StripeCheckoutProvider()


def _stripe_signature(body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(STRIPE_SECRET.encode(), f"{timestamp}.".encode() + body,
                      hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _stripe_verify(provider: StripeCheckoutProvider, body: bytes, signature: str) -> None:
    try:
        _only_notices(provider.verify_webhook(headers={"Stripe-Signature": signature}, body=body))
    except WebhookRejected:
        pass


@fuzz
@given(body=st.binary(max_size=300), signature=st.one_of(st.text(max_size=120), st.sampled_from(
    ["t=1,v1=00", "t=,v1=", "v1=" + "0" * 64, "t=99999999999999999999,v1=" + "0" * 64, ","])))
def test_stripe_unsigned_anything_is_rejected(stripe_provider, body, signature):
    with pytest.raises(WebhookRejected):
        stripe_provider.verify_webhook(headers={"Stripe-Signature": signature}, body=body)


@fuzz
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_stripe_signed_garbage_is_rejected_not_a_crash(stripe_provider, body):
    _stripe_verify(stripe_provider, body, _stripe_signature(body))


stripe_sessions = st.fixed_dictionaries(
    {"object": st.sampled_from(["checkout.session", "payment_intent", None])},
    optional={
        "id": st.one_of(st.just("cs_test_1"), json_values),
        "payment_status": st.sampled_from(["paid", "unpaid", None, 3]),
        "status": st.sampled_from(["complete", "expired", "open", None]),
        "amount_total": number_like, "currency": st.one_of(st.sampled_from(["usd", "eur"]), json_values),
        "client_reference_id": json_values, "metadata": json_values,
        "payment_intent": json_values, "livemode": json_values, "expires_at": number_like,
    },
)


@fuzz
@given(event=st.fixed_dictionaries(
    {"object": st.just("event"), "id": st.just("evt_1"), "livemode": st.just(False),
     "type": st.sampled_from(["checkout.session.completed", "checkout.session.expired",
                              "checkout.session.async_payment_succeeded",
                              "checkout.session.async_payment_failed", "charge.refunded"]),
     "data": st.fixed_dictionaries({"object": st.one_of(stripe_sessions, json_values)})},
    optional={"created": number_like, "api_version": json_values},
))
def test_stripe_signed_events_of_every_shape_are_notices_or_rejected(stripe_provider, event):
    body = json.dumps(event).encode()
    _stripe_verify(stripe_provider, body, _stripe_signature(body))


# --- TON transactions ----------------------------------------------------------------------------


@pytest.fixture
def ton(settings) -> tuple[TonPaymentProvider, Any]:
    return TonPaymentProvider(), ton_address_parse(settings.TON_WALLET_ADDRESS)


COMMENT = "ORD-000001-ABCDEF"


def _addresses(wallet) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(wallet.raw), st.just("0:" + "00" * 32), st.just("-1:" + "ab" * 32),
                     st.just("0QA2M1klAJscfjmPxKhBwjLTmCQWCecQ78pcA0Av1xT2ZjfF"),
                     st.text(max_size=50), json_values)


def _transactions(wallet) -> st.SearchStrategy[dict[str, Any]]:
    in_msg = st.fixed_dictionaries({}, optional={
        "source": _addresses(wallet), "destination": _addresses(wallet), "value": number_like,
        "bounced": json_values,
        "message_content": st.one_of(json_values, st.fixed_dictionaries({"decoded": st.one_of(
            json_values, st.fixed_dictionaries({
                "type": st.sampled_from(["text_comment", "binary_comment", None]),
                "comment": st.one_of(st.sampled_from([COMMENT, f" {COMMENT}\u200b", ""]),
                                     tricky_text, json_values)}))})),
    })
    return st.fixed_dictionaries({}, optional={
        "hash": st.one_of(st.just("ab" * 32), st.just("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="),
                          json_values),
        "lt": number_like, "now": number_like, "account": _addresses(wallet),
        "in_msg": st.one_of(in_msg, json_values), "out_msgs": json_values,
        "description": st.one_of(json_values, st.fixed_dictionaries({"aborted": json_values})),
    })


@fuzz
@given(data=st.data())
def test_ton_transactions_of_every_shape_give_a_notice_none_or_a_provider_error(ton, data):
    provider, wallet = ton
    tx = data.draw(st.one_of(_transactions(wallet), st.dictionaries(st.text(max_size=10),
                                                                      json_values)))
    address_book = data.draw(st.one_of(st.just({}), st.dictionaries(st.text(max_size=50),
                                                                       json_values, max_size=3)))
    for read in (lambda: _tx_key(tx.get("hash")), lambda: _lt(tx)):
        try:
            read()
        except PaymentProviderError:
            pass
    try:
        notice = provider._notice(tx, "ab" * 32, "testnet:wallet", wallet, address_book,
                                  {COMMENT})
    except PaymentProviderError:
        return
    assert notice is None or isinstance(notice, PaymentNotice)
    if notice is not None:
        assert notice.amount_minor and notice.amount_minor > 0
        assert notice.comment in ("", COMMENT)


@fuzz
@given(text=tricky_text)
def test_ton_comment_normalize_is_idempotent_and_drops_zero_width(text):
    normalised = ton_comment_normalize(text)
    assert ton_comment_normalize(normalised) == normalised
    assert not set("\u200b\u200c\u200d\u2060\ufeff") & set(normalised)
    assert normalised == normalised.strip()


# --- What fuzzing found, pinned ------------------------------------------------------------------


def _paid_update(**invoice: Any) -> dict[str, Any]:
    return {"update_type": "invoice_paid", "request_date": timezone.now().isoformat(),
            "payload": {"invoice_id": 1, "status": "paid", "asset": "USDT", "amount": "1",
                        **invoice}}


@pytest.mark.parametrize("body", [
    pytest.param(lambda: json.dumps(_paid_update()).encode("utf-16"), id="utf-16 JSON"),
    pytest.param(lambda: json.dumps(_paid_update(invoice_id="²")).encode(), id="superscript id"),
    pytest.param(lambda: json.dumps(_paid_update(invoice_id="1" * 5000)).encode(), id="huge id"),
    pytest.param(lambda: json.dumps(_paid_update(amount="1e999999999")).encode(), id="overflow"),
    pytest.param(lambda: json.dumps(_paid_update(amount="1e99999")).encode(), id="huge amount"),
    pytest.param(lambda: b"[" * 100_000 + b"]" * 100_000, id="deep nesting"),
])
def test_cryptopay_signed_bodies_that_crashed_are_rejected(cryptopay, body):
    payload = body()
    with pytest.raises(WebhookRejected):
        cryptopay.verify_webhook(
            headers={"crypto-pay-api-signature": webhook_signature(CRYPTOPAY_TOKEN, payload)},
            body=payload)


@pytest.mark.parametrize(("created", "metadata"), [
    (10**20, {}), (-(10**15), {}), (1_700_000_000, ["order_reference", "ORD-000001"]),
])
def test_stripe_signed_events_that_crashed_are_read(stripe_provider, created, metadata):
    event = {"object": "event", "id": "evt_1", "livemode": False, "created": created,
             "type": "checkout.session.completed",
             "data": {"object": {"object": "checkout.session", "id": "cs_test_1",
                                 "payment_status": "paid", "metadata": metadata,
                                 "amount_total": 850, "currency": "usd"}}}
    body = json.dumps(event).encode()
    [notice] = stripe_provider.verify_webhook(headers={"Stripe-Signature": _stripe_signature(body)},
                                              body=body)
    assert notice.amount_minor == 850 and notice.order_reference == ""


@pytest.mark.parametrize("change", [
    {"in_msg": [1]}, {"description": "x"}, {"now": 10**30}, {"now": "abc"}, {"lt": float("inf")},
    {"in_msg.value": float("inf")}, {"in_msg.value": 1.7}, {"in_msg.value": True},
    {"in_msg.value": "1e3"}, {"in_msg.value": " 12 "}, {"in_msg.value": "1_000"},
    {"in_msg.value": "٣"}, {"in_msg.source": [1]},
], ids=repr)
def test_ton_transactions_that_crashed_or_were_misread_are_refused(ton, change):
    provider, wallet = ton
    tx: dict[str, Any] = {
        "account": wallet.raw, "now": 1_700_000_000, "lt": 5,
        "in_msg": {"source": "0:" + "00" * 32, "destination": wallet.raw, "value": "1000",
                   "message_content": {"decoded": {"type": "text_comment", "comment": COMMENT}}}}
    for path, value in change.items():
        if path.startswith("in_msg."):
            tx["in_msg"][path.removeprefix("in_msg.")] = value
        else:
            tx[path] = value
    with pytest.raises(PaymentProviderError):
        _lt(tx)
        provider._notice(tx, "ab" * 32, "testnet:wallet", wallet, {}, {COMMENT})


@pytest.mark.parametrize("address_book", [{"0:" + "00" * 32: "not an object"}, {}])
def test_ton_garbled_comment_or_address_book_still_reaches_the_inbox(ton, address_book):
    provider, wallet = ton
    tx = {"account": wallet.raw, "now": 1_700_000_000, "lt": 5,
          "in_msg": {"source": "0:" + "00" * 32, "destination": wallet.raw, "value": "1000",
                     "message_content": [1]}}
    notice = provider._notice(tx, "ab" * 32, "testnet:wallet", wallet, address_book, {COMMENT})
    assert notice is not None and notice.kind == "ignored" and notice.amount_minor == 1000
