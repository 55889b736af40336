"""System checks for the partner API's settings."""

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register()
def idempotency_keys_kept_a_day(**kwargs: Any) -> list[checks.CheckMessage]:
    """A partner retrying within a day must get its original answer, never a second order."""
    if settings.PARTNER_IDEMPOTENCY_HOURS < 24:
        return [checks.Error(
            f"PARTNER_IDEMPOTENCY_HOURS={settings.PARTNER_IDEMPOTENCY_HOURS}: Idempotency-Keys "
            "must be kept at least 24 hours (the API promises partners that).",
            hint="Set PARTNER_IDEMPOTENCY_HOURS to 24 or more.", id="partners.E001")]
    return []
