"""TON payments: one receiving wallet, a unique text comment per invoice, read from toncenter v3.

The buyer sends the quoted nanotons to TON_WALLET_ADDRESS with the invoice's comment. The
poller reads the wallet's transactions in logical-time (lt) order from a persisted cursor and
turns each one that brought money in into a PaymentNotice keyed by its transaction hash, so the
inbox (orders.payments.services) stores and applies it exactly once. TON has no webhooks and
no automatic refunds: both are refused here, and refunds go to an operator.

Invoices and the cursor belong to one account, the network and the wallet (ton_account): after
TON_NETWORK or the wallet changes, the new wallet is read from its own start. The cursor
remembers the transaction it stands on, and each read starts with that transaction again: when
the chain no longer has it (a restarted fake chain, an indexer of another chain) the cursor is
rewound instead of waiting forever for lts that chain may never reach or already reused.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any
from urllib.parse import quote

import requests
import segno
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from orders.exceptions import PaymentProviderError, WebhookRejected
from orders.models import Order, Payment, PaymentEvent, PaymentInvoice, ProviderCursor
from orders.payments.base import WATCH_AFTER_EXPIRY, NoticeKind, PaymentNotice, Quote, RefundResult
from orders.payments.money import exponent_of, to_minor
from orders.payments.ton_rates import ton_rate

logger = logging.getLogger(__name__)

CODE = "ton"
CURRENCY = "TON"
# Config param 19 of each chain, reported by toncenter on every block as global_id.
GLOBAL_IDS = {"mainnet": -239, "testnet": -3}
# Wallet apps and copy-paste slip these into comments; none can be part of ours.
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
# No 0/O, 1/I/L: a buyer may have to type the comment by hand.
SUFFIX_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
SUFFIX_LENGTH = 4
NETWORK_CHECK_SECONDS = 3600
# Before the first cursor, read from a little before our oldest TON invoice (clocks drift):
# nothing older can pay us, and a wallet's earlier history would only flood the inbox.
HISTORY_MARGIN = timedelta(minutes=10)

# Defaults point at the local fake (python -m fakes.toncenter --port 8002), as the supplier's do.
DEFAULTS: dict[str, Any] = {
    "TON_NETWORK": "testnet",
    "TON_WALLET_ADDRESS": "0QA2M1klAJscfjmPxKhBwjLTmCQWCecQ78pcA0Av1xT2ZjfF",
    "TON_API_URL": "http://127.0.0.1:8002/api/v3",
    "TON_API_KEY": "",
    "TON_API_TIMEOUT": 10.0,
    "TON_POLL_PAGE_SIZE": 100,
    "TON_POLL_MAX_PAGES": 10,
}


def _setting(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


# --- Addresses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TonAddress:
    """A TON account: workchain and 32-byte id, plus the flags of its user-friendly form."""

    workchain: int
    account_id: bytes
    bounceable: bool = True
    testnet: bool = False
    user_friendly: bool = False

    @property
    def raw(self) -> str:
        """The raw form toncenter uses inside transactions, e.g. ``0:83DF…``."""
        return f"{self.workchain}:{self.account_id.hex().upper()}"

    def same_account(self, other: TonAddress) -> bool:
        """Whether both name one account, whatever the form or flags they were written with."""
        return (self.workchain, self.account_id) == (other.workchain, other.account_id)


def ton_address_parse(text: str) -> TonAddress:
    """Parse a raw (``0:HEX``) or user-friendly (48 base64 characters) address, or ValueError."""
    text = text.strip()
    if ":" in text:
        workchain, _, account_hex = text.partition(":")
        account = bytes.fromhex(account_hex)
        if len(account) != 32:
            raise ValueError("a raw address has a 32-byte account id")
        return TonAddress(int(workchain), account)
    if len(text) != 48:
        raise ValueError("a user-friendly address has 48 characters")
    data = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_"))
    if binascii.crc_hqx(data[:34], 0) != int.from_bytes(data[34:], "big"):
        raise ValueError("checksum mismatch")
    tag = data[0]
    if tag & 0x7F not in (0x11, 0x51):
        raise ValueError(f"unknown address tag 0x{tag:02x}")
    return TonAddress(
        workchain=int.from_bytes(data[1:2], "big", signed=True), account_id=data[2:34],
        bounceable=tag & 0x7F == 0x11, testnet=bool(tag & 0x80), user_friendly=True,
    )


def _wallet() -> tuple[str, TonAddress]:
    """The configured receiving wallet, checked against TON_NETWORK."""
    network = _network()
    text = _setting("TON_WALLET_ADDRESS")
    if not text:
        raise PaymentProviderError("TON_WALLET_ADDRESS is not set.")
    try:
        address = ton_address_parse(text)
    except ValueError as exc:
        raise PaymentProviderError(f"TON_WALLET_ADDRESS is not a TON address: {exc}.") from None
    # Only the user-friendly form says which chain it is for, and wallets need it for the link.
    if not address.user_friendly:
        raise PaymentProviderError("TON_WALLET_ADDRESS must be in user-friendly form (UQ…/EQ…).")
    if address.testnet != (network == "testnet"):
        kind = "testnet" if address.testnet else "mainnet"
        raise PaymentProviderError(
            f"TON_WALLET_ADDRESS is a {kind} address but TON_NETWORK is {network}.")
    return text.strip(), address


def _network() -> str:
    network = _setting("TON_NETWORK")
    if network not in GLOBAL_IDS:
        raise PaymentProviderError(f"TON_NETWORK must be mainnet or testnet, not {network!r}.")
    return str(network)


def ton_account() -> str:
    """The account TON invoices and the poll cursor are kept under: network and raw wallet."""
    _, wallet = _wallet()
    return f"{_network()}:{wallet.raw}"


# --- Comments, links, amounts ----------------------------------------------------------------


def ton_comment_new(order: Order) -> str:
    """A short comment naming the order, with a random suffix so each invoice's is unique."""
    reference = order.reference or f"ORD-{order.pk:06d}"
    suffix = "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))
    return f"{reference}-{suffix}"


def ton_comment_reference(comment: str) -> str:
    """The order reference a comment of ton_comment_new begins with ("" if it has no suffix)."""
    reference, dash, suffix = comment.rpartition("-")
    return reference if dash and len(suffix) == SUFFIX_LENGTH else ""


def ton_comment_normalize(text: str) -> str:
    """A received comment as the buyer meant it: zero-width characters gone, whitespace stripped."""
    return text.translate(ZERO_WIDTH).strip()


def ton_pay_url(address: str, amount_nanotons: int, comment: str) -> str:
    """The ton:// transfer link wallets open with the amount and comment filled in."""
    return f"ton://transfer/{address}?amount={amount_nanotons}&text={quote(comment, safe='')}"


def ton_qr_data_uri(pay_url: str) -> str:
    """The pay link as an SVG QR code in a data: URI, for the storefront's <img src>.

    An image rather than inline markup: nothing we build is marked safe, and the page's
    Content-Security-Policy only has to allow data: images. Base64 holds no character the
    template's escaping would touch.
    """
    buffer = io.BytesIO()
    segno.make(pay_url, error="m").save(buffer, kind="svg", scale=4, xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def ton_qr_png(pay_url: str) -> bytes:
    """The pay link as a PNG QR code, for the bot: Telegram sends photos, not SVG."""
    buffer = io.BytesIO()
    # segno's own PNG writer: no Pillow needed.
    segno.make(pay_url, error="m").save(buffer, kind="png", scale=8)
    return buffer.getvalue()


def ton_nanotons_for(price: Decimal, rate: Decimal) -> int:
    """Nanotons that buy `price` at `rate` (price currency per TON), rounded up, never down."""
    with localcontext() as context:
        context.rounding = ROUND_CEILING  # an inexact quotient must not lose a nanoton either
        tons = price / rate
    return to_minor(tons, CURRENCY, round_up=True)


# --- The cursor ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TonCursor:
    """Where the poller stopped on one account: the last transaction it has settled."""

    lt: int  # 0 before the first read
    tx_hash: str  # hex hash of the transaction at `lt`; "" for a cursor stored without one
    stored: str  # the row's value, to compare-and-set against


def _cursor_value(lt: int, tx_hash: str) -> str:
    return f"{lt}:{tx_hash}" if tx_hash else str(lt)


def cursor_get(account: str) -> TonCursor:
    """The account's cursor; lt 0 before the first read."""
    cursor, _ = ProviderCursor.objects.get_or_create(provider=CODE, account=account,
                                                     defaults={"value": ""})
    lt, _, tx_hash = cursor.value.partition(":")
    return TonCursor(lt=int(lt) if lt else 0, tx_hash=tx_hash, stored=cursor.value)


def cursor_set(account: str, *, expected: str, lt: int, tx_hash: str = "") -> bool:
    """Move the cursor forward to `lt` unless another poller moved it since `expected` was read.

    Losing the race is harmless: the winner's position is at most a re-read away, and the
    inbox drops what was already stored.
    """
    if lt <= (int(expected.partition(":")[0]) if expected else 0):
        return False
    moved = ProviderCursor.objects.filter(provider=CODE, account=account, value=expected).update(
        value=_cursor_value(lt, tx_hash))
    return moved == 1


def cursor_rewind(account: str, *, expected: str) -> bool:
    """Send the cursor back to the start (the history start is read next), unless it moved."""
    moved = ProviderCursor.objects.filter(provider=CODE, account=account, value=expected).update(
        value="")
    return moved == 1


# --- toncenter -------------------------------------------------------------------------------


def _toncenter_get(endpoint: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """GET one toncenter v3 endpoint (network call: never inside a transaction)."""
    url = f"{str(_setting('TON_API_URL')).rstrip('/')}/{endpoint}"
    headers = {"Accept": "application/json"}
    if _setting("TON_API_KEY"):
        headers["X-API-Key"] = _setting("TON_API_KEY")
    timeout = float(_setting("TON_API_TIMEOUT"))
    try:
        response = requests.get(url, params=params, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise PaymentProviderError(f"toncenter unreachable: {exc}") from exc
    if response.status_code != 200:
        raise PaymentProviderError(
            f"toncenter {endpoint} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        body = response.json()
    except ValueError:
        raise PaymentProviderError(f"toncenter {endpoint} sent invalid JSON") from None
    if not isinstance(body, dict):
        raise PaymentProviderError(f"toncenter {endpoint} did not send a JSON object")
    return body


def _check_network() -> None:
    """Refuse to read another chain than TON_NETWORK: toncenter's blocks carry its global id."""
    network = _network()
    key = f"ton:global-id:{_setting('TON_API_URL')}"
    global_id = cache.get(key)
    if global_id is None:
        info = _toncenter_get("masterchainInfo", {})
        try:
            global_id = int(info["last"]["global_id"])
        except (KeyError, TypeError, ValueError):
            raise PaymentProviderError("toncenter's masterchainInfo carries no global_id") from None
        cache.set(key, global_id, timeout=NETWORK_CHECK_SECONDS)
    if global_id != GLOBAL_IDS[network]:
        raise PaymentProviderError(
            f"TON_API_URL serves the chain with global id {global_id}, "
            f"but TON_NETWORK is {network} ({GLOBAL_IDS[network]}); not reading it.")


def _tx_key(tx_hash: Any) -> str:
    """A transaction hash as lower-case hex, whichever encoding the indexer sent."""
    if isinstance(tx_hash, str) and re.fullmatch(r"[0-9a-fA-F]{64}", tx_hash):
        return tx_hash.lower()
    try:
        digest = base64.b64decode(str(tx_hash).replace("-", "+").replace("_", "/"), validate=True)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise PaymentProviderError(f"toncenter sent a transaction with a bad hash: {tx_hash!r}")
    return digest.hex()


def _lt(tx: Mapping[str, Any]) -> int:
    try:
        return int(tx["lt"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise PaymentProviderError(f"a toncenter transaction has no lt: {tx!r:.100}") from None


# --- The provider ----------------------------------------------------------------------------


class TonPaymentProvider:
    """Pay in TON to our wallet with a unique comment; confirmed by reading the chain."""

    code = CODE

    def account(self) -> str:
        return ton_account()

    def create_invoice(self, order: Order, *, expires_at: datetime) -> Quote:
        address, _ = _wallet()
        rate = ton_rate(order.currency)
        amount = ton_nanotons_for(order.price, rate.rate)
        comment = ton_comment_new(order)
        return Quote(
            provider=self.code, account=ton_account(), amount_minor=amount, currency=CURRENCY,
            exponent=exponent_of(CURRENCY), expires_at=expires_at, comment=comment,
            pay_url=ton_pay_url(address, amount, comment), rate=rate.rate,
            raw={"wallet": address, "network": _network(), "price": str(order.price),
                 "price_currency": order.currency, "rate_sources": rate.sources},
        )

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> Sequence[PaymentNotice]:
        raise WebhookRejected("TON has no webhook: payments are read from the chain by the poller.")

    def poll(self, invoices: Sequence[PaymentInvoice]) -> Sequence[PaymentNotice]:
        """Notices for the wallet's transactions since the cursor.

        Every TON invoice's comment is matched, not only the open ones passed in: money that
        arrives for a paid or long-expired invoice must still reach the inbox and an operator.
        The cursor never passes a transaction whose notice is not in the inbox yet, so a crash
        between reading and storing costs a re-read, never a payment.
        """
        _, wallet = _wallet()
        _check_network()
        account = ton_account()
        cursor = cursor_get(account)
        transactions, address_book, anchored = self._read_since(wallet, account, cursor)
        if not anchored:
            logger.warning(
                "TON cursor of %s stands on transaction lt %s (hash %s), which toncenter's chain "
                "does not have: the chain restarted or is another one. Reading again from "
                "before the oldest watched invoice (the inbox drops what it already holds).",
                account, cursor.lt, cursor.tx_hash or "unknown")
            cursor_rewind(account, expected=cursor.stored)
            cursor = cursor_get(account)
            transactions, address_book, _ = self._read_since(wallet, account, cursor)
        if not transactions:
            return []
        keys = [_tx_key(tx.get("hash")) for tx in transactions]
        known = set(PaymentEvent.objects.filter(provider=self.code, event_key__in=keys)
                    .values_list("event_key", flat=True))
        comments = {ton_comment_normalize(c) for c in map(_text_comment, transactions) if c}
        # Rows stored before invoices carried an account have "" (see migration 0005).
        invoice_comments = set(PaymentInvoice.objects.filter(
            provider=self.code, account__in=(account, ""), comment__in=comments,
        ).values_list("comment", flat=True))
        notices: list[PaymentNotice] = []
        settled = (cursor.lt, cursor.tx_hash)
        waiting = False
        for tx, key in zip(transactions, keys, strict=True):
            notice = self._notice(tx, key, account, wallet, address_book, invoice_comments)
            if notice is not None and key not in known:
                notices.append(notice)
                waiting = True
            if not waiting:
                settled = (_lt(tx), key)
        cursor_set(account, expected=cursor.stored, lt=settled[0], tx_hash=settled[1])
        return notices

    def requote_minor(self, invoice: PaymentInvoice) -> int:
        return ton_nanotons_for(invoice.order.price, ton_rate(invoice.order.currency).rate)

    def refund(self, payment: Payment) -> RefundResult:
        raw = payment.raw or {}
        sender = raw.get("source_friendly") or raw.get("source") or "(sender unknown)"
        return RefundResult(
            refunded=False,
            message=(f"TON payments are refunded by hand: send {payment.amount} "
                     f"{payment.currency} back to the sender {sender}"),
        )

    def _read_since(self, wallet: TonAddress, account: str, cursor: TonCursor,
                    ) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
        """The wallet's transactions after `cursor`, oldest first, a bounded number of pages.

        The third value says whether the chain still has the transaction the cursor stands on
        (always true before the first read): when it does not, nothing after it can be trusted
        to be new, and nothing is returned.
        """
        page_size = int(_setting("TON_POLL_PAGE_SIZE"))
        params: dict[str, Any] = {"account": wallet.raw, "limit": page_size, "sort": "asc"}
        if cursor.lt:
            # toncenter's start_lt is inclusive: the first transaction back is the cursor's own.
            params["start_lt"] = cursor.lt
        else:
            params["start_utime"] = _history_start(account)
        transactions: list[dict[str, Any]] = []
        address_book: dict[str, Any] = {}
        for page_number in range(int(_setting("TON_POLL_MAX_PAGES"))):
            try:
                body = _toncenter_get("transactions", params)
            except PaymentProviderError:
                if not transactions:
                    raise
                # Without an API key toncenter allows 1 request/s; keep what was read, the
                # cursor resumes from there next minute.
                logger.warning("TON poll stopped after %d transactions", len(transactions),
                               exc_info=True)
                break
            page = body.get("transactions")
            if not isinstance(page, list):
                raise PaymentProviderError("toncenter transactions answer has no transactions list")
            if page_number == 0 and cursor.lt and not any(_is_cursor(tx, cursor) for tx in page):
                return [], {}, False
            address_book.update(_mapping(body.get("address_book")))
            transactions.extend(tx for tx in page if _lt(tx) > cursor.lt)
            if len(page) < page_size:
                break
            params.pop("start_utime", None)
            params["start_lt"] = max(_lt(tx) for tx in page) + 1
        transactions.sort(key=_lt)
        return transactions, address_book, True

    def _notice(self, tx: Mapping[str, Any], key: str, account: str, wallet: TonAddress,
                address_book: Mapping[str, Any],
                invoice_comments: set[str]) -> PaymentNotice | None:
        """The notice for one transaction, or None when no money of a buyer stayed with us."""
        if not all(isinstance(tx.get(part) or {}, Mapping) for part in ("in_msg", "description")):
            # Unreadable, so it cannot be skipped as "not a payment" either: the poll fails
            # loudly instead of passing money by.
            raise PaymentProviderError(f"TON transaction {key} is malformed")
        in_msg = _mapping(tx.get("in_msg"))
        source = in_msg.get("source")
        if not source:
            return None  # an external message: our own outgoing transfer, not a payment
        if not isinstance(source, str):
            raise PaymentProviderError(f"TON transaction {key} has a malformed source")
        if not (_is_address(in_msg.get("destination"), wallet)
                and _is_address(tx.get("account"), wallet)):
            logger.warning("TON transaction %s is not to our wallet; skipped", key)
            return None
        description = _mapping(tx.get("description"))
        # Aborted: the money bounced back. Bounced: it is our own money coming back. Out
        # messages: the wallet sent something on (a bounce or refund), so nothing stayed.
        if description.get("aborted") or in_msg.get("bounced") or tx.get("out_msgs"):
            logger.info("TON transaction %s ignored: aborted, bounced or with out-messages", key)
            return None
        value = _nanotons(in_msg.get("value"))
        if value is None:
            raise PaymentProviderError(f"TON transaction {key} has a malformed value")
        if value <= 0:
            return None
        moment = _unix_time(tx.get("now"))
        if moment is None:
            raise PaymentProviderError(f"TON transaction {key} has a malformed time")
        raw_comment = _text_comment(tx)
        comment = ton_comment_normalize(raw_comment) if raw_comment is not None else ""
        matched = comment if comment in invoice_comments else ""
        source_friendly = _mapping(address_book.get(source)).get("user_friendly") or source
        if not matched:
            # Money arrived that no invoice claims (a typo, a missing comment): it goes to the
            # inbox as ignored so the operator sees it, with the sender to refund.
            logger.warning("TON transaction %s: %s nanotons with unmatched comment %r",
                           key, value, raw_comment)
        return PaymentNotice(
            provider=self.code, event_key=key,
            kind=NoticeKind.PAID if matched else NoticeKind.IGNORED, account=account,
            # The comment begins with the reference of the order it was made for; the inbox
            # checks it against the order of the invoice the comment matched.
            comment=matched, order_reference=ton_comment_reference(matched),
            amount_minor=value, currency=CURRENCY,
            occurred_at=moment,
            data={"tx_hash": key, "lt": str(tx.get("lt")), "source": source,
                  "source_friendly": source_friendly, "comment": raw_comment,
                  "value_nanotons": str(value)},
            body=json.dumps(tx, sort_keys=True),
        )


def _history_start(account: str) -> int:
    """Unix time to read from without a cursor: shortly before the oldest watched invoice.

    Watched: of this account and not more than WATCH_AFTER_EXPIRY past its quote, as
    payments_poll watches them.
    """
    watched = PaymentInvoice.objects.filter(
        provider=CODE, account__in=(account, ""),
        expires_at__gt=timezone.now() - WATCH_AFTER_EXPIRY)
    oldest = watched.order_by("created_at").values_list("created_at", flat=True).first()
    return int(((oldest or timezone.now()) - HISTORY_MARGIN).timestamp())


def _is_cursor(tx: Mapping[str, Any], cursor: TonCursor) -> bool:
    """Whether `tx` is the transaction the cursor stands on (by lt, and by hash when known)."""
    if _lt(tx) != cursor.lt:
        return False
    return not cursor.tx_hash or _tx_key(tx.get("hash")) == cursor.tx_hash


def _text_comment(tx: Mapping[str, Any]) -> str | None:
    """The incoming message's text comment as toncenter decoded it, if it is one."""
    content = _mapping(_mapping(tx.get("in_msg")).get("message_content"))
    decoded = _mapping(content.get("decoded"))
    comment = decoded.get("comment")
    return comment if decoded.get("type") == "text_comment" and isinstance(comment, str) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object from toncenter, or an empty one for null or anything that is not one."""
    return value if isinstance(value, Mapping) else {}


def _nanotons(value: Any) -> int | None:
    """A message value: toncenter sends a decimal string; None when it is not whole nanotons."""
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # ASCII digits only: int() would also take " 12 ", "1_000" and other scripts' digits.
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,30}", value):
        return int(value)
    return None


def _unix_time(value: Any) -> datetime | None:
    """A transaction's `now` (Unix seconds, as a number or a string) as a datetime, or None."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,12}", value):
        value = int(value)
    if value is None or value == "":
        value = 0  # as before: a missing time reads as the epoch, never as "now"
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _is_address(value: Any, wallet: TonAddress) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return ton_address_parse(value).same_account(wallet)
    except ValueError:
        return False
