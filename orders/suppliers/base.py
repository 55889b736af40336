"""The one interface the shop uses to buy Stars from a supplier, and the values it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol


class SupplierOrderStatus(StrEnum):
    """Where the supplier says a top-up stands."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    REVERSED = "reversed"

    @classmethod
    def from_supplier(cls, value: str) -> SupplierOrderStatus:
        """Map a supplier's status string; anything unrecognised counts as still processing.

        An unknown status may hide a success or a failure we cannot read. PROCESSING keeps
        the order being polled and neither refunds the buyer nor re-sends the top-up, the
        only moves that are safe either way (suppliers document an explicit "unknown" state
        with the advice "do not refund or reprocess").
        """
        normalised = value.strip().lower()
        return _STATUS_ALIASES.get(normalised, cls.PROCESSING)

    @property
    def is_final(self) -> bool:
        """Whether the supplier will not move this order on by itself any more."""
        return self in (SupplierOrderStatus.COMPLETED, SupplierOrderStatus.FAILED,
                        SupplierOrderStatus.REVERSED)


# Synonyms seen at real suppliers (created/submitted) fold into our five states.
_STATUS_ALIASES: dict[str, SupplierOrderStatus] = {
    **{status.value: status for status in SupplierOrderStatus},
    "created": SupplierOrderStatus.PENDING,
    "submitted": SupplierOrderStatus.PROCESSING,
}


@dataclass(frozen=True)
class RecipientInfo:
    """A Telegram account the supplier can top up: its numeric ID and current username."""

    user_id: str
    username: str | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class SupplierOrder:
    """A top-up as the supplier reports it; `raw` holds the request and response for audit."""

    order_id: str
    status: SupplierOrderStatus
    reference: str
    user_id: str
    stars: int
    cost: Decimal | None
    failure_reason: str = ""
    # When the supplier created it, if it says (its list by date always does).
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class SupplierBalance:
    """Our prepaid wallet at the supplier."""

    amount: Decimal
    currency: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class SupplierClient(Protocol):
    """What the shop needs from a Stars supplier; errors come from orders.exceptions."""

    def validate_recipient(self, recipient: str) -> RecipientInfo:
        """Resolve a numeric ID or @username; raises InvalidRecipient if it cannot receive."""
        ...

    def place_topup(self, *, user_id: str, stars: int, idempotency_key: str) -> SupplierOrder:
        """Place a top-up once per key; OutcomeUnknown means look it up, never resend blind."""
        ...

    def get_order(self, supplier_order_id: str) -> SupplierOrder:
        """Read one order by the supplier's ID; raises SupplierNotFound if there is none."""
        ...

    def find_by_reference(self, idempotency_key: str) -> SupplierOrder | None:
        """Find the order placed with this idempotency key; None if the supplier has none."""
        ...

    def balance(self) -> SupplierBalance:
        """Read our wallet balance at the supplier."""
        ...

    def orders_between(self, *, since: datetime, until: datetime) -> list[SupplierOrder]:
        """Every order the supplier created from `since` (inclusive) to `until` (exclusive)."""
        ...
