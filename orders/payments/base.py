"""The payment-provider interface every payment method implements."""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from orders.models import Order, Payment


@dataclass(frozen=True)
class Invoice:
    """What the buyer needs to pay an order with one method."""

    provider: str
    order_reference: str
    amount: Decimal
    currency: str
    pay_url: str = ""
    instructions: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    """The provider's answer to a refund request."""

    refunded: bool
    provider_reference: str = ""
    message: str = ""


class PaymentProvider(Protocol):
    """One payment method: invoices, and refunds where the method can refund."""

    code: str

    def create_invoice(self, order: Order) -> Invoice: ...

    def refund(self, payment: Payment) -> RefundResult: ...
