"""SupplierClient for the in-process sandbox: top-ups are rows in this database, never Stars.

Partner test keys place their orders here (orders routed with SANDBOX_SUPPLIER_CODE), so a
partner can try the whole API, webhooks included, on the live host without a second service
and without spending anything at the real supplier. It speaks the same values as the HTTP
client and follows a few of the HTTP sandbox's magic recipients:

- 100000003 / @sandbox_invalid: not a valid recipient;
- 100000004 / @sandbox_fail: accepted, then failed (``recipient_cannot_receive``);
- 100000002 / @sandbox_slow: completes after a few seconds more;
- anything else: completes PARTNER_SANDBOX_DELIVERY_SECONDS after it was placed.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.exceptions import InvalidRecipient, SupplierNotFound
from orders.models import SandboxTopup
from orders.suppliers.base import (
    RecipientInfo,
    SupplierBalance,
    SupplierOrder,
    SupplierOrderStatus,
)

SANDBOX_SUPPLIER_CODE = "partner-sandbox"
INVALID_ID, FAIL_ID, SLOW_ID = "100000003", "100000004", "100000002"
_MAGIC_NAMES = {"@sandbox_invalid": INVALID_ID, "@sandbox_fail": FAIL_ID, "@sandbox_slow": SLOW_ID,
                "@sandbox_ok": "100000001"}
_SLOW_EXTRA = timedelta(seconds=5)
# Plenty, and never read as ours: the sandbox is not a wallet anyone tops up.
_BALANCE = Decimal("1000000.00")


def _user_id_of(username: str) -> str:
    """The HTTP sandbox's rule: @userN is N, other names get a stable derived ID."""
    name = username.lower()
    if name in _MAGIC_NAMES:
        return _MAGIC_NAMES[name]
    generic = re.fullmatch(r"@user([1-9][0-9]{0,19})", name)
    if generic:
        return generic.group(1)
    digest = hashlib.sha256(name.encode()).digest()
    return str(int.from_bytes(digest[:8], "big") % 10**10 + 10**9)


class SandboxSupplierClient:
    """The SupplierClient protocol over SandboxTopup rows; every call is local and instant."""

    def __repr__(self) -> str:
        return "SandboxSupplierClient()"

    def validate_recipient(self, recipient: str) -> RecipientInfo:
        if recipient.startswith("@"):
            user_id, username = _user_id_of(recipient), recipient
        else:
            user_id, username = recipient, f"@user{recipient}"
        if user_id == INVALID_ID:
            raise InvalidRecipient(f"Supplier cannot deliver to {recipient} (sandbox)",
                                   code="invalid_recipient")
        return RecipientInfo(user_id=user_id, username=username,
                             raw={"sandbox": True, "user_id": user_id, "username": username})

    def place_topup(self, *, user_id: str, stars: int, idempotency_key: str) -> SupplierOrder:
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        if user_id == INVALID_ID:
            raise InvalidRecipient("Recipient cannot receive Stars (sandbox)",
                                   code="invalid_recipient")
        now = timezone.now()
        delay = timedelta(seconds=settings.PARTNER_SANDBOX_DELIVERY_SECONDS)
        try:
            with transaction.atomic():
                topup = SandboxTopup.objects.create(
                    order_id=f"sbx_{hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]}",
                    reference=idempotency_key, user_id=user_id, stars=stars,
                    cost=Decimal("0.00"),
                    completes_at=now + delay + (_SLOW_EXTRA if user_id == SLOW_ID else timedelta()),
                )
        except IntegrityError:
            # The same key again: the order it placed, as a real supplier answers.
            topup = SandboxTopup.objects.get(reference=idempotency_key)
        return self._order(topup, now)

    def get_order(self, supplier_order_id: str) -> SupplierOrder:
        topup = SandboxTopup.objects.filter(order_id=supplier_order_id).first()
        if topup is None:
            raise SupplierNotFound(f"No sandbox order {supplier_order_id}", code="not_found")
        return self._order(topup, timezone.now())

    def find_by_reference(self, idempotency_key: str) -> SupplierOrder | None:
        topup = SandboxTopup.objects.filter(reference=idempotency_key).first()
        return self._order(topup, timezone.now()) if topup else None

    def balance(self) -> SupplierBalance:
        return SupplierBalance(amount=_BALANCE, currency="USD", raw={"sandbox": True})

    def orders_between(self, *, since: datetime, until: datetime) -> list[SupplierOrder]:
        now = timezone.now()
        return [self._order(topup, now) for topup in SandboxTopup.objects.filter(
            created_at__gte=since, created_at__lt=until).order_by("created_at", "pk")]

    @staticmethod
    def _order(topup: SandboxTopup, now: datetime) -> SupplierOrder:
        status = SupplierOrderStatus.PROCESSING
        reason = ""
        if now >= topup.completes_at:
            if topup.user_id == FAIL_ID:
                status, reason = SupplierOrderStatus.FAILED, "recipient_cannot_receive"
            else:
                status = SupplierOrderStatus.COMPLETED
        return SupplierOrder(
            order_id=topup.order_id, status=status, reference=topup.reference,
            user_id=topup.user_id, stars=topup.stars, cost=topup.cost, failure_reason=reason,
            created_at=topup.created_at,
            # The HTTP client's audit shape: "status" there is the HTTP status (an integer,
            # SupplierAttempt.response_status), the supplier's answer goes under "body".
            raw={"sandbox": True, "body": {"order_id": topup.order_id, "status": str(status),
                                           "failure_reason": reason}},
        )
