"""Reads of the partner API that are more than one line of ORM."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from orders.models import Order
from partners import wire
from partners.models import ApiKey, LedgerEntry, Partner
from partners.services import partner_quote
from shop.exceptions import CatalogError
from shop.models import Product
from shop.pricing import package_list, supplier_current


def product_for(platform: str) -> Product | None:
    return Product.objects.filter(active=True, platform=platform).order_by("pk").first()


def partner_fresh(partner: Partner) -> Partner:
    return Partner.objects.get(pk=partner.pk)


def products_for_partner(*, partner: Partner) -> list[dict[str, Any]]:
    """Each product on sale with its packages at the partner's price (margin guard applied)."""
    try:
        supplier = supplier_current()
    except CatalogError:
        supplier = None  # then every quote below raises it again and no package is listed
    products = []
    for product in Product.objects.filter(active=True).order_by("pk"):
        packages = []
        for package in package_list(product=product):
            try:
                quote = partner_quote(partner=partner, product=product, package_id=package.pk,
                                      supplier=supplier)
            except CatalogError:
                continue
            if quote.allowed:
                packages.append({"id": package.pk, "name": package.name,
                                 "stars": package.quantity, "price": str(quote.price),
                                 "list_price": str(quote.list_price)})
        products.append({
            "id": product.slug, "platform": product.platform, "name": product.name,
            "unit": product.unit_name, "currency": product.currency,
            "custom_amount": product.custom_amount_enabled,
            "min_stars": product.min_quantity, "max_stars": product.max_quantity,
            "custom_unit_price": str(product.custom_unit_price),
            "discount_percent": str(partner.discount_percent), "packages": packages,
        })
    return products


def _partner_orders(key: ApiKey):
    return Order.objects.filter(partner_order__partner_id=key.partner_id,
                                partner_order__sandbox=key.test).select_related("partner_order")


def partner_order_get(*, key: ApiKey, order_id: str) -> Order | None:
    """One of the partner's orders (in the key's mode) by its public id; None for anyone else's."""
    try:
        public_id = uuid.UUID(order_id)
    except ValueError:
        return None
    return _partner_orders(key).filter(public_id=public_id).first()


def partner_order_by_reference(*, key: ApiKey, reference: str) -> Order | None:
    return _partner_orders(key).filter(partner_order__reference=reference).first()


def partner_orders_page(*, key: ApiKey, status: str, user_id: str,
                        created_after: datetime | None, created_before: datetime | None,
                        before_id: int | None, limit: int) -> tuple[list[Order], int | None]:
    """A page of the partner's orders, newest first; and the id to continue before, if any."""
    orders = _partner_orders(key)
    if status:
        orders = orders.filter(status__in=wire.STATUSES_BY_WIRE[status])
    if user_id:
        orders = orders.filter(recipient_user_id=user_id)
    if created_after is not None:
        orders = orders.filter(created_at__gte=created_after)
    if created_before is not None:
        orders = orders.filter(created_at__lt=created_before)
    if before_id is not None:
        orders = orders.filter(pk__lt=before_id)
    page = list(orders.order_by("-pk")[:limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].pk if more and page else None)


def ledger_page(*, key: ApiKey, before_id: int | None,
                limit: int) -> tuple[list[dict[str, Any]], int | None]:
    entries = (LedgerEntry.objects.filter(partner_id=key.partner_id, sandbox=key.test)
               .select_related("order"))
    if before_id is not None:
        entries = entries.filter(pk__lt=before_id)
    page = list(entries.order_by("-pk")[:limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return ([{"id": entry.pk, "kind": entry.kind, "amount": str(entry.amount),
              "balance_after": str(entry.balance_after), "currency": entry.currency,
              "order_id": str(entry.order.public_id) if entry.order else None,
              "note": entry.note, "created_at": wire.wire_time(entry.created_at)}
             for entry in page],
            page[-1].pk if more and page else None)


def ledger_recent(*, partner: Partner, limit: int) -> list[LedgerEntry]:
    """The partner's latest ledger entries, both balances, newest first (its admin page)."""
    return list(LedgerEntry.objects.filter(partner=partner).select_related("order")
                .order_by("-pk")[:limit])
