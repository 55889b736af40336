"""The partner API's system checks."""

from partners.checks import idempotency_keys_kept_a_day


def test_idempotency_keys_must_be_kept_a_day(settings):
    settings.PARTNER_IDEMPOTENCY_HOURS = 23
    assert [error.id for error in idempotency_keys_kept_a_day()] == ["partners.E001"]
    settings.PARTNER_IDEMPOTENCY_HOURS = 24
    assert idempotency_keys_kept_a_day() == []
