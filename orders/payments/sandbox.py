"""Sandbox payments: the buyer presses a button and the shop confirms it as a real provider would."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import uuid4

from orders.exceptions import WebhookRejected
from orders.models import Order, Payment, PaymentInvoice
from orders.payments.base import NoticeKind, PaymentNotice, Quote, RefundResult
from orders.payments.money import exponent_of, to_minor


class SandboxPaymentProvider:
    """A test-mode method in the order's own currency that always pays and always refunds."""

    code = "sandbox"

    def account(self) -> str:
        return "sandbox"

    def create_invoice(self, order: Order, *, expires_at: datetime) -> Quote:
        return Quote(
            provider=self.code,
            account=self.account(),
            amount_minor=to_minor(order.price, order.currency),
            currency=order.currency,
            exponent=exponent_of(order.currency),
            expires_at=expires_at,
            provider_invoice_id=f"sbx-{uuid4().hex}",
        )

    def simulate_payment(self, invoice: PaymentInvoice) -> PaymentNotice:
        """The notice a provider would send when the buyer pays this invoice in full."""
        return PaymentNotice(
            provider=self.code,
            event_key=f"paid-{invoice.provider_invoice_id}",
            kind=NoticeKind.PAID,
            account=invoice.account,
            invoice_id=invoice.provider_invoice_id,
            order_reference=invoice.order.reference or "",
            amount_minor=invoice.amount_minor,
            currency=invoice.currency,
            data={"simulated": True},
        )

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> Sequence[PaymentNotice]:
        raise WebhookRejected("The sandbox has no webhook: payments are simulated in the shop.")

    def poll(self, invoices: Sequence[PaymentInvoice]) -> Sequence[PaymentNotice]:
        return []

    def requote_minor(self, invoice: PaymentInvoice) -> int:
        return to_minor(invoice.order.price, invoice.currency)

    def refund(self, payment: Payment) -> RefundResult:
        return RefundResult(refunded=True, provider_reference=f"sbx-refund-{payment.pk}")
