"""Sandbox payments: the buyer presses a button and the shop confirms as a real provider would."""

from orders.models import Order, Payment
from orders.payments.base import Invoice, RefundResult


class SandboxPaymentProvider:
    """A test-mode provider that always pays and always refunds."""

    code = "sandbox"

    def create_invoice(self, order: Order) -> Invoice:
        return Invoice(
            provider=self.code,
            order_reference=order.reference or "",
            amount=order.price,
            currency=order.currency,
            instructions="Test mode: no money moves. Press the button to simulate a payment.",
        )

    def provider_reference(self, order: Order) -> str:
        """The sandbox's payment id for an order: one per order, so replays dedupe."""
        return f"sbx-{order.public_id}"

    def refund(self, payment: Payment) -> RefundResult:
        return RefundResult(refunded=True, provider_reference=f"sbx-refund-{payment.pk}")
