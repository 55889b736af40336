"""Payment providers by method code; settings.PAYMENT_METHODS says which are on where."""

from decimal import Decimal

from django.conf import settings

from orders.exceptions import PaymentMethodUnavailable
from orders.payments.base import PaymentProvider
from orders.payments.cryptopay import CryptoPayProvider
from orders.payments.sandbox import SandboxPaymentProvider
from orders.payments.stripe_checkout import StripeCheckoutProvider
from orders.payments.telegram_payments import TelegramPaymentsProvider
from orders.payments.ton import TonPaymentProvider
from partners.payments import PartnerBalanceProvider

_PROVIDERS: dict[str, type] = {
    "sandbox": SandboxPaymentProvider,
    "ton": TonPaymentProvider,
    "stripe": StripeCheckoutProvider,
    "telegram": TelegramPaymentsProvider,
    "cryptopay": CryptoPayProvider,
    "balance": PartnerBalanceProvider,
}


def payment_provider_get(code: str) -> PaymentProvider:
    """The provider for a method code, whether or not it is enabled (refunds need it)."""
    try:
        return _PROVIDERS[code]()
    except KeyError:
        raise PaymentMethodUnavailable(f"Unknown payment method {code!r}.") from None


def payment_methods_for(channel: str) -> list[tuple[str, str]]:
    """(code, label) of the methods enabled for a channel, in settings order."""
    return [
        (code, conf["label"])
        for code, conf in settings.PAYMENT_METHODS.items()
        if conf.get("enabled") and channel in conf.get("channels", ()) and code in _PROVIDERS
    ]


def payment_fee_percent(code: str) -> Decimal:
    """The method's fee as a percentage of the price, for the margin report."""
    return Decimal(settings.PAYMENT_METHODS.get(code, {}).get("fee_percent", 0))


def payment_quote_minutes(code: str) -> int:
    """How long a quote in this method stays valid (bounded by the order's payment window)."""
    return int(settings.PAYMENT_METHODS.get(code, {}).get("quote_minutes",
                                                           settings.ORDER_PAYMENT_WINDOW_MINUTES))
