"""The "balance" payment method: partner API orders are paid from the partner's prepaid balance.

The charge is taken when the order is placed (partners.services.topup_place); the refund, when
an order fails, is a ledger credit made once per order, so the refund task may run it again.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime

from orders.exceptions import PaymentMethodUnavailable, WebhookRejected
from orders.models import Order, Payment, PaymentInvoice
from orders.payments.base import PaymentNotice, Quote, RefundResult
from partners.ledger import balance_refund


class PartnerBalanceProvider:
    """Pays from, and refunds to, the partner's ledger; there is no invoice and no webhook."""

    code = "balance"

    def account(self) -> str:
        return "partner-ledger"

    def create_invoice(self, order: Order, *, expires_at: datetime) -> Quote:
        raise PaymentMethodUnavailable("Partner orders are paid from the balance when placed.")

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> Sequence[PaymentNotice]:
        raise WebhookRejected("Partner balances have no payment webhook.")

    def poll(self, invoices: Sequence[PaymentInvoice]) -> Sequence[PaymentNotice]:
        return []

    def requote_minor(self, invoice: PaymentInvoice) -> int:
        raise PaymentMethodUnavailable("Partner orders have no invoice.")

    def refund(self, payment: Payment) -> RefundResult:
        entry = balance_refund(order_id=payment.order_id, actor="refund-task")
        return RefundResult(refunded=True, provider_reference=f"ledger-{entry.pk}")
