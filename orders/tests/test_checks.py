"""Deployment checks."""

from orders.checks import sandbox_payments_off_with_a_real_supplier


def test_sandbox_payments_with_a_real_supplier_is_an_error(settings):
    settings.SUPPLIER_CODE = "acme-stars"
    settings.PAYMENT_METHODS = {"sandbox": {**settings.PAYMENT_METHODS["sandbox"], "enabled": True}}
    errors = sandbox_payments_off_with_a_real_supplier()
    assert [e.id for e in errors] == ["orders.E001"]


def test_no_error_in_test_mode_or_with_sandbox_off(settings):
    settings.SUPPLIER_CODE = "sandbox"
    assert sandbox_payments_off_with_a_real_supplier() == []
    settings.SUPPLIER_CODE = "acme-stars"
    settings.PAYMENT_METHODS = {"sandbox": {**settings.PAYMENT_METHODS["sandbox"], "enabled": False}}
    assert sandbox_payments_off_with_a_real_supplier() == []
