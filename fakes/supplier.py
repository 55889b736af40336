"""Sandbox supplier: a stand-in for a B2B Telegram Stars top-up API, for tests and demos.

Run it as its own process, as the real supplier would be::

    python -m fakes.supplier --host 127.0.0.1 --port 8001 \\
        --db var/sandbox_supplier.sqlite3 --api-key sandbox-key \\
        [--hang-seconds 20] [--slow-seconds 3] [--balance 10000] [--cost-per-star 0.0165] \\
        [--latency-seconds 1] [--rate-limit 50]

or in a thread with ``start_sandbox_supplier(SupplierConfig(...), port=0)``.
Standard library only, no Django, so nothing of the shop leaks into the "supplier".

State (orders, balance, idempotency keys, call counters, one-shot markers) lives in the
SQLite file, so a restart keeps it; ``--balance`` only seeds a new file (or a reset).
Every state change holds one lock and one short-lived connection; deliberate sleeps
happen after the lock is released, so other requests proceed meanwhile.

Wire API (JSON, ``Authorization: Bearer <key>`` on everything outside ``/_sandbox/``):

- ``POST /validate-user`` ``{"platform", "user_id": "<digits>" | "@name"}``
- ``POST /topup`` + ``Idempotency-Key`` header, ``{"platform", "user_id", "stars"}``
- ``GET /orders/<order_id>``, ``GET /orders?reference=<key>``, ``GET /balance``
- ``GET /orders?created_after=<iso>&created_before=<iso>[&limit=<n>][&cursor=<c>]``: the
  orders created in that window (after inclusive, before exclusive; either may be left out),
  oldest first, ``{"orders": [...], "next_cursor": "<c>" | null}``, ``limit`` 1-500 (100)
- errors: ``{"error": {"code", "message", ["retry_after"]}}``; ``insufficient_balance``
  is deliberately sent as HTTP 500, as one real supplier does.

Control endpoints (no auth): ``POST /_sandbox/balance {"balance": "100.00"}``,
``GET /_sandbox/orders``, ``GET /_sandbox/calls?reference=KEY``,
``GET /_sandbox/traffic`` (API requests so far, in flight now and at most, refused by
``--rate-limit``, most accepted in one second),
``POST /_sandbox/orders {"reference", "user_id", "stars", "status", ["created_at", "cost",
"username"]}`` (records an order as it stands in the supplier's books, charging nothing: for
seeding the reconciliation's mismatches),
``POST /_sandbox/rename {"username", "user_id"}``, ``POST /_sandbox/reset``,
``POST /_sandbox/fault {"mode": "malformed" | "reset" | "none", "count": 1}`` (the next
``count`` POST /topup requests are processed and committed normally, then answered with a
truncated JSON body, or the connection is reset without any answer);
``POST /_sandbox/fault {"mode": "random", "p_5xx", "p_429", "p_500", "p_reset", "p_slow",
["seed"]}`` until mode ``none``: each authenticated request is first refused with 503
``unavailable`` (p_5xx) or 429 ``rate_limited`` (p_429), nothing done; each top-up that was
committed is then answered with 500 ``internal_error`` (p_500), a reset connection (p_reset)
or only after --hang-seconds (p_slow), for the chaos run (bench/chaos.py). Replayed top-ups
(a key that already placed an order) are counted in ``GET /_sandbox/orders`` as ``replays``.

``GET /_sandbox/`` is the supplier's own dashboard, a small HTML page: the wallet balance,
a form that tops it up (``POST /_sandbox/`` with ``amount``, then a redirect back to the
page) and the latest orders. A top-up there counts as a balance change for @sandbox_broke.

Magic recipients (each works by numeric ID and by username, usernames case-insensitive):

=========  ==================  ==========================================================
user_id    username            behaviour
=========  ==================  ==========================================================
100000001  @sandbox_ok         valid; top-up is ``completed`` at once
100000002  @sandbox_slow       valid; ``processing``, ``completed`` after --slow-seconds
100000003  @sandbox_invalid    validate-user -> ``valid: false``; top-up -> 400
                               ``invalid_recipient``
100000004  @sandbox_fail       valid; ``processing``, then ``failed`` after --slow-seconds
                               with failure_reason ``recipient_cannot_receive``; the cost
                               is refunded to the balance
100000005  @sandbox_timeout    valid; top-up commits a ``completed`` order, then sleeps
                               --hang-seconds before answering (a shorter client timeout
                               fires after the supplier committed)
100000006  @sandbox_flaky      valid; the first top-up per idempotency key -> HTTP 500
                               ``internal_error`` with nothing created, later ones succeed
                               (``completed``); the first GET /orders/<id> of such an
                               order -> 503 ``unavailable``
100000007  @sandbox_broke      valid; top-up -> ``insufficient_balance`` (HTTP 500) whatever
                               the balance, until POST /_sandbox/balance (or a top-up on the
                               dashboard) arrives *after* at least one such failure (the
                               operator topped up the wallet);
                               from then on it behaves like @sandbox_ok. Reset re-arms it.
100000008  @sandbox_ratelimit  valid; the first top-up per key -> 429 ``rate_limited`` with
                               ``Retry-After: 1``; later ones succeed (``completed``)
100000009  @sandbox_renamed    the first validate-user of ``@sandbox_renamed`` resolves to
                               100000009; every later one resolves to 100000010 (the name
                               changed owners). Numeric 100000009 validates as
                               @sandbox_renamed until that first look-up, afterwards with
                               ``username: null``; numeric 100000010 validates as
                               ``@user100000010`` before and ``@sandbox_renamed`` after.
                               Top-ups resolve the name as it stands and never move it.
100000011  @sandbox_hold       valid; top-up commits a ``completed`` order, then sleeps
                               --slow-seconds before answering (within a 10 s client
                               timeout); for killing a worker mid-call
=========  ==================  ==========================================================

Any other numeric ID N is valid as ``@userN`` (and ``@userN`` resolves back to N); any other
well-formed ``@name`` is valid with a stable numeric ID derived from the lower-cased name.
Their top-ups complete at once.
``/_sandbox/rename`` overrides all of this for the name and ID it is given.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import os
import random
import re
import socket
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fakes._serving import FakeHTTPServer, ServingThread

USERNAME_RE = re.compile(r"^@[A-Za-z][A-Za-z0-9_]{3,31}$")
USER_ID_RE = re.compile(r"^[0-9]{1,20}$")
MAX_STARS = 1_000_000
MAX_IDEMPOTENCY_KEY_LENGTH = 128
MAX_BODY_BYTES = 1_000_000
ORDERS_PAGE_DEFAULT = 100
ORDERS_PAGE_MAX = 500
ORDER_STATUSES = ("pending", "processing", "completed", "failed", "reversed")
# The most a dashboard top-up adds at once: a typo must not add a fortune.
MAX_TOP_UP = Decimal("1000000")
CURRENCY = "USD"
CENT = Decimal("0.01")
FAILURE_REASON = "recipient_cannot_receive"
PLATFORM = "telegram"

OK = "ok"
SLOW = "slow"
INVALID = "invalid"
FAIL = "fail"
TIMEOUT = "timeout"
FLAKY = "flaky"
BROKE = "broke"
RATELIMIT = "ratelimit"
RENAMED = "renamed"
HOLD = "hold"
GENERIC = "generic"


@dataclass(frozen=True)
class MagicRecipient:
    """A recipient whose ID or username selects a scripted supplier behaviour."""

    user_id: str
    username: str
    behaviour: str


MAGIC_RECIPIENTS = (
    MagicRecipient("100000001", "@sandbox_ok", OK),
    MagicRecipient("100000002", "@sandbox_slow", SLOW),
    MagicRecipient("100000003", "@sandbox_invalid", INVALID),
    MagicRecipient("100000004", "@sandbox_fail", FAIL),
    MagicRecipient("100000005", "@sandbox_timeout", TIMEOUT),
    MagicRecipient("100000006", "@sandbox_flaky", FLAKY),
    MagicRecipient("100000007", "@sandbox_broke", BROKE),
    MagicRecipient("100000008", "@sandbox_ratelimit", RATELIMIT),
    MagicRecipient("100000009", "@sandbox_renamed", RENAMED),
    MagicRecipient("100000011", "@sandbox_hold", HOLD),
)
MAGIC_BY_ID = {magic.user_id: magic for magic in MAGIC_RECIPIENTS}
MAGIC_BY_USERNAME = {magic.username.lower(): magic for magic in MAGIC_RECIPIENTS}
RENAMED_ORIGINAL_ID = "100000009"
RENAMED_NEW_OWNER_ID = "100000010"
RENAMED_USERNAME = "@sandbox_renamed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    reference TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    user_id TEXT NOT NULL,
    username TEXT,
    behaviour TEXT NOT NULL,
    stars INTEGER NOT NULL,
    cost TEXT NOT NULL,
    status TEXT NOT NULL,
    final_status TEXT NOT NULL,
    complete_at REAL,
    failure_reason TEXT,
    created_at TEXT NOT NULL,
    get_calls INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS calls (reference TEXT PRIMARY KEY, topup_calls INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS replays (reference TEXT PRIMARY KEY, replays INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS key_flags (
    reference TEXT NOT NULL, flag TEXT NOT NULL, PRIMARY KEY (reference, flag)
);
CREATE TABLE IF NOT EXISTS renames (
    username_lower TEXT PRIMARY KEY, username TEXT NOT NULL, user_id TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class SupplierConfig:
    """How one sandbox supplier behaves: where it keeps state, its key, timings and prices."""

    db_path: str
    api_key: str = "sandbox-key"
    hang_seconds: float = 20.0
    slow_seconds: float = 3.0
    balance: Decimal = Decimal("10000")
    cost_per_star: Decimal = Decimal("0.0165")
    # Every API answer (not /_sandbox/) leaves this long after the request was processed, as a
    # distant supplier's would: for measuring how many calls the shop keeps in flight.
    latency_seconds: float = 0.0
    # API requests accepted per second (a sliding second, all endpoints); past it the answer is
    # 429 rate_limited with Retry-After and nothing is done. 0: no limit.
    rate_limit: float = 0.0
    # Volume prices: (from this many Stars, this cost per Star), as the demo catalogue records
    # them (shop/demo.py), so what the fake charges is what the shop expects to pay.
    volume_costs: tuple[tuple[int, Decimal], ...] = (
        (1000, Decimal("0.0150")), (2500, Decimal("0.0140")), (5000, Decimal("0.0132")))

    def cost_of(self, stars: int) -> Decimal:
        """What `stars` Stars cost at this supplier: the deepest volume price reached."""
        per_star = self.cost_per_star
        for from_stars, cost in sorted(self.volume_costs):
            if stars >= from_stars:
                per_star = cost
        return (per_star * stars).quantize(CENT, rounding=ROUND_HALF_UP)


class ApiError(Exception):
    """An error answer in the supplier's envelope; raising it inside a change keeps the change."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The JSON envelope the supplier sends for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return {"error": error}


@dataclass(frozen=True)
class Recipient:
    """A resolved Telegram account and the sandbox behaviour attached to its ID."""

    user_id: str
    username: str | None
    behaviour: str


@dataclass
class Reply:
    """What the handler sends back, and how: after a delay, garbled, or not at all.

    `body` is sent as JSON, unless it is bytes: then it goes as it is, as `content_type`.
    """

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    fault: str | None = None
    content_type: str = "application/json"


def _now_iso() -> str:
    return _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    """The supplier's timestamps: UTC to the second, e.g. 2026-11-30T15:00:00Z.

    One fixed-width form, so comparing the stored strings compares the times.
    """
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(value: str, name: str) -> datetime:
    """An ISO 8601 time from a request; one without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name} must be an ISO 8601 time.") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _money(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def _derived_user_id(username: str) -> str:
    """A stable numeric ID for a non-magic username, so the same name always maps the same."""
    # @userN is the name the sandbox gives numeric ID N, so it must lead back to N.
    generic = re.fullmatch(r"@user([1-9][0-9]{0,19})", username.lower())
    if generic:
        return generic.group(1)
    digest = hashlib.sha256(username.lower().encode()).digest()
    return str(int.from_bytes(digest[:8], "big") % 10**10 + 10**9)


def _behaviour_of(user_id: str) -> str:
    magic = MAGIC_BY_ID.get(user_id)
    return magic.behaviour if magic else GENERIC


class SandboxState:
    """The supplier's books, kept in SQLite and changed one locked transaction at a time."""

    def __init__(self, config: SupplierConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        directory = os.path.dirname(os.path.abspath(config.db_path))
        os.makedirs(directory, exist_ok=True)
        with self._lock:
            conn = self._connect()
            try:
                conn.executescript(SCHEMA)
            finally:
                conn.close()
        with self._transaction() as conn:
            self._seed_meta(conn, overwrite=False)

    def _connect(self) -> sqlite3.Connection:
        # One connection per change keeps sqlite3 objects out of other threads entirely.
        conn = sqlite3.connect(self.config.db_path, timeout=10, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and one connection for a single all-or-nothing change."""
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except ApiError:
                    # An ApiError is a deliberate answer: keep the counters and one-shot
                    # markers recorded before it (flaky, rate limit, broke).
                    conn.execute("COMMIT")
                    raise
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                conn.close()

    def _seed_meta(self, conn: sqlite3.Connection, *, overwrite: bool) -> None:
        initial = {
            "balance": _money(self.config.balance),
            "order_seq": "0",
            "broke_state": "armed",
            "renamed_state": "original",
            "fault_mode": "",
            "fault_count": "0",
        }
        verb = "INSERT OR REPLACE" if overwrite else "INSERT OR IGNORE"
        conn.executemany(f"{verb} INTO meta(key, value) VALUES (?, ?)", initial.items())

    @staticmethod
    def _get(conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row["value"])

    @staticmethod
    def _set(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _settle_due(self, conn: sqlite3.Connection) -> None:
        """Finish processing orders whose time has come; done on read so it survives restarts."""
        due = conn.execute(
            "SELECT order_id, final_status, cost FROM orders "
            "WHERE status = 'processing' AND complete_at <= ?",
            (time.time(),),
        ).fetchall()
        for row in due:
            if row["final_status"] == "failed":
                conn.execute(
                    "UPDATE orders SET status = 'failed', failure_reason = ? WHERE order_id = ?",
                    (FAILURE_REASON, row["order_id"]),
                )
                balance = Decimal(self._get(conn, "balance")) + Decimal(row["cost"])
                self._set(conn, "balance", _money(balance))
            else:
                conn.execute(
                    "UPDATE orders SET status = ? WHERE order_id = ?",
                    (row["final_status"], row["order_id"]),
                )

    @staticmethod
    def _order_json(row: sqlite3.Row) -> dict[str, Any]:
        order: dict[str, Any] = {
            "order_id": row["order_id"],
            "status": row["status"],
            "reference": row["reference"],
            "user_id": row["user_id"],
            "username": row["username"],
            "stars": row["stars"],
            "cost": row["cost"],
            "currency": CURRENCY,
            "created_at": row["created_at"],
        }
        if row["status"] == "failed":
            order["failure_reason"] = row["failure_reason"]
        return order

    def _resolve(
        self, conn: sqlite3.Connection, identifier: str, *, advance_rename: bool
    ) -> Recipient | None:
        """Who a numeric ID or @username is right now; None when the account is unusable."""
        moved = self._get(conn, "renamed_state") == "moved"
        if identifier.startswith("@"):
            name = identifier.lower()
            override = conn.execute(
                "SELECT user_id, username FROM renames WHERE username_lower = ?", (name,)
            ).fetchone()
            if override is not None:
                user_id, username = override["user_id"], override["username"]
            elif name == RENAMED_USERNAME:
                if advance_rename and not moved:
                    self._set(conn, "renamed_state", "moved")
                user_id = RENAMED_NEW_OWNER_ID if moved else RENAMED_ORIGINAL_ID
                username = RENAMED_USERNAME
            elif name in MAGIC_BY_USERNAME:
                user_id, username = MAGIC_BY_USERNAME[name].user_id, MAGIC_BY_USERNAME[name].username
            else:
                user_id, username = _derived_user_id(name), identifier
        else:
            override = conn.execute(
                "SELECT username FROM renames WHERE user_id = ? ORDER BY rowid DESC LIMIT 1",
                (identifier,),
            ).fetchone()
            user_id = identifier
            if override is not None:
                username = override["username"]
            elif identifier == RENAMED_ORIGINAL_ID:
                username = None if moved else RENAMED_USERNAME
            elif identifier == RENAMED_NEW_OWNER_ID and moved:
                username = RENAMED_USERNAME
            elif identifier in MAGIC_BY_ID:
                username = MAGIC_BY_ID[identifier].username
            else:
                username = f"@user{identifier}"
        behaviour = _behaviour_of(user_id)
        if behaviour == INVALID:
            return None
        return Recipient(user_id=user_id, username=username, behaviour=behaviour)

    def _first_time(self, conn: sqlite3.Connection, reference: str, flag: str) -> bool:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO key_flags(reference, flag) VALUES (?, ?)", (reference, flag)
        )
        return cursor.rowcount == 1

    def _take_fault(self, conn: sqlite3.Connection) -> str | None:
        count = int(self._get(conn, "fault_count"))
        if count <= 0:
            return None
        self._set(conn, "fault_count", str(count - 1))
        return self._get(conn, "fault_mode") or None

    # --- API -------------------------------------------------------------------------

    def validate_user(self, identifier: str) -> dict[str, Any]:
        """Answer POST /validate-user."""
        with self._transaction() as conn:
            recipient = self._resolve(conn, identifier, advance_rename=True)
        if recipient is None:
            return {"valid": False, "user_id": None, "username": None, "reason": "not_found"}
        return {"valid": True, "user_id": recipient.user_id, "username": recipient.username}

    def count_topup_call(self, reference: str) -> None:
        """Count a POST /topup that arrived with this key, whatever happens to it next."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO calls(reference, topup_calls) VALUES (?, 1) "
                "ON CONFLICT(reference) DO UPDATE SET topup_calls = topup_calls + 1",
                (reference,),
            )

    def place_topup(self, *, reference: str, identifier: str, stars: int) -> Reply:
        """Answer POST /topup: replay, refuse, or charge the balance and create the order."""
        fingerprint = json.dumps(
            {"platform": PLATFORM, "user_id": identifier, "stars": stars}, sort_keys=True
        )
        with self._transaction() as conn:
            self._settle_due(conn)
            existing = conn.execute(
                "SELECT * FROM orders WHERE reference = ?", (reference,)
            ).fetchone()
            if existing is not None:
                if existing["fingerprint"] != fingerprint:
                    raise ApiError(
                        409,
                        "idempotency_conflict",
                        "This Idempotency-Key was already used with a different request body.",
                    )
                # A replay: the key already placed an order. A supplier whose dedupe fails
                # would pay it twice, so the chaos run counts them (GET /_sandbox/orders).
                conn.execute(
                    "INSERT INTO replays(reference, replays) VALUES (?, 1) "
                    "ON CONFLICT(reference) DO UPDATE SET replays = replays + 1", (reference,))
                return Reply(200, self._order_json(existing), fault=self._take_fault(conn))

            recipient = self._resolve(conn, identifier, advance_rename=False)
            if recipient is None:
                raise ApiError(400, "invalid_recipient", "This account cannot receive Stars.")
            behaviour = recipient.behaviour
            if behaviour == FLAKY and self._first_time(conn, reference, "flaky_topup"):
                raise ApiError(500, "internal_error", "Upstream hiccup; nothing was created.")
            if behaviour == RATELIMIT and self._first_time(conn, reference, "rate_limited"):
                raise ApiError(429, "rate_limited", "Too many requests.", retry_after=1)
            if behaviour == BROKE and self._get(conn, "broke_state") != "fixed":
                self._set(conn, "broke_state", "failed")
                raise ApiError(500, "insufficient_balance", "Supplier wallet balance too low.")

            cost = self.config.cost_of(stars)
            balance = Decimal(self._get(conn, "balance"))
            if cost > balance:
                raise ApiError(500, "insufficient_balance", "Supplier wallet balance too low.")
            self._set(conn, "balance", _money(balance - cost))

            seq = int(self._get(conn, "order_seq")) + 1
            self._set(conn, "order_seq", str(seq))
            if behaviour in (SLOW, FAIL):
                status, complete_at = "processing", time.time() + self.config.slow_seconds
            else:
                status, complete_at = "completed", None
            conn.execute(
                "INSERT INTO orders (order_id, seq, reference, fingerprint, user_id, username, "
                "behaviour, stars, cost, status, final_status, complete_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f"SUP-{seq:06d}",
                    seq,
                    reference,
                    fingerprint,
                    recipient.user_id,
                    recipient.username,
                    behaviour,
                    stars,
                    _money(cost),
                    status,
                    "failed" if behaviour == FAIL else "completed",
                    complete_at,
                    _now_iso(),
                ),
            )
            row = conn.execute("SELECT * FROM orders WHERE seq = ?", (seq,)).fetchone()
            fault = self._take_fault(conn)
        delay = {TIMEOUT: self.config.hang_seconds, HOLD: self.config.slow_seconds}.get(
            behaviour, 0.0
        )
        return Reply(201, self._order_json(row), delay=delay, fault=fault)

    def get_order(self, order_id: str) -> dict[str, Any]:
        """Answer GET /orders/<order_id>."""
        with self._transaction() as conn:
            self._settle_due(conn)
            row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
            if row is None:
                raise ApiError(404, "not_found", f"No order {order_id}.")
            conn.execute(
                "UPDATE orders SET get_calls = get_calls + 1 WHERE order_id = ?", (order_id,)
            )
            if row["behaviour"] == FLAKY and row["get_calls"] == 0:
                raise ApiError(503, "unavailable", "Temporarily unavailable; try again.")
            return self._order_json(row)

    def find_by_reference(self, reference: str) -> dict[str, Any]:
        """Answer GET /orders?reference=<key>."""
        with self._transaction() as conn:
            self._settle_due(conn)
            row = conn.execute("SELECT * FROM orders WHERE reference = ?", (reference,)).fetchone()
            if row is None:
                raise ApiError(404, "not_found", "No order with this reference.")
            return self._order_json(row)

    def orders_between(
        self, *, since: datetime | None, until: datetime | None, limit: int, after_seq: int
    ) -> dict[str, Any]:
        """Answer GET /orders?created_after=&created_before=: one page, oldest first."""
        where, args = ["seq > ?"], [after_seq]
        if since is not None:
            # Stored to the second: an order at 10:00:00.7 is stored as 10:00:00, so the
            # window starts at the second its start falls in.
            where.append("created_at >= ?")
            args.append(_iso(since.replace(microsecond=0)))
        if until is not None:
            where.append("created_at < ?")
            args.append(_iso(until))
        with self._transaction() as conn:
            self._settle_due(conn)
            rows = conn.execute(
                f"SELECT * FROM orders WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",  # nosec B608
                (*args, limit + 1),
            ).fetchall()
        page = rows[:limit]
        more = len(rows) > limit
        return {"orders": [self._order_json(row) for row in page],
                "next_cursor": f"seq-{page[-1]['seq']}" if more else None}

    def seed_order(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Record an order as the supplier's books show it, charging nothing (test set-up)."""
        reference = payload.get("reference")
        if not isinstance(reference, str) or not reference:
            raise ApiError(400, "invalid_request", "reference is required.")
        user_id = payload.get("user_id")
        if not isinstance(user_id, str) or not USER_ID_RE.match(user_id):
            raise ApiError(400, "invalid_request", "user_id must be 1-20 digits.")
        stars = _require_stars(payload)
        status = payload.get("status", "completed")
        if status not in ORDER_STATUSES:
            raise ApiError(400, "invalid_request", f"status must be one of {ORDER_STATUSES}.")
        created = payload.get("created_at")
        created_at = (_iso(_parse_time(created, "created_at")) if isinstance(created, str)
                      else _now_iso())
        cost = payload.get("cost")
        amount = (_parse_amount(cost) if cost is not None
                  else self.config.cost_of(stars))
        username = payload.get("username")
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM orders WHERE reference = ?", (reference,)).fetchone():
                raise ApiError(409, "idempotency_conflict", "An order with this reference exists.")
            seq = int(self._get(conn, "order_seq")) + 1
            self._set(conn, "order_seq", str(seq))
            conn.execute(
                "INSERT INTO orders (order_id, seq, reference, fingerprint, user_id, username, "
                "behaviour, stars, cost, status, final_status, complete_at, failure_reason, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                (f"SUP-{seq:06d}", seq, reference, "seeded", user_id,
                 username if isinstance(username, str) else None, GENERIC, stars, _money(amount),
                 status, status, FAILURE_REASON if status == "failed" else None, created_at),
            )
            row = conn.execute("SELECT * FROM orders WHERE seq = ?", (seq,)).fetchone()
            return self._order_json(row)

    def balance(self) -> dict[str, Any]:
        """Answer GET /balance."""
        with self._transaction() as conn:
            self._settle_due(conn)
            return {"balance": self._get(conn, "balance"), "currency": CURRENCY}

    # --- control ---------------------------------------------------------------------

    def set_balance(self, amount: Decimal) -> dict[str, Any]:
        """Set the wallet balance; after a @sandbox_broke failure this also "fixes" it."""
        with self._transaction() as conn:
            self._set(conn, "balance", _money(amount))
            if self._get(conn, "broke_state") == "failed":
                self._set(conn, "broke_state", "fixed")
            return {"balance": self._get(conn, "balance"), "currency": CURRENCY}

    def top_up(self, amount: Decimal) -> dict[str, Any]:
        """Add to the wallet balance, as paying the supplier would; "fixes" @sandbox_broke too."""
        with self._transaction() as conn:
            self._settle_due(conn)
            self._set(conn, "balance", _money(Decimal(self._get(conn, "balance")) + amount))
            if self._get(conn, "broke_state") == "failed":
                self._set(conn, "broke_state", "fixed")
            return {"balance": self._get(conn, "balance"), "currency": CURRENCY}

    def recent_orders(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest orders first, for the dashboard."""
        with self._transaction() as conn:
            self._settle_due(conn)
            rows = conn.execute("SELECT * FROM orders ORDER BY seq DESC LIMIT ?",
                                (limit,)).fetchall()
        return [self._order_json(row) for row in rows]

    def list_orders(self) -> list[dict[str, Any]]:
        """Every order with the number of POST /topup calls seen for its key, and how many of
        them came after its order existed (replays)."""
        with self._transaction() as conn:
            self._settle_due(conn)
            rows = conn.execute(
                "SELECT orders.*, COALESCE(calls.topup_calls, 0) AS topup_calls, "
                "COALESCE(replays.replays, 0) AS replays FROM orders "
                "LEFT JOIN calls ON calls.reference = orders.reference "
                "LEFT JOIN replays ON replays.reference = orders.reference ORDER BY seq"
            ).fetchall()
        return [{**self._order_json(row), "topup_calls": row["topup_calls"],
                 "replays": row["replays"]} for row in rows]

    def calls(self, reference: str) -> dict[str, int]:
        """How many POST /topup requests carried this key, and how many orders it produced."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT topup_calls FROM calls WHERE reference = ?", (reference,)
            ).fetchone()
            created = conn.execute(
                "SELECT COUNT(*) AS n FROM orders WHERE reference = ?", (reference,)
            ).fetchone()
        return {"topup_calls": row["topup_calls"] if row else 0, "orders_created": created["n"]}

    def rename(self, username: str, user_id: str) -> dict[str, Any]:
        """Make @username belong to user_id from now on (and user_id show that name)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO renames(username_lower, username, user_id) VALUES (?, ?, ?)",
                (username.lower(), username, user_id),
            )
        return {"username": username, "user_id": user_id}

    def reset(self) -> None:
        """Wipe every order, counter and marker and restore the starting balance."""
        with self._transaction() as conn:
            for table in ("orders", "calls", "replays", "key_flags", "renames"):
                conn.execute(f"DELETE FROM {table}")
            self._seed_meta(conn, overwrite=True)

    def set_fault(self, mode: str, count: int) -> dict[str, Any]:
        """Garble or drop the answers to the next `count` committed top-ups."""
        with self._transaction() as conn:
            self._set(conn, "fault_mode", mode)
            self._set(conn, "fault_count", str(count if mode else 0))
        return {"mode": mode, "count": count}


# --- request parsing -----------------------------------------------------------------


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        # parse_float=Decimal so "stars": 5.0 stays distinguishable from 5 and money exact.
        payload = json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_request", "Body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_request", "Body must be a JSON object.")
    return payload


def _require_platform(payload: dict[str, Any]) -> None:
    if "platform" not in payload:
        raise ApiError(400, "invalid_request", "Missing field: platform.")
    if payload["platform"] != PLATFORM:
        raise ApiError(400, "invalid_request", "Unsupported platform; only 'telegram'.")


def _require_user_id(payload: dict[str, Any]) -> str:
    if "user_id" not in payload:
        raise ApiError(400, "invalid_request", "Missing field: user_id.")
    user_id = payload["user_id"]
    if not isinstance(user_id, str) or not (
        USER_ID_RE.match(user_id) or USERNAME_RE.match(user_id)
    ):
        raise ApiError(
            400, "invalid_request", "user_id must be 1-20 digits or an @username."
        )
    return user_id


def _require_stars(payload: dict[str, Any]) -> int:
    if "stars" not in payload:
        raise ApiError(400, "invalid_request", "Missing field: stars.")
    stars = payload["stars"]
    # bool is an int subclass; true must not mean one star.
    if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= MAX_STARS:
        raise ApiError(
            400, "invalid_request", f"stars must be an integer between 1 and {MAX_STARS}."
        )
    return stars


def _parse_amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ApiError(400, "invalid_request", "balance must be a decimal string.")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ApiError(400, "invalid_request", "balance must be a decimal string.") from None
    if not amount.is_finite() or amount < 0:
        raise ApiError(400, "invalid_request", "balance must be a non-negative amount.")
    return amount


def _orders_page(state: SandboxState, query: dict[str, list[str]]) -> dict[str, Any]:
    """GET /orders by creation time: parse the window, page size and cursor, then read a page."""
    since = query.get("created_after", [""])[0]
    until = query.get("created_before", [""])[0]
    limit_text = query.get("limit", [str(ORDERS_PAGE_DEFAULT)])[0]
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= ORDERS_PAGE_MAX:
        raise ApiError(400, "invalid_request", f"limit must be 1-{ORDERS_PAGE_MAX}.")
    cursor = query.get("cursor", [""])[0]
    after_seq = 0
    if cursor:
        match = re.fullmatch(r"seq-([0-9]{1,12})", cursor)
        if match is None:
            raise ApiError(400, "invalid_request", "Unknown cursor.")
        after_seq = int(match.group(1))
    return state.orders_between(
        since=_parse_time(since, "created_after") if since else None,
        until=_parse_time(until, "created_before") if until else None,
        limit=int(limit_text), after_seq=after_seq,
    )


DASHBOARD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sandbox supplier: wallet</title></head>
<body>
<h1>Sandbox supplier</h1>
{notice}
<p>Wallet balance: <strong id="balance">{balance}</strong> {currency}</p>
<form method="post" action="/_sandbox/">
  <label for="amount">Top up by</label>
  <input id="amount" name="amount" type="number" min="0.01" step="0.01" value="100.00" required>
  {currency}
  <button type="submit">Top up</button>
</form>
<h2>Latest orders</h2>
<table id="orders">
<tr><th>Order</th><th>Reference</th><th>Recipient</th><th>Stars</th><th>Cost</th>
<th>Status</th><th>Created</th></tr>
{rows}
</table>
</body>
</html>
"""


def _dashboard_html(wallet: dict[str, Any], orders: list[dict[str, Any]],
                    query: dict[str, list[str]]) -> bytes:
    """The dashboard page; every value escaped, no script and no inline style."""
    notice = ""
    if query.get("added"):
        notice = f'<p id="notice">Added {html.escape(query["added"][0])} {CURRENCY}.</p>'
    elif query.get("error"):
        notice = f'<p id="notice">{html.escape(query["error"][0])}</p>'
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(value))}</td>" for value in (
            order["order_id"], order["reference"], order["username"] or order["user_id"],
            order["stars"], order["cost"], order["status"], order["created_at"])) + "</tr>"
        for order in orders
    )
    return DASHBOARD.format(notice=notice, balance=html.escape(wallet["balance"]),
                            currency=html.escape(wallet["currency"]), rows=rows).encode()


ORDER_PATH_RE = re.compile(r"^/orders/([^/]+)$")
FAULT_MODES = ("malformed", "reset", "none", "", "random")
RANDOM_FAULTS = ("p_5xx", "p_429", "p_500", "p_reset", "p_slow")


class RandomFaults:
    """Faults drawn at random per request, with the probabilities of POST /_sandbox/fault."""

    def __init__(self, probabilities: dict[str, float], seed: int | None) -> None:
        self.probabilities = probabilities
        self._random = random.Random(seed)  # noqa: S311  (test faults, not secrets)
        self._lock = threading.Lock()

    def _draw(self, names: tuple[str, ...]) -> str | None:
        with self._lock:
            roll = self._random.random()
        for name in names:
            roll -= self.probabilities.get(name, 0.0)
            if roll < 0:
                return name
        return None

    def before(self) -> ApiError | None:
        """A refusal before anything is done, or None."""
        drawn = self._draw(("p_5xx", "p_429"))
        if drawn == "p_5xx":
            return ApiError(503, "unavailable", "Temporarily unavailable (random fault).")
        if drawn == "p_429":
            return ApiError(429, "rate_limited", "Too many requests (random fault).", retry_after=1)
        return None

    def after_commit(self, reply: Reply, hang_seconds: float) -> Reply:
        """How a committed top-up's answer goes wrong, if it does."""
        drawn = self._draw(("p_500", "p_reset", "p_slow"))
        if drawn == "p_500":
            return Reply(500, {"error": {"code": "internal_error",
                                         "message": "Committed, then failed (random fault)."}})
        if drawn == "p_reset":
            reply.fault = "reset"
        elif drawn == "p_slow":
            reply.delay = max(reply.delay, hang_seconds)
        return reply


class SupplierRequestHandler(BaseHTTPRequestHandler):
    """Routes one HTTP request to the sandbox state and writes the supplier's answer."""

    server: SandboxSupplierServer
    server_version = "SandboxSupplier/1.0"
    # A client that connects and never sends must not pin a thread forever.
    timeout = 30

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        sys.stderr.write(f"{self.command} {self.path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"sandbox-supplier: {format % args}\n")

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        control = url.path.startswith("/_sandbox/")
        traffic = self.server.traffic
        if not control:
            traffic.enter()
        try:
            self._dispatch_request(url.path, query, control)
        finally:
            if not control:
                traffic.leave()

    def _dispatch_request(self, path: str, query: dict[str, list[str]], control: bool) -> None:
        config = self.server.config
        try:
            body = self._read_body()
            if control:
                reply = self._control(path, query, body)
            else:
                self._check_auth()
                self.server.traffic.admit(config.rate_limit)
                faults = self.server.random_faults
                refusal = faults.before() if faults else None
                if refusal is not None:
                    raise refusal
                reply = self._api(path, query, body)
                if faults and path == "/topup" and reply.status in (200, 201) \
                        and not reply.fault:
                    reply = faults.after_commit(reply, config.hang_seconds)
        except ApiError as error:
            headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
            reply = Reply(error.status, error.body(), headers=headers)
        if not control and config.latency_seconds:
            reply.delay += config.latency_seconds
        if reply.delay:
            # Sleep outside the state lock so other requests go on; wake early on shutdown.
            if self.server.stopping.wait(reply.delay):
                self._drop_connection("DROPPED (server stopping)")
                return
        if reply.fault == "reset":
            self._drop_connection("RESET (fault)")
            return
        if reply.fault == "malformed":
            self._send(reply.status, b'{"order_id": "SUP-', reply.headers)
            return
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self._send(reply.status, payload, reply.headers, reply.content_type)

    def _read_body(self) -> bytes:
        length_header = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_header)
        except ValueError:
            raise ApiError(400, "invalid_request", "Bad Content-Length.") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise ApiError(400, "invalid_request", "Body too large.")
        return self.rfile.read(length) if length else b""

    def _check_auth(self) -> None:
        expected = f"Bearer {self.server.config.api_key}".encode()
        given = (self.headers.get("Authorization") or "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(401, "unauthorized", "Missing or invalid API key.")

    def _method_not_allowed(self) -> ApiError:
        return ApiError(405, "invalid_request", f"{self.command} is not allowed here.")

    def _api(self, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        state = self.server.state
        if path == "/validate-user":
            if self.command != "POST":
                raise self._method_not_allowed()
            payload = _parse_json_object(body)
            _require_platform(payload)
            return Reply(200, state.validate_user(_require_user_id(payload)))
        if path == "/topup":
            if self.command != "POST":
                raise self._method_not_allowed()
            reference = self.headers.get("Idempotency-Key")
            if not reference or len(reference) > MAX_IDEMPOTENCY_KEY_LENGTH:
                raise ApiError(
                    400, "invalid_request", "Idempotency-Key header of 1-128 characters required."
                )
            state.count_topup_call(reference)
            payload = _parse_json_object(body)
            _require_platform(payload)
            identifier = _require_user_id(payload)
            stars = _require_stars(payload)
            return state.place_topup(reference=reference, identifier=identifier, stars=stars)
        if path == "/orders":
            if self.command != "GET":
                raise self._method_not_allowed()
            if "created_after" in query or "created_before" in query:
                return Reply(200, _orders_page(state, query))
            references = query.get("reference")
            if not references or not references[0]:
                raise ApiError(400, "invalid_request", "Query parameter reference is required.")
            return Reply(200, state.find_by_reference(references[0]))
        match = ORDER_PATH_RE.match(path)
        if match:
            if self.command != "GET":
                raise self._method_not_allowed()
            return Reply(200, state.get_order(match.group(1)))
        if path == "/balance":
            if self.command != "GET":
                raise self._method_not_allowed()
            return Reply(200, state.balance())
        raise ApiError(404, "not_found", f"No endpoint {path}.")

    def _control(self, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        state = self.server.state
        routes = {
            "/_sandbox/": ("GET", "POST"),
            "/_sandbox/balance": ("POST",),
            "/_sandbox/orders": ("GET", "POST"),
            "/_sandbox/calls": ("GET",),
            "/_sandbox/rename": ("POST",),
            "/_sandbox/reset": ("POST",),
            "/_sandbox/fault": ("POST",),
            "/_sandbox/traffic": ("GET",),
        }
        if path not in routes:
            raise ApiError(404, "not_found", f"No control endpoint {path}.")
        if self.command not in routes[path]:
            raise self._method_not_allowed()
        if path == "/_sandbox/":
            return self._dashboard(query, body)
        if path == "/_sandbox/balance":
            payload = _parse_json_object(body)
            return Reply(200, state.set_balance(_parse_amount(payload.get("balance"))))
        if path == "/_sandbox/orders":
            if self.command == "POST":
                return Reply(201, state.seed_order(_parse_json_object(body)))
            return Reply(200, state.list_orders())
        if path == "/_sandbox/calls":
            references = query.get("reference")
            if not references:
                raise ApiError(400, "invalid_request", "Query parameter reference is required.")
            return Reply(200, state.calls(references[0]))
        if path == "/_sandbox/rename":
            payload = _parse_json_object(body)
            username, user_id = payload.get("username"), payload.get("user_id")
            if not isinstance(username, str) or not USERNAME_RE.match(username):
                raise ApiError(400, "invalid_request", "username must be an @username.")
            if not isinstance(user_id, str) or not USER_ID_RE.match(user_id):
                raise ApiError(400, "invalid_request", "user_id must be 1-20 digits.")
            return Reply(200, state.rename(username, user_id))
        if path == "/_sandbox/traffic":
            return Reply(200, self.server.traffic.snapshot())
        if path == "/_sandbox/reset":
            self.server.traffic.reset()
            state.reset()
            return Reply(200, {"reset": True})
        payload = _parse_json_object(body)
        mode = payload.get("mode", "")
        if mode == "random":
            return Reply(200, self._random_faults(payload))
        self.server.random_faults = None
        count = payload.get("count", 1)
        if mode not in FAULT_MODES or isinstance(count, bool) or not isinstance(count, int):
            raise ApiError(400, "invalid_request", "mode must be malformed, reset, random or none.")
        return Reply(200, state.set_fault("" if mode == "none" else mode, count))

    def _random_faults(self, payload: dict[str, Any]) -> dict[str, Any]:
        probabilities: dict[str, float] = {}
        for name in RANDOM_FAULTS:
            value = payload.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal) \
                    or not 0 <= value <= 1:
                raise ApiError(400, "invalid_request", f"{name} must be a probability.")
            probabilities[name] = float(value)
        seed = payload.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ApiError(400, "invalid_request", "seed must be an integer.")
        self.server.random_faults = RandomFaults(probabilities, seed)
        return {"mode": "random", **probabilities, "seed": seed}

    def _dashboard(self, query: dict[str, list[str]], body: bytes) -> Reply:
        """The supplier's own page: GET shows the wallet, POST tops it up and redirects back."""
        state = self.server.state
        if self.command == "POST":
            form = parse_qs(body.decode("utf-8", errors="replace"))
            raw = (form.get("amount") or [""])[0].strip()
            try:
                amount = Decimal(raw)
            except InvalidOperation:
                amount = Decimal("NaN")
            if not amount.is_finite() or not Decimal("0") < amount <= MAX_TOP_UP:
                location = "/_sandbox/?" + urlencode({"error": f"Not an amount to add: {raw!r}"})
            else:
                state.top_up(amount)
                location = "/_sandbox/?" + urlencode({"added": _money(amount)})
            # 303: the browser follows with a GET, so reloading the page does not pay twice.
            return Reply(303, b"", headers={"Location": location}, content_type="text/plain")
        wallet = state.balance()
        return Reply(200, _dashboard_html(wallet, state.recent_orders(), query),
                     content_type="text/html; charset=utf-8")

    def _send(self, status: int, payload: bytes, headers: dict[str, str],
              content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired); the order is committed all the same.
            self.log_message("%s %s client went away before the answer", self.command, self.path)

    def _drop_connection(self, why: str) -> None:
        """Close without answering; SO_LINGER 0 makes the close a TCP reset."""
        sys.stderr.write(f"{self.command} {self.path} {why}\n")
        self.close_connection = True
        try:
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        except OSError:
            pass


class Traffic:
    """API requests as they come: in flight now and at most, accepted per sliding second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.in_flight = 0
            self.max_in_flight = 0
            self.requests = 0
            self.rate_limited = 0
            self.max_per_second = 0
            self._accepted: list[float] = []

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.requests += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def admit(self, per_second: float) -> None:
        """Count one request in the sliding second; refuse it with 429 past `per_second`."""
        now = time.monotonic()
        with self._lock:
            self._accepted = [at for at in self._accepted if at > now - 1.0]
            if per_second and len(self._accepted) >= per_second:
                self.rate_limited += 1
                raise ApiError(429, "rate_limited", "Too many requests.", retry_after=1)
            self._accepted.append(now)
            self.max_per_second = max(self.max_per_second, len(self._accepted))

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "in_flight": self.in_flight,
                    "max_in_flight": self.max_in_flight, "rate_limited": self.rate_limited,
                    "max_per_second": self.max_per_second}


class SandboxSupplierServer(FakeHTTPServer):
    """A threaded HTTP server carrying the sandbox state and a stop signal for sleepers."""

    def __init__(self, address: tuple[str, int], config: SupplierConfig) -> None:
        self.config = config
        self.state = SandboxState(config)
        self.traffic = Traffic()
        self.stopping = threading.Event()
        self.random_faults: RandomFaults | None = None
        super().__init__(address, SupplierRequestHandler)

    def before_stop(self) -> None:
        self.stopping.set()  # wake handlers sleeping in hang/slow behaviours


class RunningSupplier(ServingThread[SandboxSupplierServer]):
    """A sandbox supplier serving from a background thread."""

    @property
    def config(self) -> SupplierConfig:
        return self.server.config


def start_sandbox_supplier(
    config: SupplierConfig, *, host: str = "127.0.0.1", port: int = 0
) -> RunningSupplier:
    """Start a sandbox supplier in a daemon thread; port 0 picks a free port."""
    return RunningSupplier(SandboxSupplierServer((host, port), config), name="sandbox-supplier")


def main(argv: list[str] | None = None) -> None:
    """Serve the sandbox supplier until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m fakes.supplier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--db", default="var/sandbox_supplier.sqlite3")
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--hang-seconds", type=float, default=20.0)
    parser.add_argument("--slow-seconds", type=float, default=3.0)
    parser.add_argument("--balance", type=Decimal, default=Decimal("10000"))
    parser.add_argument("--cost-per-star", type=Decimal, default=Decimal("0.0165"))
    parser.add_argument("--latency-seconds", type=float, default=0.0,
                        help="delay every API answer by this long (a distant supplier)")
    parser.add_argument("--rate-limit", type=float, default=0.0,
                        help="API requests per second before 429 rate_limited (0: none)")
    args = parser.parse_args(argv)
    config = SupplierConfig(
        db_path=args.db,
        api_key=args.api_key,
        hang_seconds=args.hang_seconds,
        slow_seconds=args.slow_seconds,
        balance=args.balance,
        cost_per_star=args.cost_per_star,
        latency_seconds=args.latency_seconds,
        rate_limit=args.rate_limit,
    )
    server = SandboxSupplierServer((args.host, args.port), config)
    sys.stderr.write(f"sandbox supplier listening on {server.url} (db {args.db})\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()


if __name__ == "__main__":
    main()
