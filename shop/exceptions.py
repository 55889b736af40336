"""Catalog errors a caller can show to a buyer."""

from orders.exceptions import PaymentMethodUnavailable


class CatalogError(Exception):
    """Base class for catalog errors."""


class QuantityOutOfRange(CatalogError):
    """The amount asked for is outside the product's limits."""


class ProductUnavailable(CatalogError):
    """The product or package is not on sale."""


class MarginTooLow(PaymentMethodUnavailable):
    """This method would sell this package or amount under the product's minimum margin."""


class PromoCodeError(Exception):
    """A promo code that cannot be used; str() is the buyer's explanation, translated."""


class PromoCodeUnknown(PromoCodeError):
    """No active code by that name."""


class PromoCodeNotValidNow(PromoCodeError):
    """Outside the code's validity window."""


class PromoCodeUsedUp(PromoCodeError):
    """The code's total uses are taken."""


class PromoCodeBuyerLimit(PromoCodeError):
    """This buyer has used the code as often as it allows."""


class PromoCodeNotApplicable(PromoCodeError):
    """The code is not for this product, package or currency."""
