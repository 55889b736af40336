"""Demo and test mode only: make a local fake do what the real party does when a buyer pays.

The storefront and the bot offer a "simulate payment" control only when a method talks to a
fake on this machine, never with real credentials. The payment then takes the real path: the
fake sends its signed webhook (Crypto Pay, Stripe) or records the chain transaction the poller
reads (TON).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from django.conf import settings
from django_q.tasks import async_task

from orders.exceptions import PaymentProviderError
from orders.models import PaymentInvoice

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TIMEOUT = 10.0


def _fake_origin(provider: str) -> str | None:
    """The origin of the local fake a method talks to, or None when it talks to the real party."""
    url = {
        "ton": getattr(settings, "TON_API_URL", ""),
        "cryptopay": getattr(settings, "CRYPTOPAY_BASE_URL", ""),
        "stripe": getattr(settings, "STRIPE_API_BASE", ""),
    }.get(provider, "")
    parts = urlsplit(url)
    if parts.hostname not in _LOOPBACK:
        return None
    if provider == "stripe" and getattr(settings, "STRIPE_LIVEMODE", False):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def simulate_supported(invoice: PaymentInvoice) -> bool:
    """Whether this invoice's method runs against a local fake that can simulate a payment."""
    return invoice.status == PaymentInvoice.Status.OPEN and _fake_origin(invoice.provider) is not None


def simulate_payment(invoice: PaymentInvoice) -> None:
    """Pay the invoice in full at the fake, as a buyer would at the real party."""
    origin = _fake_origin(invoice.provider)
    if origin is None:
        raise PaymentProviderError(f"{invoice.provider} talks to the real provider: nothing to simulate")
    try:
        if invoice.provider == "ton":
            response = requests.post(f"{origin}/_fake/transfer", timeout=TIMEOUT, json={
                "comment": invoice.comment, "amount_nanotons": invoice.amount_minor})
        elif invoice.provider == "cryptopay":
            response = requests.post(
                f"{origin}/_fake/pay/{invoice.provider_invoice_id}", timeout=TIMEOUT, json={})
        else:
            response = requests.post(
                f"{origin}/_fake/complete/{invoice.provider_invoice_id}", timeout=TIMEOUT, json={})
        response.raise_for_status()
    except requests.RequestException as exc:
        raise PaymentProviderError(f"the local {invoice.provider} fake did not answer: {exc}") from exc
    if invoice.provider == "ton":
        # Chain payments are found by the poller; run it now rather than at the next minute.
        async_task("orders.tasks.payments_poll", group="payments", task_name="payments-poll-now")
