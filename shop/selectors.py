"""Storefront reads: what is on sale and what it costs, and finding a buyer's order again."""

import re
from collections.abc import Iterable

from django.db.models import Q
from django.utils.translation import gettext as _

from orders.exceptions import InvalidRecipientInput
from orders.models import Channel, Order
from orders.recipients import recipient_parse
from shop.exceptions import ProductUnavailable
from shop.models import Product, PromoRedemption
# Re-exported: callers have imported these from here since before shop.pricing.
from shop.pricing import (  # noqa: F401
    BuyerIdentity,
    Quote,
    package_list,
    quantity_range_message,
    quote_price,
    supplier_current,
)


def product_default() -> Product:
    """The product the storefront sells today (Telegram Stars)."""
    product = Product.objects.filter(active=True).order_by("pk").first()
    if product is None:
        raise ProductUnavailable(_("Nothing is on sale right now."))
    return product


def quote_build(*, product: Product, package_id: int | None = None, quantity: int | None = None,
                channel: str | None = None, payment_method: str | None = None,
                promo_code: str = "", buyer: BuyerIdentity | None = None) -> Quote:
    """Price a package or a custom quantity from the catalog; never from buyer input.

    The arithmetic, the margin guard and promo codes are shop.pricing.quote_price's.
    """
    return quote_price(product=product, package_id=package_id, quantity=quantity, channel=channel,
                       payment_method=payment_method, promo_code=promo_code, buyer=buyer)


def promo_for_order(order: Order) -> PromoRedemption | None:
    """The promo code an order used, with the discount it gave; None without one."""
    return PromoRedemption.objects.filter(order_id=order.pk).select_related("promo").first()


def promos_for_orders(order_ids: Iterable[int]) -> dict[int, PromoRedemption]:
    """promo_for_order for a page of orders in one query: {order id: its redemption}."""
    return {redemption.order_id: redemption
            for redemption in PromoRedemption.objects.filter(order_id__in=list(order_ids))}


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
