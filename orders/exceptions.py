"""Errors of the orders app: callers catch the branch of the tree they can handle."""

from __future__ import annotations

from typing import Any

RESPONSE_BODY_LIMIT = 10_000


class SupplierError(Exception):
    """A supplier call did not give the answer we asked for."""

    default_code = "supplier_error"

    def __init__(
        self,
        message: str = "",
        *,
        code: str = "",
        http_status: int | None = None,
        response_body: str = "",
        raw: dict[str, Any] | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.message = message or self.code
        self.http_status = http_status
        # Truncated so a supplier's HTML error page cannot bloat the audit row.
        self.response_body = response_body[:RESPONSE_BODY_LIMIT]
        # The request and response as recorded by the client, for the caller's audit row.
        self.raw: dict[str, Any] = raw or {}
        super().__init__(self.message)

    def __str__(self) -> str:
        status = f" (HTTP {self.http_status})" if self.http_status is not None else ""
        return f"{self.code}: {self.message}{status}"


class InvalidRecipient(SupplierError):
    """The account cannot receive Stars: unknown, malformed or refused by the supplier."""

    default_code = "invalid_recipient"


class InsufficientBalance(SupplierError):
    """Our wallet at the supplier is too low; nothing was placed. Park and alert the operator."""

    default_code = "insufficient_balance"


class SupplierAuthError(SupplierError):
    """The supplier refused our credentials (401/403)."""

    default_code = "unauthorized"


class RateLimited(SupplierError):
    """The supplier asked us to slow down; nothing was placed. Retry after `retry_after` s."""

    default_code = "rate_limited"

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float = 1.0,
        code: str = "",
        http_status: int | None = None,
        response_body: str = "",
        raw: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            message, code=code, http_status=http_status, response_body=response_body, raw=raw
        )
        self.retry_after = retry_after


class SupplierUnavailable(SupplierError):
    """The supplier could not be reached or said it processed nothing; safe to retry later."""

    default_code = "unavailable"


class OutcomeUnknown(SupplierError):
    """A top-up may or may not have been placed: look it up by reference, never resend blind."""

    default_code = "outcome_unknown"


class IdempotencyConflict(SupplierError):
    """The idempotency key was already used with a different request body."""

    default_code = "idempotency_conflict"


class SupplierRequestError(SupplierError):
    """The supplier rejected the request as malformed (400) or with a 4xx we do not expect."""

    default_code = "invalid_request"


class SupplierNotFound(SupplierRequestError):
    """The supplier has no such order."""

    default_code = "not_found"


# --- Orders ------------------------------------------------------------------------------


class OrderError(Exception):
    """An order operation that cannot go ahead; admin actions show it to the operator."""


class InvalidRecipientInput(OrderError):
    """The buyer's text is neither a Telegram user ID nor a well-formed @username."""


class RecipientLookupLimited(OrderError):
    """Too many recipient lookups from this client: nothing was looked up, whatever was asked."""


class OrderStateChanged(OrderError):
    """Another process moved the order first; re-read it before deciding again."""

    def __init__(self, reference: str | None, *, expected: str | None, actual: str | None) -> None:
        self.reference = reference
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Order {reference} is no longer {expected} (now {actual or 'changed'})."
        )


class InvalidTransition(OrderError):
    """The requested status move is not one of the declared transitions."""

    def __init__(self, reference: str | None, from_status: str, to_status: str) -> None:
        self.reference = reference
        self.from_status = from_status
        self.to_status = to_status
        super().__init__(f"Order {reference} cannot move from {from_status} to {to_status}.")


class OrderBusy(OrderError):
    """A worker holds the order's lease right now; try again in a few seconds."""


class ActionNotApplicable(OrderError):
    """An operator's action that does not apply to this order (whatever its status says)."""


class PaymentMismatch(OrderError):
    """A payment reference already belongs to another order."""


class PaymentMethodUnavailable(OrderError):
    """The payment method does not exist or is not offered on this channel."""


# --- Payments ----------------------------------------------------------------------------


class PaymentError(Exception):
    """Base class for payment errors."""


class WebhookRejected(PaymentError):
    """A callback failed authentication or is malformed; answer 400 and change nothing."""


class PaymentProviderError(PaymentError):
    """The payment provider could not be reached or refused a request."""
