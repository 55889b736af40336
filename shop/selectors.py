"""Storefront reads: what is on sale and what it costs, and finding a buyer's order again."""

import re
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from orders.exceptions import InvalidRecipientInput
from orders.models import Channel, Order
from orders.recipients import recipient_parse
from shop.exceptions import ProductUnavailable, QuantityOutOfRange
from shop.models import Package, Product, Supplier
from shop.money import money


@dataclass(frozen=True)
class Quote:
    """The price and wholesale cost of a quantity of a product, fixed when an order is placed."""

    product: Product
    package: Package | None
    quantity: int
    price: Decimal
    currency: str
    supplier_code: str
    cost: Decimal
    cost_currency: str

    @property
    def name(self) -> str:
        """The package name copied onto the order ("Custom" for a custom amount, untranslated)."""
        return self.package.name if self.package else "Custom"


def quantity_range_message(product: Product) -> str:
    """Choose between 50 and 10,000 Stars. (The noun agrees with the larger number.)"""
    return ngettext(
        "Choose between %(min)s and %(max)s Star.",
        "Choose between %(min)s and %(max)s Stars.",
        product.max_quantity,
    ) % {
        "min": number_format(product.min_quantity, force_grouping=True),
        "max": number_format(product.max_quantity, force_grouping=True),
    }


def product_default() -> Product:
    """The product the storefront sells today (Telegram Stars)."""
    product = Product.objects.filter(active=True).order_by("pk").first()
    if product is None:
        raise ProductUnavailable(_("Nothing is on sale right now."))
    return product


def package_list(*, product: Product) -> QuerySet[Package]:
    """Active packages of a product, in display order."""
    return product.packages.filter(active=True).order_by("sort_order", "quantity")


def supplier_current() -> Supplier:
    """The supplier the shop buys from (settings.SUPPLIER_CODE)."""
    try:
        return Supplier.objects.get(code=settings.SUPPLIER_CODE, active=True)
    except Supplier.DoesNotExist:
        raise ProductUnavailable(_("No active supplier is configured.")) from None


def quote_build(*, product: Product, package_id: int | None = None, quantity: int | None = None) -> Quote:
    """Price a package or a custom quantity from the catalog; never from buyer input."""
    if not product.active:
        raise ProductUnavailable(_("This product is not on sale."))
    package: Package | None = None
    if package_id is not None:
        package = package_list(product=product).filter(pk=package_id).first()
        if package is None:
            raise ProductUnavailable(_("This package is not on sale."))
        quantity = package.quantity
        price, currency = package.price, package.currency
    else:
        if not product.custom_amount_enabled:
            raise ProductUnavailable(_("Custom amounts are not on sale."))
        if quantity is None or not product.min_quantity <= quantity <= product.max_quantity:
            raise QuantityOutOfRange(quantity_range_message(product))
        price, currency = money(product.custom_unit_price * quantity), product.currency
    supplier = supplier_current()
    return Quote(
        product=product,
        package=package,
        quantity=quantity,
        price=money(price),
        currency=currency,
        supplier_code=supplier.code,
        cost=money(supplier.cost_per_unit * quantity),
        cost_currency=supplier.currency,
    )


# --- Finding an order again ------------------------------------------------------------------

_REFERENCE = re.compile(r"#?(?:ORD)?-?0*([0-9]{1,12})")


def order_reference_normalize(raw: str) -> str:
    """ "ord-000123", " ORD 000123 ", "#123" → "ORD-000123"; "" when it cannot be a reference."""
    match = _REFERENCE.fullmatch("".join(raw.split()).upper())
    if match is None:
        return ""
    return f"ORD-{int(match.group(1)):06d}"


def order_lookup(*, reference: str, secret: str) -> Order | None:
    """The storefront order with this reference whose recipient or receipt e-mail is `secret`.

    `secret` is what the buyer typed: an e-mail address (compared case-insensitively) or the
    Telegram recipient as @username or numeric ID, normalised by recipient_parse. Bot and API
    orders have their own ways back (/orders, the partner's API) and are not found here.
    """
    orders = Order.objects.filter(reference=reference, channel=Channel.WEB)
    secret = secret.strip()
    if "@" in secret[1:]:
        return orders.exclude(buyer_email="").filter(buyer_email__iexact=secret).first()
    try:
        recipient = recipient_parse(secret)
    except InvalidRecipientInput:
        return None
    if recipient.startswith("@"):
        username = recipient[1:]
        # Telegram usernames are case-insensitive; the stored one may carry its "@" or not.
        match = (Q(recipient_username__iexact=username) | Q(recipient_username__iexact=recipient)
                 | Q(recipient_input__iexact=recipient))
    else:
        match = Q(recipient_user_id=recipient) | Q(recipient_input=recipient)
    return orders.filter(match).first()
