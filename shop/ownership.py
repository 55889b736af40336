"""Who may act on a storefront order: its buyer, not whoever has its link.

Anyone with an order's /orders/<id>/ address may watch it; cancelling, paying and switching
the method need the buyer: the browser session that placed the order, or a session that
opened the buyer's own link (order_owner_url), which carries a key signed for that order
alone. Orders placed in the bot or through the API have no web buyer and cannot be acted on
from the storefront.
"""

from django.conf import settings
from django.core import signing
from django.http import HttpRequest
from django.urls import reverse
from django.utils.crypto import constant_time_compare

from orders.models import Channel, Order
from orders.services import buyer_session_hash

# The query parameter of the buyer's link, and the salt that keeps its signatures to this use.
OWNER_KEY_PARAM = "key"
OWNER_KEY_SALT = "shop.ownership.order"
# Orders a session was granted through the buyer's link: {public_id hex, ...}, newest last.
SESSION_GRANTED_ORDERS = "shop_owned_orders"
KEEP_GRANTS = 50


def _signer() -> signing.Signer:
    return signing.Signer(salt=OWNER_KEY_SALT)


def order_owner_key(order: Order) -> str:
    """The signed key that makes a link the buyer's own, for this order only."""
    return _signer().signature(order.public_id.hex)


def order_owner_path(order: Order) -> str:
    """The buyer's link without scheme and host; see order_owner_url."""
    if order.channel != Channel.WEB:
        raise ValueError(f"order {order.reference} was not placed on the storefront")
    path = reverse("shop:order_status", kwargs={"public_id": order.public_id})
    return f"{path}?{OWNER_KEY_PARAM}={order_owner_key(order)}"


def order_owner_url(order: Order) -> str:
    """The buyer's link to their order, absolute (SITE_URL): it lets any browser manage the order.

    Give it only to the buyer (their status page, their receipt e-mail). Raises ValueError for
    an order not placed on the storefront: it has no web buyer to hand it to.
    """
    return f"{settings.SITE_URL.rstrip('/')}{order_owner_path(order)}"


def order_owner_grant(request: HttpRequest, order: Order, key: str) -> bool:
    """Remember in this session that it holds the buyer's link, if `key` is that order's key."""
    if order.channel != Channel.WEB:
        return False
    signer = _signer()
    try:
        signed = signer.unsign(f"{order.public_id.hex}{signer.sep}{key}")
    except signing.BadSignature:
        return False
    if signed != order.public_id.hex:
        return False
    granted = [public_id for public_id in request.session.get(SESSION_GRANTED_ORDERS) or []
               if public_id != order.public_id.hex]
    request.session[SESSION_GRANTED_ORDERS] = [*granted, order.public_id.hex][-KEEP_GRANTS:]
    return True


def request_is_order_buyer(request: HttpRequest, order: Order) -> bool:
    """Whether this request comes from the order's buyer, who alone may change the order."""
    if order.channel != Channel.WEB:
        return False
    session_key = request.session.session_key
    if (order.buyer_session_hash and session_key
            and constant_time_compare(order.buyer_session_hash, buyer_session_hash(session_key))):
        return True
    return order.public_id.hex in (request.session.get(SESSION_GRANTED_ORDERS) or [])
