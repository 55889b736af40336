"""The supplier the shop buys Stars from, behind one interface chosen by settings."""

from __future__ import annotations

from orders.suppliers.base import (
    RecipientInfo,
    SupplierBalance,
    SupplierClient,
    SupplierOrder,
    SupplierOrderStatus,
)

__all__ = [
    "RecipientInfo",
    "SupplierBalance",
    "SupplierClient",
    "SupplierOrder",
    "SupplierOrderStatus",
    "get_supplier_client",
]


def get_supplier_client(code: str = "") -> SupplierClient:
    """The client for a supplier code (an order's supplier_code); by default the configured one.

    The configured supplier is settings SUPPLIER_BASE_URL, _API_KEY and _TIMEOUT; the code
    "partner-sandbox" is the in-process sandbox that partner test keys place their orders with.
    """
    # Imported here so that importing the types needs neither Django settings nor requests.
    from django.conf import settings

    if code == "partner-sandbox":
        from orders.suppliers.sandbox import SandboxSupplierClient

        return SandboxSupplierClient()

    from orders.suppliers.http import HttpSupplierClient, thread_session

    return HttpSupplierClient(
        base_url=settings.SUPPLIER_BASE_URL,
        api_key=settings.SUPPLIER_API_KEY,
        timeout=float(settings.SUPPLIER_TIMEOUT),
        # Kept per thread: the TCP (and TLS) connection outlives one call, so an order's
        # validate, place and poll reuse it.
        session=thread_session(settings.SUPPLIER_BASE_URL),
    )
