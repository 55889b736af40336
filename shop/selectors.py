"""Storefront reads: what is on sale and what it costs, and finding a buyer's order again."""

import itertools
import re
import threading
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from orders.exceptions import InvalidRecipientInput
from orders.models import Channel, Order
from orders.recipients import recipient_parse
from shop.exceptions import ProductUnavailable
from shop.models import Package, Product, PromoRedemption, Supplier
# Re-exported: callers have imported these from here since before shop.pricing.
from shop.pricing import (  # noqa: F401
    BuyerIdentity,
    Quote,
    package_list,
    quantity_range_message,
    packages_offered,
    quote_price,
    supplier_current,
)


def product_default() -> Product:
    """The product the storefront sells today (Telegram Stars)."""
    product = Product.objects.filter(active=True).order_by("pk").first()
    if product is None:
        raise ProductUnavailable(_("Nothing is on sale right now."))
    return product


class Catalog:
    """What the storefront shows and prices from, read once and reused by this process briefly.

    The product on sale, its active packages in display order and the supplier with its volume
    tiers, as product_default, package_list and supplier_current read them. Instances are
    shared by the threads of a worker: treat them as read-only. `serial` tells one reading from
    the next (the catalog template's fragment cache is keyed by it).
    """

    def __init__(self, *, product: Product, packages: tuple[Package, ...],
                 supplier: Supplier | None, serial: int, expires: float) -> None:
        self.product = product
        self.packages = packages
        self.supplier = supplier
        self.serial = serial
        self.expires = expires
        self._offered: dict[str, list[Package]] = {}

    def packages_offered(self, channel: str) -> list[Package]:
        """shop.pricing.packages_offered for this reading, worked out once per channel."""
        offered = self._offered.get(channel)
        if offered is None:
            offered = self._offered[channel] = packages_offered(
                product=self.product, channel=channel, packages=self.packages,
                supplier=self.supplier)
        return list(offered)

    def quote(self, *, channel: str, package_id: int | None = None, quantity: int | None = None,
              promo_code: str = "", buyer: BuyerIdentity | None = None) -> Quote:
        """quote_build from this reading: no query unless a promo code is checked."""
        return quote_price(product=self.product, packages=self.packages, supplier=self.supplier,
                           channel=channel, package_id=package_id, quantity=quantity,
                           promo_code=promo_code, buyer=buyer)


_catalog: Catalog | None = None
_catalog_lock = threading.Lock()
_catalog_serials = itertools.count(1)


def catalog_current() -> Catalog:
    """The catalog as the storefront shows it, read at most every CATALOG_CACHE_SECONDS per process.

    The pages before an order (catalog, recipient, confirm) price from it; placing the order
    prices afresh from the database, so a reading at most that old changes what a page shows,
    never what an order costs. A catalog save in this process drops it at once
    (catalog_forget, shop.apps). Raises ProductUnavailable when nothing is on sale.
    """
    global _catalog
    catalog = _catalog
    now = time.monotonic()
    if catalog is not None and now < catalog.expires:
        return catalog
    with _catalog_lock:  # one reading per process at a time, the others wait for it
        catalog = _catalog
        if catalog is not None and now < catalog.expires:
            return catalog
        product = product_default()
        packages = tuple(package_list(product=product))
        try:
            supplier: Supplier | None = supplier_current()
        except ProductUnavailable:
            supplier = None  # nothing can be placed; pricing raises it again where it matters
        catalog = Catalog(product=product, packages=packages, supplier=supplier,
                          serial=next(_catalog_serials),
                          expires=time.monotonic() + settings.CATALOG_CACHE_SECONDS)
        _catalog = catalog
        return catalog


def catalog_forget() -> None:
    """Drop this process's catalog reading now and again when the current transaction commits."""
    global _catalog
    _catalog = None

    def forget() -> None:
        global _catalog
        _catalog = None

    if transaction.get_connection().in_atomic_block:
        # Another thread may read the rows again before they commit.
        transaction.on_commit(forget)


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
