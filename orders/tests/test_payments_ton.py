"""TON payments against the fake toncenter over real HTTP: quotes, the chain poller, the inbox."""

import base64
import hashlib
import importlib
import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.cache import cache
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from fakes.ton_fixtures import *  # noqa: F403 - the fake toncenter and the shop wired to it
from fakes.ton_fixtures import FakeToncenter
from fakes.toncenter import default_buyer, default_wallet, friendly_address
from orders import services
from orders.exceptions import PaymentProviderError, WebhookRejected
from orders.models import Order, OrderEvent, Payment, PaymentEvent, PaymentInvoice, ProviderCursor
from orders.models import OrderStatus as S
from orders.payments import payment_provider_get
from orders.payments.services import invoice_open, payments_poll
from orders.payments.ton import (
    DEFAULTS,
    TonPaymentProvider,
    TonCursor,
    cursor_get,
    cursor_set,
    ton_account,
    ton_address_parse,
    ton_comment_normalize,
    ton_nanotons_for,
    ton_qr_data_uri,
    ton_qr_png,
)
from orders.payments.ton_rates import ton_rate

# make_order prices at 8.50 USD; at 3 USD per TON that is 2.8333… TON, rounded up.
RATE = Decimal("3")
DUE = 2_833_333_334
TRANSACTIONS = "/api/v3/transactions"


@pytest.fixture
def chain(ton_shop: FakeToncenter) -> FakeToncenter:
    ton_shop.set_rate(RATE)
    return ton_shop


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    jobs: list[int] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", jobs.append)
    return jobs


@pytest.fixture
def ton_order(make_order):
    def make(**fields) -> Order:
        order = make_order(S.AWAITING_PAYMENT, **fields)
        Order.objects.filter(pk=order.pk).update(payment_method="ton")  # set-up only
        order.refresh_from_db()
        return order

    return make


@pytest.fixture
def invoice(chain, ton_order) -> PaymentInvoice:
    return invoice_open(order=ton_order())


def order_of(invoice: PaymentInvoice) -> Order:
    return Order.objects.get(pk=invoice.order_id)


def cursor_lt() -> int:
    """Where the poller stands on the configured network and wallet."""
    return cursor_get(ton_account()).lt


# --- Quotes ---------------------------------------------------------------------------------


def test_quote_locks_the_price_in_nanotons_with_a_comment_and_a_link(chain, ton_order):
    order = ton_order()
    before = timezone.now()
    invoice = invoice_open(order=order)
    assert (invoice.amount_minor, invoice.currency, invoice.exponent) == (DUE, "TON", 9)
    assert invoice.rate == Decimal("3.000000000")
    assert re.fullmatch(rf"{order.reference}-[2-9A-HJKMNP-Z]{{4}}", invoice.comment)
    assert invoice.pay_url == (f"ton://transfer/{chain.wallet}?amount={DUE}"
                               f"&text={invoice.comment}")
    assert before + timedelta(minutes=15) <= invoice.expires_at <= timezone.now() + timedelta(minutes=15)
    assert invoice.raw["rate_sources"] == {"coingecko": "3.0", "tonapi": "3.0"}
    # The same quote is shown again while it lasts, even if the market moves.
    chain.set_rate("4")
    assert invoice_open(order=Order.objects.get(pk=order.pk)).pk == invoice.pk


def test_each_invoice_gets_its_own_comment(chain, ton_order):
    order = ton_order()
    provider = TonPaymentProvider()
    comments = {provider.create_invoice(order, expires_at=order.expires_at).comment
                for _ in range(20)}
    assert len(comments) == 20


def test_comment_is_url_encoded_in_the_link(chain, ton_order):
    order = ton_order()
    Order.objects.filter(pk=order.pk).update(reference="ORD 1/+&")
    order.refresh_from_db()
    quote = TonPaymentProvider().create_invoice(order, expires_at=order.expires_at)
    assert quote.pay_url.endswith(f"&text=ORD%201%2F%2B%26-{quote.comment[-4:]}")


def test_amount_is_rounded_up_to_the_nanoton():
    assert ton_nanotons_for(Decimal("8.50"), Decimal("3")) == DUE
    assert ton_nanotons_for(Decimal("10.00"), Decimal("5")) == 2_000_000_000
    # An inexact quotient just above a whole nanoton is still rounded up.
    assert ton_nanotons_for(Decimal("1.000000001"), Decimal("1.000000000000000000000000001")) == 1_000_000_001


def test_qr_code_is_an_svg_data_uri(chain, invoice):
    uri = ton_qr_data_uri(invoice.pay_url)
    prefix = "data:image/svg+xml;base64,"
    assert uri.startswith(prefix)
    svg = base64.b64decode(uri.removeprefix(prefix)).decode()
    assert svg.startswith("<svg") and "<path" in svg
    assert invoice.comment not in svg  # the link is encoded in the modules, not written out
    assert ton_qr_png(invoice.pay_url).startswith(b"\x89PNG\r\n")


def test_rate_is_cached_briefly(chain, ton_order):
    invoice_open(order=ton_order())
    invoice_open(order=ton_order())
    assert len(chain.requests("/api/v3/simple/price")) == 1
    assert len(chain.requests("/v2/rates")) == 1


# --- Rate sources ---------------------------------------------------------------------------


def test_one_rate_source_down_uses_the_other(chain, ton_order):
    chain.set_rate(source="coingecko", down=True)
    invoice = invoice_open(order=ton_order())
    assert invoice.amount_minor == DUE
    assert invoice.raw["rate_sources"] == {"tonapi": "3.0"}


def test_rate_is_the_median_of_the_sources(chain):
    chain.set_rate("3.00", source="coingecko")
    chain.set_rate("3.06", source="tonapi")
    rate = ton_rate("usd")
    assert rate.rate == Decimal("3.030000000")
    assert rate.sources == {"coingecko": "3.0", "tonapi": "3.06"}


def test_sources_that_disagree_stop_quoting(chain, ton_order):
    chain.set_rate("3.00", source="coingecko")
    chain.set_rate("4.00", source="tonapi")
    with pytest.raises(PaymentProviderError, match="disagree"):
        invoice_open(order=ton_order())
    assert not PaymentInvoice.objects.exists()


def test_no_rate_source_answering_is_a_clear_error_and_no_invoice(chain, ton_order):
    chain.set_rate(down=True)
    with pytest.raises(PaymentProviderError, match="No TON rate source answered"):
        invoice_open(order=ton_order())
    assert not PaymentInvoice.objects.exists()


def test_unreachable_rate_sources_are_a_clear_error(chain, ton_order, settings):
    settings.TON_RATE_COINGECKO_URL = "http://127.0.0.1:9/simple/price"  # nothing listens there
    settings.TON_RATE_TONAPI_URL = ""  # turned off
    with pytest.raises(PaymentProviderError, match="No TON rate source answered"):
        invoice_open(order=ton_order())


# --- Paying ---------------------------------------------------------------------------------


def test_payment_by_comment_is_paid_and_delivered_once(chain, catalog, sandbox_supplier, settings,
                                                       enqueued, django_capture_on_commit_callbacks):
    settings.SUPPLIER_BASE_URL = sandbox_supplier.url
    settings.SUPPLIER_API_KEY = sandbox_supplier.api_key
    settings.SUPPLIER_TIMEOUT = 2.0
    _, recipient = services.recipient_validate(raw="@sandbox_ok")
    order = services.order_create(channel="web", product=catalog, recipient_input="@sandbox_ok",
                                  recipient=recipient, payment_method="ton",
                                  package_id=catalog.packages.get(quantity=500).pk)
    invoice = invoice_open(order=order)
    chain.transfer(invoice.comment, invoice.amount_minor)
    with django_capture_on_commit_callbacks(execute=True):
        assert payments_poll()["accepted"] == 1
    order.refresh_from_db()
    assert order.status == S.PAID and enqueued == [order.pk]
    payment = Payment.objects.get(order=order)
    assert (payment.provider, payment.currency) == ("ton", "TON")
    assert payment.amount == Decimal(invoice.amount_minor).scaleb(-9)
    assert payment.provider_reference == base64.b64decode(chain.transactions()[0]["hash"]).hex()
    assert services.order_fulfil(order_id=order.pk).status == S.DELIVERED
    # The same transaction read again changes nothing, and the job run again places nothing.
    with django_capture_on_commit_callbacks(execute=True):
        payments_poll()
    services.order_fulfil(order_id=order.pk)
    assert sandbox_supplier.topup_calls(order.idempotency_key) == 1
    assert enqueued == [order.pk]


def test_the_notice_carries_the_transaction(chain, invoice):
    tx = chain.transfer(invoice.comment, DUE)
    [notice] = TonPaymentProvider().poll([invoice])
    assert notice.event_key == base64.b64decode(tx["hash"]).hex()
    assert (notice.kind, notice.comment, notice.amount_minor, notice.currency) == (
        "paid", invoice.comment, DUE, "TON")
    assert int(notice.occurred_at.timestamp()) == tx["now"]
    assert notice.data["source_friendly"] == default_buyer("testnet")
    assert notice.data["lt"] == tx["lt"]
    # The comment names the order; the account names network and wallet.
    assert notice.order_reference == invoice.order.reference
    assert notice.account == invoice.account == f"testnet:{ton_address_parse(chain.wallet).raw}"


def test_a_comment_whose_order_reference_is_not_its_invoices_order_goes_to_review(
        chain, invoice, enqueued):
    Order.objects.filter(pk=invoice.order_id).update(reference="ORD-RENAMED")  # set-up only
    chain.transfer(invoice.comment, DUE)
    payments_poll()
    event = PaymentEvent.objects.get()
    assert event.outcome == PaymentEvent.Outcome.REVIEW
    assert event.data["mismatch"] == {
        "notice_order_reference": invoice.order.reference, "invoice_order_reference": "ORD-RENAMED",
        "invoice": invoice.comment, "account": invoice.account, "payment_event_id": event.pk}
    assert order_of(invoice).status == S.AWAITING_PAYMENT and not Payment.objects.exists()


def test_the_same_transaction_polled_five_times_pays_once(chain, invoice, enqueued,
                                                          django_capture_on_commit_callbacks):
    chain.transfer(invoice.comment, DUE)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            payments_poll()
    assert PaymentEvent.objects.count() == 1 and Payment.objects.count() == 1
    assert OrderEvent.objects.filter(order_id=invoice.order_id, to_status=S.PAID).count() == 1
    assert enqueued == [invoice.order_id]


@pytest.mark.django_db(transaction=True)
def test_concurrent_polls_pay_once(chain, ton_order, enqueued):
    invoice = invoice_open(order=ton_order())
    chain.transfer(invoice.comment, DUE)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            barrier.wait()
            payments_poll()
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Payment.objects.count() == 1 and PaymentEvent.objects.count() == 1
    assert OrderEvent.objects.filter(order_id=invoice.order_id, to_status=S.PAID).count() == 1
    assert enqueued == [invoice.order_id]


@pytest.mark.parametrize("flags", [
    {"bounced": True}, {"aborted": True}, {"with_out_msg": True}, {"aborted": True, "with_out_msg": True},
    {"outgoing": True},
])
def test_transactions_that_leave_no_money_with_us_are_ignored(chain, invoice, enqueued, flags):
    chain.transfer(invoice.comment, DUE, **flags)
    assert TonPaymentProvider().poll([invoice]) == []
    payments_poll()
    assert not PaymentEvent.objects.exists() and not Payment.objects.exists()
    assert order_of(invoice).status == S.AWAITING_PAYMENT
    # The cursor moved past them: they are not read again.
    assert cursor_lt() == int(chain.transactions()[-1]["lt"])


def test_payment_to_another_wallet_is_not_ours(chain, invoice, enqueued):
    chain.transfer(invoice.comment, DUE, destination=default_buyer("testnet"))
    payments_poll()
    assert not PaymentEvent.objects.exists()
    assert order_of(invoice).status == S.AWAITING_PAYMENT


@pytest.mark.parametrize("comment", ["ORD-999999-ABCD", None, "", "hello"])
def test_money_with_a_comment_no_invoice_claims_is_kept_for_the_operator(chain, invoice, enqueued,
                                                                        comment):
    chain.transfer(comment, DUE)
    payments_poll()
    event = PaymentEvent.objects.get()
    assert (event.kind, event.outcome, event.amount_minor) == ("ignored", "ignored", DUE)
    assert event.data["comment"] == comment and event.data["source_friendly"] == default_buyer("testnet")
    assert not Payment.objects.exists()
    assert order_of(invoice).status == S.AWAITING_PAYMENT


def test_a_case_changed_comment_does_not_match(chain, invoice, enqueued):
    chain.transfer(invoice.comment.lower(), DUE)
    payments_poll()
    assert PaymentEvent.objects.get().outcome == "ignored"
    assert order_of(invoice).status == S.AWAITING_PAYMENT


def test_comment_with_zero_width_characters_and_spaces_matches(chain, invoice, enqueued):
    sneaky = f" \u200b{invoice.comment[:4]}\u200d{invoice.comment[4:]}\ufeff\n"
    chain.transfer(sneaky, DUE)
    payments_poll()
    assert order_of(invoice).status == S.PAID
    assert ton_comment_normalize(sneaky) == invoice.comment


def test_underpayment_goes_to_review(chain, invoice, enqueued):
    chain.transfer(invoice.comment, DUE - 1)
    payments_poll()
    order = order_of(invoice)
    assert order.status == S.REVIEW and "Underpaid" in order.status_reason
    assert Payment.objects.get(order=order).amount == Decimal(DUE - 1).scaleb(-9)
    assert enqueued == []


def test_overpayment_is_fulfilled_and_the_excess_recorded(chain, invoice, enqueued,
                                                          django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        chain.transfer(invoice.comment, DUE + 500_000_000)
        payments_poll()
    order = order_of(invoice)
    assert order.status == S.PAID and enqueued == [order.pk]
    assert Payment.objects.get(order=order).excess_minor == 500_000_000


def test_a_second_payment_for_a_paid_invoice_is_recorded_for_a_refund(chain, invoice, enqueued,
                                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        chain.transfer(invoice.comment, DUE)
        payments_poll()
        chain.transfer(invoice.comment, DUE)
        payments_poll()
    assert Payment.objects.filter(order_id=invoice.order_id).count() == 2
    assert OrderEvent.objects.filter(order_id=invoice.order_id,
                                     reason__contains="Extra payment").exists()
    assert enqueued == [invoice.order_id]


def late(invoice: PaymentInvoice) -> int:
    """A block time five minutes after the quote ran out, with the order expired meanwhile."""
    services.orders_expire(now=order_of(invoice).expires_at + timedelta(seconds=1))
    return int((invoice.expires_at + timedelta(minutes=5)).timestamp())


def test_late_payment_covering_todays_price_is_fulfilled(chain, invoice, enqueued):
    chain.transfer(invoice.comment, DUE, now=late(invoice))
    chain.set_rate("3.01")  # TON got dearer: the same TON buys more than the price now
    cache.clear()
    payments_poll()
    order = order_of(invoice)
    assert order.status == S.PAID and "expired" in order.status_reason


def test_late_payment_short_of_todays_price_goes_to_review(chain, invoice, enqueued):
    chain.transfer(invoice.comment, DUE, now=late(invoice))
    chain.set_rate("2.50")  # TON got cheaper: today the order costs 3.4 TON
    cache.clear()
    payments_poll()
    order = order_of(invoice)
    assert order.status == S.REVIEW and "no longer covers" in order.status_reason
    assert "3.400000000" in order.status_reason
    assert enqueued == []


def test_requote_is_todays_amount(chain, invoice):
    chain.set_rate("2.50")
    cache.clear()
    assert TonPaymentProvider().requote_minor(invoice) == 3_400_000_000


# --- The cursor -----------------------------------------------------------------------------


def test_seen_transactions_are_not_read_again(chain, invoice, enqueued):
    """A transaction is read until the inbox holds it, then the cursor passes it for good."""
    first = chain.transfer("not ours", 1)
    payments_poll()  # read and stored
    assert cursor_lt() == 0
    payments_poll()  # read once more, found in the inbox: the cursor passes it
    assert cursor_lt() == int(first["lt"])
    second = chain.transfer(invoice.comment, DUE)
    for _ in range(3):
        payments_poll()
    starts = [r["query"].get("start_lt") for r in chain.requests(TRANSACTIONS)]
    # Each read starts with the transaction the cursor stands on, to check the chain has it.
    assert starts == [None, None, *[tx["lt"] for tx in (first, first, second)]]
    assert all(r["query"]["sort"] == "asc" for r in chain.requests(TRANSACTIONS))
    assert all(r["query"]["account"] == ton_address_parse(chain.wallet).raw
               for r in chain.requests(TRANSACTIONS))
    assert order_of(invoice).status == S.PAID and PaymentEvent.objects.count() == 2


def test_the_first_read_skips_history_older_than_our_invoices(chain, ton_order, enqueued):
    chain.transfer("before the shop", 7, now=int(timezone.now().timestamp()) - 86_400)
    payments_poll()  # no invoice yet: read from ten minutes ago
    invoice = invoice_open(order=ton_order())
    paid = chain.transfer(invoice.comment, DUE)
    payments_poll()
    [first, second] = chain.requests(TRANSACTIONS)
    assert abs(int(first["query"]["start_utime"]) - (timezone.now().timestamp() - 600)) < 30
    assert int(second["query"]["start_utime"]) == int(
        (invoice.created_at - timedelta(minutes=10)).timestamp())
    assert order_of(invoice).status == S.PAID
    # The old transfer never reached the inbox; only the payment did.
    assert [event.data["lt"] for event in PaymentEvent.objects.all()] == [paid["lt"]]


def test_cursor_waits_for_the_inbox(chain, invoice):
    """Notices read but never stored (a crash before the inbox) are read again next time."""
    tx = chain.transfer(invoice.comment, DUE)
    provider = TonPaymentProvider()
    assert len(provider.poll([invoice])) == 1
    assert len(provider.poll([invoice])) == 1  # not stored: read again
    assert cursor_lt() == 0
    payments_poll()
    assert order_of(invoice).status == S.PAID
    assert provider.poll([invoice]) == []
    assert cursor_lt() == int(tx["lt"])


def test_all_pages_are_read(chain, ton_order, settings, enqueued):
    settings.TON_POLL_PAGE_SIZE = 2
    invoices = [invoice_open(order=ton_order()) for _ in range(5)]
    for invoice in invoices:
        chain.transfer(invoice.comment, DUE)
    assert payments_poll()["accepted"] == 5
    assert Order.objects.filter(status=S.PAID).count() == 5
    assert len(chain.requests(TRANSACTIONS)) == 3


def test_a_failed_first_page_is_an_error(chain, invoice):
    chain.transfer(invoice.comment, DUE)
    TonPaymentProvider().poll([])  # the network check is cached from here on
    chain.fault(500)
    with pytest.raises(PaymentProviderError, match="HTTP 500"):
        TonPaymentProvider().poll([invoice])
    chain.fault(500)
    assert payments_poll()["accepted"] == 0  # logged; the other providers still run
    assert cursor_lt() == 0 and not PaymentEvent.objects.exists()
    assert payments_poll()["accepted"] == 1  # toncenter is back


def test_a_failed_later_page_keeps_what_was_read_and_resumes(chain, ton_order, settings, enqueued):
    settings.TON_POLL_PAGE_SIZE = 2
    invoices = [invoice_open(order=ton_order()) for _ in range(3)]
    transfers = [chain.transfer(invoice.comment, DUE) for invoice in invoices]
    TonPaymentProvider().poll([])  # the network check is cached from here on
    chain.fault(429, skip=1)  # the first page answers, the second is rate limited
    assert payments_poll()["accepted"] == 2
    assert cursor_lt() == 0  # the next poll re-reads both (now in the inbox) and the third
    assert payments_poll()["accepted"] == 1
    assert Order.objects.filter(status=S.PAID).count() == 3
    assert cursor_lt() == int(transfers[1]["lt"])
    assert payments_poll()["accepted"] == 0
    assert cursor_lt() == int(transfers[2]["lt"])


def test_a_cursor_ahead_of_a_restarted_chain_is_rewound_and_payments_are_found_again(
        chain, invoice, enqueued, caplog):
    # The shop reads past two transactions of its own (outgoing), then the fake restarts.
    chain.transfer(None, 1, outgoing=True)
    last = chain.transfer(None, 1, outgoing=True)
    payments_poll()
    assert cursor_lt() == int(last["lt"])
    chain.reset()
    chain.set_rate(RATE)
    paid = chain.transfer(invoice.comment, DUE)
    assert int(paid["lt"]) < cursor_lt()  # the new chain is behind where the shop stopped
    assert payments_poll()["accepted"] == 1
    assert order_of(invoice).status == S.PAID
    assert "which toncenter's chain does not have" in caplog.text
    payments_poll()
    assert cursor_get(ton_account()) == TonCursor(
        lt=int(paid["lt"]), tx_hash=base64.b64decode(paid["hash"]).hex(),
        stored=f"{paid['lt']}:{base64.b64decode(paid['hash']).hex()}")
    # Rewound to the history start, then forward again: never another read than asc.
    assert all(r["query"]["sort"] == "asc" for r in chain.requests(TRANSACTIONS))


def test_a_cursor_on_a_transaction_the_chain_does_not_have_is_rewound(chain, invoice, enqueued):
    """A chain that already passed the cursor's lt, with another transaction at that lt.

    As after a restart of a real chain's indexer onto another chain: the lt alone would look
    fine, and the payment before it would never be read.
    """
    paid = chain.transfer(invoice.comment, DUE)
    later = chain.transfer(None, 1, outgoing=True)
    another_chains_tx = "0" * 64
    ProviderCursor.objects.create(provider="ton", account=ton_account(),
                                  value=f"{later['lt']}:{another_chains_tx}")
    assert int(paid["lt"]) < int(later["lt"])
    assert payments_poll()["accepted"] == 1
    assert order_of(invoice).status == S.PAID


def test_cursor_and_invoices_are_kept_per_network_and_wallet(chain, ton_order, settings, enqueued):
    first_wallet = chain.wallet
    second_wallet = friendly_address(0, hashlib.sha256(b"the shop's second wallet").digest(),
                                     testnet=True, bounceable=False)
    settings.TON_WALLET_ADDRESS = second_wallet
    order = ton_order()
    on_second = invoice_open(order=order)
    assert on_second.account == f"testnet:{ton_address_parse(second_wallet).raw}"
    assert on_second.pay_url.startswith(f"ton://transfer/{second_wallet}?")
    paid = chain.transfer(on_second.comment, DUE, destination=second_wallet)

    # Back on the first wallet, the poller reads past later transactions of its own.
    settings.TON_WALLET_ADDRESS = first_wallet
    chain.transfer(None, 1, outgoing=True)
    mine = chain.transfer(None, 1, outgoing=True)
    payments_poll()
    assert order_of(on_second).status == S.AWAITING_PAYMENT  # not this wallet's transaction
    assert cursor_lt() == int(mine["lt"]) > int(paid["lt"])
    # The order's quote on the second wallet is not reused while the first one is read.
    on_first = invoice_open(order=Order.objects.get(pk=order.pk))
    assert on_first.pk != on_second.pk and on_first.account == ton_account()

    # On the second wallet again, its own cursor starts before its invoices: the payment is found.
    settings.TON_WALLET_ADDRESS = second_wallet
    assert payments_poll()["accepted"] == 1
    assert order_of(on_second).status == S.PAID
    assert Payment.objects.get().invoice_id == on_second.pk
    assert set(ProviderCursor.objects.filter(provider="ton").values_list("account", flat=True)) == {
        f"testnet:{ton_address_parse(first_wallet).raw}",
        f"testnet:{ton_address_parse(second_wallet).raw}"}


def test_migration_gives_old_invoices_and_the_old_cursor_their_account(chain, ton_order, make_order):
    migration = importlib.import_module("orders.migrations.0005_invoice_accounts")
    ton = invoice_open(order=ton_order())
    stripe_invoice = PaymentInvoice.objects.create(
        order=make_order(), provider="stripe", provider_invoice_id="cs_test_abc", amount_minor=850,
        currency="USD", exponent=2, expires_at=ton.expires_at, raw={"livemode": False})
    crypto = PaymentInvoice.objects.create(
        order=make_order(), provider="cryptopay", provider_invoice_id="1001", amount_minor=850,
        currency="USD", exponent=2, expires_at=ton.expires_at)
    sandbox = invoice_open(order=make_order())
    PaymentInvoice.objects.update(account="")  # as 0004 left them
    # An lt of a chain of the past (0004's cursors kept no transaction hash).
    ProviderCursor.objects.create(provider="ton", account="", value="46999999999999")

    migration.accounts_fill(apps, None)

    def account(invoice: PaymentInvoice) -> str:
        return PaymentInvoice.objects.get(pk=invoice.pk).account

    assert account(ton) == ton_account()
    assert (account(stripe_invoice), account(sandbox), account(crypto)) == ("test", "sandbox", "")
    assert ProviderCursor.objects.get(provider="ton").account == ton_account()
    # The moved cursor is not on this (fresh) chain: the poller rewinds rather than trusting it.
    chain.transfer(ton.comment, DUE)
    payments_poll()
    assert order_of(ton).status == S.PAID


def test_cursor_compare_and_set(db):
    account = "testnet:0:" + "AB" * 32
    cursor = cursor_get(account)
    assert (cursor.lt, cursor.tx_hash, cursor.stored) == (0, "", "")
    assert cursor_set(account, expected=cursor.stored, lt=100, tx_hash="beef")
    assert not cursor_set(account, expected=cursor.stored, lt=200)  # another poller moved it first
    assert cursor_get(account) == TonCursor(lt=100, tx_hash="beef", stored="100:beef")
    assert not cursor_set(account, expected="100:beef", lt=50)  # never backwards
    assert ProviderCursor.objects.get(provider="ton", account=account).value == "100:beef"
    # A cursor stored before it carried the transaction's hash still reads.
    ProviderCursor.objects.filter(account=account).update(value="100")
    assert cursor_get(account) == TonCursor(lt=100, tx_hash="", stored="100")


# --- Network, keys, outages -----------------------------------------------------------------


@pytest.mark.parametrize(("toncenter_options", "configured", "served_id"), [
    ({"network": "mainnet"}, "testnet", -239),
    ({"network": "testnet"}, "mainnet", -3),
])
def test_polling_the_wrong_network_is_refused(chain, settings, toncenter_options, configured,
                                              served_id):
    # Wallet and settings agree on one network; the indexer serves the other.
    settings.TON_NETWORK = configured
    settings.TON_WALLET_ADDRESS = default_buyer(configured)
    with pytest.raises(PaymentProviderError, match=f"global id {served_id}"):
        TonPaymentProvider().poll([])
    assert not chain.requests(TRANSACTIONS)


def test_a_wallet_of_the_other_network_is_refused(chain, ton_order, settings):
    settings.TON_NETWORK = "mainnet"  # the configured wallet is a testnet one
    with pytest.raises(PaymentProviderError, match="testnet address but TON_NETWORK is mainnet"):
        invoice_open(order=ton_order())
    with pytest.raises(PaymentProviderError, match="testnet address"):
        TonPaymentProvider().poll([])


def test_a_raw_or_broken_wallet_address_is_refused(chain, ton_order, settings):
    settings.TON_WALLET_ADDRESS = ton_address_parse(chain.wallet).raw
    with pytest.raises(PaymentProviderError, match="user-friendly"):
        invoice_open(order=ton_order())
    settings.TON_WALLET_ADDRESS = chain.wallet[:-1] + ("A" if chain.wallet[-1] != "A" else "B")
    with pytest.raises(PaymentProviderError, match="checksum"):
        invoice_open(order=ton_order())


@pytest.mark.parametrize("toncenter_options", [{"network": "testnet", "api_key": "secret-key"}])
def test_the_api_key_is_sent(chain, invoice, settings, enqueued, toncenter_options):
    chain.transfer(invoice.comment, DUE)
    payments_poll()
    assert order_of(invoice).status == S.PAID
    settings.TON_API_KEY = "wrong"
    cache.clear()
    with pytest.raises(PaymentProviderError, match="401"):
        TonPaymentProvider().poll([])


def test_toncenter_down_is_a_provider_error(chain, settings):
    settings.TON_API_URL = "http://127.0.0.1:9/api/v3"
    with pytest.raises(PaymentProviderError, match="unreachable"):
        TonPaymentProvider().poll([])


# --- Webhooks and refunds -------------------------------------------------------------------


def test_there_is_no_webhook(chain, client):
    with pytest.raises(WebhookRejected):
        TonPaymentProvider().verify_webhook(headers={}, body=b"{}")
    response = client.post(reverse("orders:payment_webhook", args=["ton"]), data=b"{}",
                           content_type="application/json")
    assert response.status_code == 400
    assert not PaymentEvent.objects.exists()


def test_refund_is_by_hand_with_amount_and_sender(chain, invoice, enqueued):
    chain.transfer(invoice.comment, DUE)
    payments_poll()
    payment = Payment.objects.get()
    result = payment_provider_get("ton").refund(payment)
    assert not result.refunded
    assert result.message == (f"TON payments are refunded by hand: send 2.833333334 TON back "
                              f"to the sender {default_buyer('testnet')}")


def test_defaults_point_at_the_local_fake():
    assert DEFAULTS["TON_WALLET_ADDRESS"] == default_wallet("testnet")
    assert DEFAULTS["TON_NETWORK"] == "testnet"
    assert DEFAULTS["TON_API_URL"] == "http://127.0.0.1:8002/api/v3"


def test_address_forms():
    raw = "0:83DFD552E63729B472FCBCC8C45EBCC6691702558B68EC7527E1BA403A0F31A8"
    friendly = ton_address_parse("EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N")
    assert friendly.raw == raw and friendly.bounceable and not friendly.testnet
    assert friendly.same_account(ton_address_parse(raw.lower()))
    assert ton_address_parse(default_buyer("testnet")).testnet
    with pytest.raises(ValueError):
        ton_address_parse("EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2M")
