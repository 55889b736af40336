"""The payment-provider interface every payment method implements.

A provider turns an order into a Quote (what to pay, how, until when), turns a provider's
raw callback into verified PaymentNotices, reads the provider for notices we may have
missed (poll), and refunds where the method can. The shop applies notices in one place
(orders.payments.services.payment_event_apply); providers never touch order status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from orders.models import Order, Payment, PaymentInvoice


# Invoices stay watched this long after their quote ends (open ones, and ones we closed): a
# payment that arrives late must still be found.
WATCH_AFTER_EXPIRY = timedelta(hours=24)


class NoticeKind:
    PAID = "paid"  # money arrived (amount and currency say how much)
    EXPIRED = "expired"  # the provider closed the invoice unpaid
    IGNORED = "ignored"  # a verified event we do not act on (recorded all the same)


@dataclass(frozen=True)
class Quote:
    """What a buyer must pay with one method, until when, and how."""

    provider: str
    amount_minor: int
    currency: str
    exponent: int
    expires_at: datetime
    # The provider account the invoice id (or comment) is unique in: PaymentInvoice.account.
    account: str = ""
    provider_invoice_id: str = ""
    comment: str = ""
    pay_url: str = ""
    rate: Decimal | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentNotice:
    """One verified event from a provider, in our terms."""

    provider: str
    event_key: str  # unique per provider: Stripe event id, TON transaction hash, ...
    kind: str  # NoticeKind
    account: str = ""  # the provider account it came from: invoice ids repeat across accounts
    invoice_id: str = ""  # PaymentInvoice.provider_invoice_id, when the provider has one
    comment: str = ""  # PaymentInvoice.comment, for methods matched by a memo (TON)
    order_reference: str = ""  # the order reference the provider echoes back, if any
    amount_minor: int | None = None
    currency: str = ""
    occurred_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)  # the event's fields, JSON-safe
    body: str = ""  # the raw body as received, for the inbox


@dataclass(frozen=True)
class RefundResult:
    """The provider's answer to a refund request."""

    refunded: bool
    provider_reference: str = ""
    message: str = ""


class PaymentProvider(Protocol):
    """One payment method."""

    code: str

    def account(self) -> str:
        """The provider account this configuration uses, as PaymentInvoice.account stores it.

        Invoice ids are unique only within it (Crypto Pay: network and app; TON: network and
        wallet); never a secret, only something derived from one.
        """
        ...

    def create_invoice(self, order: Order, *, expires_at: datetime) -> Quote:
        """Ask the provider for an invoice (network call: never inside a transaction)."""
        ...

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> Sequence[PaymentNotice]:
        """Authenticate a callback from its raw headers and body; raise WebhookRejected if forged."""
        ...

    def poll(self, invoices: Sequence[PaymentInvoice]) -> Sequence[PaymentNotice]:
        """Read the provider for notices about these open invoices (a backstop for webhooks)."""
        ...

    def requote_minor(self, invoice: PaymentInvoice) -> int:
        """What the invoice's order costs now in the invoice's currency, for late payments."""
        ...

    def refund(self, payment: Payment) -> RefundResult:
        """Return the money, where the method can; refunded=False sends the order to review."""
        ...
