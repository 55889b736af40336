"""System checks that stop a deployment from giving Stars away."""

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def sandbox_payments_off_with_a_real_supplier(**kwargs: Any) -> list[checks.CheckMessage]:
    """Simulated payments with a real supplier would deliver real Stars for nothing."""
    sandbox = settings.PAYMENT_METHODS.get("sandbox", {})
    if sandbox.get("enabled") and settings.SUPPLIER_CODE != "sandbox":
        return [checks.Error(
            "Sandbox payments are enabled while the supplier is real "
            f"(SUPPLIER_CODE={settings.SUPPLIER_CODE!r}): anyone could get Stars without paying.",
            hint="Set PAYMENT_SANDBOX_ENABLED=false.",
            id="orders.E001",
        )]
    return []
