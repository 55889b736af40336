"""What the partner services refuse, each with the API's stable error code."""


class PartnerError(Exception):
    """A refusal the API reports as {"error": {"code", "message", "retryable"}}."""

    code = "invalid_request"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InsufficientPartnerBalance(PartnerError):
    code = "insufficient_balance"
    http_status = 402


class CurrencyMismatch(PartnerError):
    """The product is priced in another currency than the partner's balance is kept in."""

    code = "product_unavailable"
    http_status = 422


class IdempotencyConflict(PartnerError):
    code = "idempotency_conflict"
    http_status = 409


class ReferenceInUse(IdempotencyConflict):
    """The partner's reference already names another order."""


class LedgerError(Exception):
    """An operator's ledger entry that cannot be made (zero amount, would overdraw)."""
