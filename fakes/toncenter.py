"""Fake toncenter: TON's v3 indexer API for one shop wallet, plus two fake TON price APIs.

Run it as its own process, as the real services would be::

    python -m fakes.toncenter --host 127.0.0.1 --port 8002 \\
        [--network testnet|mainnet] [--wallet <user-friendly address>] [--api-key KEY] \\
        [--usd 5.00] [--state var/fake_toncenter.json]

or in a thread with ``start_fake_toncenter(ToncenterConfig(...), port=0)``.
Standard library only, no Django, so nothing of the shop leaks into the "chain". State lives
in memory unless ``--state`` (``ToncenterConfig.state_path``) names a JSON file: then the
chain, balances, prices and pending faults are saved after every change and a restart
continues the chain (later lts, new hashes). The request log is not kept.

Wire API, shaped like toncenter's v3 (the JSON of toncenter/ton-indexer's models):

- ``GET /api/v3/transactions?account=&start_lt=&end_lt=&start_utime=&end_utime=&limit=``
  ``&offset=&sort=asc|desc``
  → ``{"transactions": [...], "address_book": {"0:HEX": {"user_friendly", "domain"}}}``.
  Addresses inside transactions are raw (``0:HEX``); lt, values and fees are strings; hashes
  are base64; ``start_lt``/``end_lt`` and ``start_utime``/``end_utime`` (on ``now``) are
  inclusive; limit 1..1000 (default 10); sort
  defaults to desc. A text comment shows as ``in_msg.message_content.decoded =
  {"type": "text_comment", "comment": ...}`` with opcode ``0x00000000`` and a real one-cell BOC
  body.
- ``GET /api/v3/masterchainInfo`` → ``{"first": block, "last": block}``; ``global_id`` is -239
  on mainnet and -3 on testnet, which is how a client tells which chain it is reading.
- With ``--api-key``, ``/api/v3/`` needs it in ``X-API-Key`` (or ``?api_key=``), else 401.
- Errors: ``{"error": "<message>"}`` with the HTTP status.

Fake price APIs (no key), both reading the same settable price:

- ``GET /api/v3/simple/price?ids=the-open-network&vs_currencies=usd``
  → ``{"the-open-network": {"usd": 5.0}}`` (CoinGecko's shape)
- ``GET /v2/rates?tokens=ton&currencies=usd``
  → ``{"rates": {"TON": {"prices": {"USD": 5.0}, "diff_24h": {...}, ...}}}`` (tonapi's shape)

Control endpoints (no key):

- ``POST /_fake/transfer {"comment": "ORD-000001-7KQ2" | null, "amount_nanotons": 1700000000,
  "source"?, "destination"?, "bounced"?, "aborted"?, "with_out_msg"?, "outgoing"?, "now"?}``
  → 201 with the transaction as the API shows it. By default this is what the chain records
  when a buyer pays: a transaction on the shop wallet carrying the buyer's internal message.
  ``bounced``: the incoming message is itself a bounce. ``aborted``: the compute phase failed.
  ``with_out_msg``: the wallet sent a message back in the same transaction (as a bounce does).
  ``outgoing``: the shop wallet itself sends ``amount_nanotons`` to ``source`` (an external
  in-message and one out-message). ``destination``: another wallet, so the transaction is on
  that account, not ours. ``now``: the block time (unix seconds), for late payments.
- ``POST /_fake/rate {"price"?: "5.25", "currency"?: "usd", "source"?: "coingecko" | "tonapi" |
  "all", "down"?: true | false}``: set a price, or make a source answer 503 (``down``).
- ``POST /_fake/fault {"status": 429 | 500 | 502 | 503, "count": 1, "skip": 0}``: after
  ``skip`` more chain requests (``/api/v3/transactions``, ``masterchainInfo``) are answered
  normally, the next ``count`` answer that status.
- ``GET /_fake/requests``: every API request seen, ``[{"path", "query"}]`` (to check a client's
  cursor and caching). ``GET /_fake/transactions``: every transaction on every account.
- ``POST /_fake/reset``: an empty chain, the starting price, no faults, no request log.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes._serving import FakeHTTPServer, ServingThread, StateFile

GLOBAL_IDS = {"mainnet": -239, "testnet": -3}
COINGECKO_ID = "the-open-network"
RATE_SOURCES = ("coingecko", "tonapi")
FAULT_STATUSES = (429, 500, 502, 503)
MAX_LIMIT = 1000
MAX_BODY_BYTES = 100_000
# A text comment must fit one cell: 1023 bits hold the 32-bit opcode and 123 bytes of text.
MAX_COMMENT_BYTES = 123
# Account ids of the default wallets (workchain 0), stable so settings can name them.
SHOP_ACCOUNT = hashlib.sha256(b"fake toncenter: the shop's wallet").digest()
BUYER_ACCOUNT = hashlib.sha256(b"fake toncenter: a buyer's wallet").digest()
FIRST_LT = 47_000_000_000_001
LT_STEP = 1_000_003  # real lts jump by about a block's worth between an account's transactions
FWD_FEE = 266_669
GAS_FEE = 1_977_600


# --- Addresses -------------------------------------------------------------------------------


def friendly_address(workchain: int, account: bytes, *, testnet: bool, bounceable: bool) -> str:
    """The user-friendly (base64url) form: tag, workchain, account id, CRC16-XMODEM."""
    tag = (0x11 if bounceable else 0x51) | (0x80 if testnet else 0)
    body = bytes([tag, workchain & 0xFF]) + account
    return base64.urlsafe_b64encode(body + binascii.crc_hqx(body, 0).to_bytes(2, "big")).decode()


def parse_address(text: str) -> tuple[int, bytes] | None:
    """(workchain, account id) of a raw or user-friendly address; None if it is not one."""
    text = text.strip()
    try:
        if ":" in text:
            workchain, _, account_hex = text.partition(":")
            account = bytes.fromhex(account_hex)
            return (int(workchain), account) if len(account) == 32 else None
        if len(text) != 48:
            return None
        data = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_"))
    except ValueError:
        return None
    if binascii.crc_hqx(data[:34], 0) != int.from_bytes(data[34:], "big"):
        return None
    return int.from_bytes(data[1:2], "big", signed=True), data[2:34]


def raw_address(workchain: int, account: bytes) -> str:
    """The raw form toncenter uses inside transactions: ``0:HEX`` in upper case."""
    return f"{workchain}:{account.hex().upper()}"


def default_wallet(network: str) -> str:
    """The shop wallet the fake serves unless told otherwise (non-bounceable, as wallets show)."""
    return friendly_address(0, SHOP_ACCOUNT, testnet=network == "testnet", bounceable=False)


def default_buyer(network: str) -> str:
    """The wallet a simulated transfer comes from unless `source` is given."""
    return friendly_address(0, BUYER_ACCOUNT, testnet=network == "testnet", bounceable=False)


# --- Cells -----------------------------------------------------------------------------------


def _cell_boc(data: bytes) -> tuple[str, str]:
    """(base64 BOC, base64 cell hash) of one byte-aligned cell without references."""
    descriptors = bytes([0, 2 * len(data)])  # no refs, level 0; d2 = 2 * whole bytes
    cell = descriptors + data
    # Header: magic, size 1 byte / offsets 1 byte, one cell, one root, none absent, no index.
    boc = bytes.fromhex("b5ee9c72") + bytes([0x01, 0x01, 1, 1, 0, len(cell), 0]) + cell
    return base64.b64encode(boc).decode(), base64.b64encode(hashlib.sha256(cell).digest()).decode()


def comment_from_boc(body: str) -> str | None:
    """The text comment in a one-cell BOC made by this fake (for tests of the fake itself)."""
    boc = base64.b64decode(body)
    cell = boc[11:]
    data = cell[2:2 + cell[1] // 2]
    if len(data) < 4 or data[:4] != b"\0\0\0\0":
        return None
    return data[4:].decode()


# --- State -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToncenterConfig:
    """How one fake toncenter behaves: its chain, the shop wallet, its key and the TON price."""

    network: str = "testnet"
    wallet: str = ""  # user-friendly; empty means default_wallet(network)
    api_key: str = ""
    usd_per_ton: Decimal = Decimal("5.00")
    state_path: str = ""  # a JSON file the chain survives restarts in; empty keeps it in memory

    def __post_init__(self) -> None:
        if self.network not in GLOBAL_IDS:
            raise ValueError(f"network must be one of {sorted(GLOBAL_IDS)}")
        if not self.wallet:
            object.__setattr__(self, "wallet", default_wallet(self.network))
        if parse_address(self.wallet) is None:
            raise ValueError(f"not a TON address: {self.wallet!r}")


class ApiError(Exception):
    """An error answer: {"error": message} with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ToncenterState:
    """The fake chain (transactions by account), the prices and the faults, behind one lock."""

    def __init__(self, config: ToncenterConfig) -> None:
        self.config = config
        workchain, account = parse_address(config.wallet)  # type: ignore[misc]
        self.wallet_raw = raw_address(workchain, account)
        self._lock = threading.Lock()
        self._state_file = StateFile(config.state_path, kind="toncenter")
        self._clear()
        saved = self._state_file.load()
        if saved is not None:
            self._restore(saved)

    def reset(self) -> None:
        """An empty chain, the starting price on every source, no faults, no request log."""
        with self._lock:
            self._clear()
            self._save()

    def _clear(self) -> None:
        self._transactions: list[dict[str, Any]] = []
        self._next_lt = FIRST_LT
        self._seqno = 1000
        self._balances: dict[str, int] = {}
        self._prices = {source: {"USD": self.config.usd_per_ton} for source in RATE_SOURCES}
        self._down: set[str] = set()
        self._fault_status = 0
        self._fault_skip = 0
        self._fault_count = 0
        self._requests: list[dict[str, Any]] = []

    def _save(self) -> None:
        """Write the state file, if there is one (the lock is held)."""
        self._state_file.save({
            "transactions": self._transactions, "next_lt": self._next_lt, "seqno": self._seqno,
            "balances": self._balances,
            "prices": {source: {currency: str(price) for currency, price in prices.items()}
                       for source, prices in self._prices.items()},
            "down": sorted(self._down),
            "fault": {"status": self._fault_status, "skip": self._fault_skip,
                      "count": self._fault_count},
        })

    def _restore(self, saved: dict[str, Any]) -> None:
        self._transactions = saved["transactions"]
        self._next_lt, self._seqno = saved["next_lt"], saved["seqno"]
        self._balances = saved["balances"]
        self._prices = {source: {currency: Decimal(price) for currency, price in prices.items()}
                        for source, prices in saved["prices"].items()}
        self._down = set(saved["down"])
        fault = saved["fault"]
        self._fault_status, self._fault_skip, self._fault_count = (
            fault["status"], fault["skip"], fault["count"])

    # -- control --

    def transfer(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Record what the chain does when the described message arrives; return the transaction."""
        amount = payload.get("amount_nanotons")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ApiError(400, "amount_nanotons must be a non-negative integer")
        comment = payload.get("comment")
        if comment is not None and (not isinstance(comment, str)
                                    or len(comment.encode()) > MAX_COMMENT_BYTES):
            raise ApiError(400, f"comment must be text of at most {MAX_COMMENT_BYTES} bytes")
        flags = {name: payload.get(name, False)
                 for name in ("bounced", "aborted", "with_out_msg", "outgoing")}
        if not all(isinstance(value, bool) for value in flags.values()):
            raise ApiError(400, "bounced, aborted, with_out_msg and outgoing must be booleans")
        source = self._address(payload.get("source") or default_buyer(self.config.network), "source")
        destination = self._address(payload.get("destination") or self.config.wallet, "destination")
        now = payload.get("now", int(time.time()))
        if isinstance(now, bool) or not isinstance(now, int):
            raise ApiError(400, "now must be unix seconds")
        with self._lock:
            if flags["outgoing"]:
                tx = self._outgoing(self.wallet_raw, source, amount, comment, now)
            else:
                tx = self._incoming(source, destination, amount, comment, now, **{
                    k: v for k, v in flags.items() if k != "outgoing"})
            self._transactions.append(tx)
            self._save()
            return tx

    def set_rate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Set the price, or take a source down or up again."""
        source = payload.get("source", "all")
        if source not in (*RATE_SOURCES, "all"):
            raise ApiError(400, f"source must be one of {RATE_SOURCES} or all")
        currency = payload.get("currency", "usd")
        if not isinstance(currency, str) or not currency.isalpha():
            raise ApiError(400, "currency must be a currency code")
        down = payload.get("down")
        if down is not None and not isinstance(down, bool):
            raise ApiError(400, "down must be a boolean")
        price = None
        if payload.get("price") is not None:
            try:
                price = Decimal(str(payload["price"]))
            except InvalidOperation:
                raise ApiError(400, "price must be a decimal string") from None
            if not price.is_finite() or price <= 0:
                raise ApiError(400, "price must be positive")
        targets = RATE_SOURCES if source == "all" else (source,)
        with self._lock:
            for target in targets:
                if price is not None:
                    self._prices[target][currency.upper()] = price
                if down is True:
                    self._down.add(target)
                elif down is False:
                    self._down.discard(target)
            self._save()
            return {"prices": {name: {cur: str(value) for cur, value in prices.items()}
                               for name, prices in self._prices.items()},
                    "down": sorted(self._down)}

    def set_fault(self, payload: dict[str, Any]) -> dict[str, Any]:
        status, count, skip = payload.get("status"), payload.get("count", 1), payload.get("skip", 0)
        if status not in FAULT_STATUSES or any(
                isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in (count, skip)):
            raise ApiError(400, f"status must be one of {FAULT_STATUSES}; count, skip integers >= 0")
        with self._lock:
            self._fault_status, self._fault_count, self._fault_skip = status, count, skip
            self._save()
        return {"status": status, "count": count, "skip": skip}

    def requests_seen(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def all_transactions(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._transactions)

    # -- API --

    def record(self, path: str, query: dict[str, str]) -> None:
        with self._lock:
            self._requests.append({"path": path, "query": query})

    def take_fault(self) -> int:
        """The status the next chain request must fail with, or 0."""
        with self._lock:
            if self._fault_count <= 0:
                return 0
            if self._fault_skip > 0:
                self._fault_skip -= 1
                self._save()
                return 0
            self._fault_count -= 1
            self._save()
            return self._fault_status

    def transactions(self, query: dict[str, str]) -> dict[str, Any]:
        account = query.get("account")
        if not account:
            raise ApiError(422, "account: field required")
        parsed = parse_address(account)
        if parsed is None:
            raise ApiError(422, f"account: invalid address {account!r}")
        account_raw = raw_address(*parsed)
        start_lt, end_lt = self._int(query, "start_lt", None), self._int(query, "end_lt", None)
        start_utime = self._int(query, "start_utime", None)
        end_utime = self._int(query, "end_utime", None)
        limit, offset = self._int(query, "limit", 10), self._int(query, "offset", 0)
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            raise ApiError(422, f"limit: must be between 1 and {MAX_LIMIT}")
        sort = query.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise ApiError(422, "sort: must be asc or desc")
        with self._lock:
            selected = [tx for tx in self._transactions if tx["account"] == account_raw
                        and (start_lt is None or int(tx["lt"]) >= start_lt)
                        and (end_lt is None or int(tx["lt"]) <= end_lt)
                        and (start_utime is None or tx["now"] >= start_utime)
                        and (end_utime is None or tx["now"] <= end_utime)]
        selected.sort(key=lambda tx: int(tx["lt"]), reverse=sort == "desc")
        page = selected[offset or 0:(offset or 0) + limit]
        return {"transactions": page, "address_book": self._address_book(page)}

    def masterchain_info(self) -> dict[str, Any]:
        with self._lock:
            seqno, lt = self._seqno, self._next_lt
        return {"first": self._block(1, FIRST_LT - LT_STEP), "last": self._block(seqno, lt)}

    def coingecko(self, query: dict[str, str]) -> dict[str, Any]:
        self._require_up("coingecko")
        ids = query.get("ids", "").split(",")
        currencies = [c for c in query.get("vs_currencies", "").lower().split(",") if c]
        if COINGECKO_ID not in ids:
            return {}
        with self._lock:
            prices = dict(self._prices["coingecko"])
        # The real API sends JSON numbers; a client must not read them as float.
        return {COINGECKO_ID: {c: float(prices[c.upper()]) for c in currencies if c.upper() in prices}}

    def tonapi(self, query: dict[str, str]) -> dict[str, Any]:
        self._require_up("tonapi")
        tokens = [t for t in query.get("tokens", "").split(",") if t]
        currencies = [c.upper() for c in query.get("currencies", "").split(",") if c]
        if not tokens or not currencies:
            raise ApiError(400, "tokens and currencies are required")
        with self._lock:
            prices = dict(self._prices["tonapi"])
        rates = {}
        if any(t.lower() == "ton" for t in tokens):
            known = [c for c in currencies if c in prices]
            rates["TON"] = {
                "prices": {c: float(prices[c]) for c in known},
                "diff_24h": {c: "+0.00%" for c in known},
                "diff_7d": {c: "+0.00%" for c in known},
                "diff_30d": {c: "+0.00%" for c in known},
            }
        return {"rates": rates}

    # -- helpers --

    def _require_up(self, source: str) -> None:
        with self._lock:
            if source in self._down:
                raise ApiError(503, f"{source} is down (fake)")

    def _address(self, value: Any, name: str) -> str:
        parsed = parse_address(value) if isinstance(value, str) else None
        if parsed is None:
            raise ApiError(400, f"{name} must be a TON address")
        return raw_address(*parsed)

    @staticmethod
    def _int(query: dict[str, str], name: str, default: int | None) -> int | None:
        if name not in query:
            return default
        try:
            return int(query[name])
        except ValueError:
            raise ApiError(422, f"{name}: must be an integer") from None

    def _address_book(self, transactions: list[dict[str, Any]]) -> dict[str, Any]:
        addresses = set()
        for tx in transactions:
            addresses.add(tx["account"])
            for message in [tx["in_msg"], *tx["out_msgs"]]:
                if message:
                    addresses.update(a for a in (message["source"], message["destination"]) if a)
        testnet = self.config.network == "testnet"
        book = {}
        for address in sorted(addresses):
            workchain, account = parse_address(address)  # type: ignore[misc]
            book[address] = {"user_friendly": friendly_address(
                workchain, account, testnet=testnet, bounceable=False), "domain": None}
        return book

    def _block(self, seqno: int, lt: int) -> dict[str, Any]:
        digest = base64.b64encode(hashlib.sha256(f"block {seqno}".encode()).digest()).decode()
        return {
            "workchain": -1, "shard": "8000000000000000", "seqno": seqno,
            "root_hash": digest, "file_hash": digest,
            "global_id": GLOBAL_IDS[self.config.network], "version": 9,
            "after_merge": False, "before_split": False, "after_split": False,
            "want_merge": False, "want_split": False, "key_block": False,
            "vert_seqno_incr": False, "flags": 1, "gen_utime": str(int(time.time())),
            "start_lt": str(lt), "end_lt": str(lt + 1), "validator_list_hash_short": 0,
            "gen_catchain_seqno": 0, "min_ref_mc_seqno": seqno - 1,
            "prev_key_block_seqno": 1, "vert_seqno": 1, "master_ref_seqno": 0,
            "rand_seed": digest, "created_by": digest, "tx_count": 1,
            "masterchain_block_ref": {"workchain": -1, "shard": "8000000000000000", "seqno": seqno},
            "prev_blocks": [{"workchain": -1, "shard": "8000000000000000", "seqno": seqno - 1}],
        }

    def _next(self) -> tuple[int, int]:
        """A fresh lt and masterchain seqno (the lock is held)."""
        lt = self._next_lt
        self._next_lt += LT_STEP
        self._seqno += 1
        return lt, self._seqno

    def _previous(self, account: str) -> tuple[str, str]:
        for tx in reversed(self._transactions):
            if tx["account"] == account:
                return tx["hash"], tx["lt"]
        return base64.b64encode(bytes(32)).decode(), "0"

    def _incoming(self, source: str, destination: str, amount: int, comment: str | None,
                  now: int, *, bounced: bool, aborted: bool, with_out_msg: bool) -> dict[str, Any]:
        lt, seqno = self._next()
        in_msg = _message(source=source, destination=destination, value=amount, comment=comment,
                          created_lt=lt - 1, created_at=now, bounced=bounced)
        out_msgs = []
        # A failed compute phase on a bounceable message sends the money back: a bounce.
        if with_out_msg:
            out_msgs.append(_message(source=destination, destination=source,
                                     value=max(amount - FWD_FEE - GAS_FEE, 0), comment=None,
                                     created_lt=lt + 1, created_at=now, bounced=aborted))
        kept = 0 if aborted or with_out_msg else amount
        return self._transaction(destination, lt, seqno, now, in_msg, out_msgs, kept,
                                 aborted=aborted, credit=None if bounced else amount)

    def _outgoing(self, wallet: str, recipient: str, amount: int, comment: str | None,
                  now: int) -> dict[str, Any]:
        lt, seqno = self._next()
        in_msg = _external_message(destination=wallet, now=now, lt=lt)
        out_msgs = [_message(source=wallet, destination=recipient, value=amount, comment=comment,
                             created_lt=lt + 1, created_at=now, bounced=False)]
        return self._transaction(wallet, lt, seqno, now, in_msg, out_msgs,
                                 -(amount + FWD_FEE), aborted=False, credit=None)

    def _transaction(self, account: str, lt: int, seqno: int, now: int, in_msg: dict[str, Any],
                     out_msgs: list[dict[str, Any]], balance_change: int, *, aborted: bool,
                     credit: int | None) -> dict[str, Any]:
        prev_hash, prev_lt = self._previous(account)
        before = self._balances.get(account, 0)
        after = max(before + balance_change - (0 if aborted else GAS_FEE), 0)
        self._balances[account] = after
        tx_hash = base64.b64encode(hashlib.sha256(f"tx {account} {lt}".encode()).digest()).decode()
        description: dict[str, Any] = {
            "type": "ord", "aborted": aborted, "destroyed": False,
            "credit_first": not in_msg.get("bounce", False), "is_tock": False, "installed": False,
            "storage_ph": {"storage_fees_collected": "0", "status_change": "unchanged"},
            "compute_ph": {
                "skipped": False, "success": not aborted, "msg_state_used": False,
                "account_activated": False, "gas_fees": str(GAS_FEE), "gas_used": "4939",
                "gas_limit": "0", "mode": 0, "exit_code": 9 if aborted else 0,
                "vm_steps": 70, "vm_init_state_hash": "", "vm_final_state_hash": "",
            },
        }
        if credit is not None:
            description["credit_ph"] = {"credit": str(credit)}
        if not aborted:
            description["action"] = {
                "success": True, "valid": True, "no_funds": False, "status_change": "unchanged",
                "total_fwd_fees": str(FWD_FEE * len(out_msgs)) if out_msgs else None,
                "result_code": 0, "tot_actions": len(out_msgs), "spec_actions": 0,
                "skipped_actions": 0, "msgs_created": len(out_msgs),
                "action_list_hash": tx_hash,
                "tot_msg_size": {"cells": str(len(out_msgs)), "bits": str(700 * len(out_msgs))},
            }
        elif out_msgs:
            description["bounce"] = {"type": "ok", "msg_size": {"cells": "0", "bits": "0"},
                                     "msg_fees": str(FWD_FEE), "fwd_fees": str(FWD_FEE)}
        return {
            "account": account, "hash": tx_hash, "lt": str(lt), "now": now,
            "mc_block_seqno": seqno, "trace_id": tx_hash, "prev_trans_hash": prev_hash,
            "prev_trans_lt": prev_lt, "orig_status": "active", "end_status": "active",
            "total_fees": str(GAS_FEE), "total_fees_extra_currencies": {},
            "description": description,
            "block_ref": {"workchain": 0, "shard": "8000000000000000", "seqno": seqno + 7},
            "in_msg": in_msg, "out_msgs": out_msgs,
            "account_state_before": _account_state(account, before),
            "account_state_after": _account_state(account, after),
            "emulated": False,
        }


def _message(*, source: str, destination: str, value: int, comment: str | None, created_lt: int,
             created_at: int, bounced: bool) -> dict[str, Any]:
    """An internal message; a text comment is opcode 0 followed by the UTF-8 text."""
    body, body_hash = _cell_boc(b"" if comment is None else b"\0\0\0\0" + comment.encode())
    decoded = None if comment is None else {"type": "text_comment", "comment": comment}
    digest = hashlib.sha256(f"msg {source} {destination} {created_lt}".encode()).digest()
    return {
        "hash": base64.b64encode(digest).decode(), "source": source, "destination": destination,
        "value": str(value), "value_extra_currencies": {}, "fwd_fee": str(FWD_FEE),
        "ihr_fee": "0", "created_lt": str(created_lt), "created_at": str(created_at),
        "opcode": None if comment is None else "0x00000000", "ihr_disabled": True,
        "bounce": not bounced, "bounced": bounced, "import_fee": None,
        "message_content": {"hash": body_hash, "body": body, "decoded": decoded},
        "init_state": None,
    }


def _external_message(*, destination: str, now: int, lt: int) -> dict[str, Any]:
    """The signed order a wallet's owner sends from outside the chain: no source, no value."""
    body, body_hash = _cell_boc(hashlib.sha512(f"signed {lt}".encode()).digest()[:64])
    return {
        "hash": base64.b64encode(hashlib.sha256(f"ext {lt}".encode()).digest()).decode(),
        "source": None, "destination": destination, "value": None,
        "value_extra_currencies": None, "fwd_fee": None, "ihr_fee": None, "created_lt": None,
        "created_at": None, "opcode": "0x" + hashlib.sha256(body.encode()).hexdigest()[:8],
        "ihr_disabled": None, "bounce": None, "bounced": None, "import_fee": "0",
        "message_content": {"hash": body_hash, "body": body, "decoded": None},
        "init_state": None,
    }


def _account_state(account: str, balance: int) -> dict[str, Any]:
    digest = base64.b64encode(hashlib.sha256(f"state {account} {balance}".encode()).digest()).decode()
    return {"hash": digest, "balance": str(balance), "extra_currencies": {},
            "account_status": "active", "frozen_hash": None, "data_hash": digest,
            "code_hash": "IINLe3KxEhR+Gy+0V7hOdNGjDwT3N9T2KmaOlVLSty8="}


# --- HTTP ------------------------------------------------------------------------------------


class ToncenterRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to the state and writes the JSON answer."""

    server: FakeToncenterServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
        sys.stderr.write(f"fake toncenter: {format % args}\n")

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        try:
            body = self._read_body()
            status, payload = self._route(parts.path, query, body)
        except ApiError as error:
            status, payload = error.status, {"error": error.message}
        self._send(status, payload)

    def _route(self, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        state = self.server.state
        if path.startswith("/_fake/"):
            return self._control(path, body)
        if self.command != "GET":
            raise ApiError(405, f"{self.command} is not allowed here")
        state.record(path, {k: v for k, v in query.items() if k != "api_key"})
        if path == "/api/v3/simple/price":
            return 200, state.coingecko(query)
        if path == "/v2/rates":
            return 200, state.tonapi(query)
        if path in ("/api/v3/transactions", "/api/v3/masterchainInfo"):
            self._check_key(query)
            fault = state.take_fault()
            if fault:
                raise ApiError(fault, "Ratelimit exceed" if fault == 429 else "Internal error (fake)")
            if path == "/api/v3/transactions":
                return 200, state.transactions(query)
            return 200, state.masterchain_info()
        raise ApiError(404, f"No endpoint {path}")

    def _control(self, path: str, body: bytes) -> tuple[int, Any]:
        state = self.server.state
        routes = {"/_fake/transfer": "POST", "/_fake/rate": "POST", "/_fake/fault": "POST",
                  "/_fake/reset": "POST", "/_fake/requests": "GET", "/_fake/transactions": "GET"}
        if path not in routes:
            raise ApiError(404, f"No control endpoint {path}")
        if self.command != routes[path]:
            raise ApiError(405, f"{self.command} is not allowed here")
        if path == "/_fake/requests":
            return 200, state.requests_seen()
        if path == "/_fake/transactions":
            return 200, state.all_transactions()
        if path == "/_fake/reset":
            state.reset()
            return 200, {"reset": True}
        payload = _json_object(body)
        if path == "/_fake/transfer":
            return 201, state.transfer(payload)
        if path == "/_fake/rate":
            return 200, state.set_rate(payload)
        return 200, state.set_fault(payload)

    def _check_key(self, query: dict[str, str]) -> None:
        expected = self.server.config.api_key
        if not expected:
            return
        given = self.headers.get("X-API-Key") or query.get("api_key") or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "API key does not exist")

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            raise ApiError(400, "Bad Content-Length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise ApiError(400, "Body too large")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.log_message("%s %s client went away before the answer", self.command, self.path)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(400, "Body is not JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "Body must be a JSON object")
    return payload


class FakeToncenterServer(FakeHTTPServer):
    """A threaded HTTP server carrying the fake chain's state."""

    def __init__(self, address: tuple[str, int], config: ToncenterConfig) -> None:
        self.config = config
        self.state = ToncenterState(config)
        super().__init__(address, ToncenterRequestHandler)


class RunningToncenter(ServingThread[FakeToncenterServer]):
    """A fake toncenter serving from a background thread."""

    @property
    def config(self) -> ToncenterConfig:
        return self.server.config


def start_fake_toncenter(config: ToncenterConfig, *, host: str = "127.0.0.1",
                         port: int = 0) -> RunningToncenter:
    """Start a fake toncenter in a daemon thread; port 0 picks a free port."""
    return RunningToncenter(FakeToncenterServer((host, port), config), name="fake-toncenter")


def main(argv: list[str] | None = None) -> None:
    """Serve the fake toncenter until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m fakes.toncenter", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--network", choices=sorted(GLOBAL_IDS), default="testnet")
    parser.add_argument("--wallet", default="", help="the shop wallet (default: a fixed one)")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--usd", type=Decimal, default=Decimal("5.00"), help="USD per TON")
    parser.add_argument("--state", default="",
                        help="a JSON file to keep the chain in across restarts (default: memory)")
    args = parser.parse_args(argv)
    config = ToncenterConfig(network=args.network, wallet=args.wallet, api_key=args.api_key,
                             usd_per_ton=args.usd, state_path=args.state)
    server = FakeToncenterServer((args.host, args.port), config)
    sys.stderr.write(f"fake toncenter listening on {server.url} ({config.network}, "
                     f"wallet {config.wallet}, state {config.state_path or 'in memory'})\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
