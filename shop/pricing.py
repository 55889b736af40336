"""The one pricing service: what a package or amount costs the buyer, and what it leaves us.

Every channel (storefront, bot, the partner API later) prices through quote_price, and order
creation copies its figures onto the order, so they all agree on:

- the list price (from the catalog, never from buyer input), a promo code's discount, and the
  price actually charged;
- the supplier cost, by volume (supplier_cost: the supplier's tier for the quantity), and each
  payment method's fee (settings.PAYMENT_METHODS fee_percent);
- the net margin, price − cost − fee, against the product's minimum (the margin guard): a
  method whose margin falls under it is not offered for that package or amount, and a promo
  code's discount is capped so the margin never goes under it.

Money is Decimal rounded by shop.money; a fee is rounded on the price charged, as the order
stores it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from orders.models import Order
from orders.models import OrderStatus as S
from orders.payments import payment_fee_percent, payment_methods_for
from shop.exceptions import (
    MarginTooLow,
    ProductUnavailable,
    PromoCodeBuyerLimit,
    PromoCodeNotApplicable,
    PromoCodeNotValidNow,
    PromoCodeUnknown,
    PromoCodeUsedUp,
    QuantityOutOfRange,
)
from shop.models import (
    Package,
    PriceChange,
    Product,
    PromoCode,
    PromoRedemption,
    Supplier,
    SupplierVolumePrice,
)
from shop.money import CENT, money, percent_of

# Orders that gave their promo use back: they were never paid.
RELEASED_STATUSES = (S.EXPIRED, S.CANCELLED)
# How far the cent-by-cent search for the lowest allowed price may walk from its estimate.
_FLOOR_SEARCH_CENTS = 200


@dataclass(frozen=True)
class BuyerIdentity:
    """Who is buying, for a promo code's per-buyer limit: whatever the channel knows."""

    telegram_id: int | None = None
    session_hash: str = ""
    email: str = ""

    def redemptions_match(self) -> Q | None:
        """The redemptions that were this buyer's; None when nothing identifies them."""
        match = Q()
        if self.telegram_id is not None:
            match |= Q(buyer_telegram_id=self.telegram_id)
        if self.session_hash:
            match |= Q(buyer_session_hash=self.session_hash)
        if self.email:
            match |= Q(buyer_email__iexact=self.email)
        return match or None


@dataclass(frozen=True)
class MethodPrice:
    """One payment method's figures for a quote: what the buyer pays and what it leaves us."""

    code: str
    label: str
    price: Decimal
    discount: Decimal
    # The promo code offers more than this method's margin allows.
    discount_limited: bool
    fee: Decimal
    margin: Decimal
    minimum: Decimal
    # The margin guard: False when even the undiscounted price leaves less than the minimum.
    allowed: bool

    @property
    def margin_percent(self) -> Decimal:
        return (self.margin * 100 / self.price).quantize(Decimal("0.1")) if self.price else Decimal(0)


@dataclass(frozen=True)
class Quote:
    """A package or quantity priced for a channel, a payment method (once chosen) and a promo code.

    `price` is what the order charges: for the chosen method after its (capped) discount; with
    no method yet, the list price less what the code offers. `methods` holds every method
    enabled for the channel, allowed or not; `offered` those the margin guard lets through.
    """

    product: Product
    package: Package | None
    quantity: int
    list_price: Decimal
    currency: str
    supplier_code: str
    cost: Decimal
    cost_currency: str
    price: Decimal
    discount: Decimal = Decimal("0.00")
    discount_limited: bool = False
    promo: PromoCode | None = None
    payment_method: str = ""
    fee: Decimal = Decimal("0.00")
    margin: Decimal = Decimal("0.00")
    minimum: Decimal = Decimal("0.00")
    allowed: bool = True
    methods: tuple[MethodPrice, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        """The package name copied onto the order ("Custom" for a custom amount, untranslated)."""
        return self.package.name if self.package else "Custom"

    @property
    def offered(self) -> list[MethodPrice]:
        """The methods the buyer may choose: enabled for the channel and above the minimum margin."""
        return [method for method in self.methods if method.allowed]

    def method(self, code: str) -> MethodPrice | None:
        return next((method for method in self.methods if method.code == code), None)


# --- Catalog reads --------------------------------------------------------------------------


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


def package_list(*, product: Product) -> QuerySet[Package]:
    """Active packages of a product, in display order."""
    return product.packages.filter(active=True).order_by("sort_order", "quantity")


def supplier_current() -> Supplier:
    """The supplier the shop buys from (settings.SUPPLIER_CODE), its volume tiers prefetched.

    One query (the supplier LEFT JOIN its tiers) rather than prefetch_related's two: every
    order placed reads it. The tiers land where prefetch_related would put them, so
    `supplier.volume_prices.all()` (supplier_unit_cost) costs no query.
    """
    supplier_fields = [field.attname for field in Supplier._meta.concrete_fields]
    tier_fields = [field.attname for field in SupplierVolumePrice._meta.concrete_fields]
    current = Supplier.objects.filter(code=settings.SUPPLIER_CODE)  # unique
    rows = list(current.values_list(*supplier_fields, *(
        f"volume_prices__{name}" for name in tier_fields if name != "supplier_id")))
    width = len(supplier_fields)
    supplier = Supplier.from_db(current.db, supplier_fields, rows[0][:width]) if rows else None
    if supplier is None or not supplier.active:
        raise ProductUnavailable(_("No active supplier is configured."))
    tiers = []
    for row in rows:
        if row[width] is None:
            continue  # the LEFT JOIN's one row of a supplier without tiers
        joined = iter(row[width:])
        # from_db takes the values in the model's field order.
        tier = SupplierVolumePrice.from_db(current.db, tier_fields, [
            supplier.pk if name == "supplier_id" else next(joined) for name in tier_fields])
        tier.supplier = supplier
        tiers.append(tier)
    tiers.sort(key=lambda tier: tier.min_quantity)
    # What prefetch_related("volume_prices") leaves on the instance (prefetch_one_level).
    prefetched = supplier.volume_prices.all()
    prefetched._result_cache = tiers
    prefetched._prefetch_done = True  # type: ignore[attr-defined]
    supplier._prefetched_objects_cache = {"volume_prices": prefetched}  # type: ignore[attr-defined]
    return supplier


def supplier_unit_cost(*, supplier: Supplier, quantity: int) -> Decimal:
    """What one unit costs in an order of `quantity`: the supplier's volume tier for it, else its base cost.

    The tier is the one with the greatest `min_quantity` up to the quantity. Reads the tiers
    through `supplier.volume_prices.all()`, so a supplier fetched with them prefetched (as
    supplier_current does) costs no query per call.
    """
    unit_cost = supplier.cost_per_unit
    reached = 0
    for tier in supplier.volume_prices.all():
        if reached < tier.min_quantity <= quantity:
            unit_cost, reached = tier.cost_per_unit, tier.min_quantity
    return unit_cost


def supplier_cost(*, supplier: Supplier, quantity: int) -> Decimal:
    """The supplier cost of an order of `quantity` units, in the supplier's currency, rounded to cents."""
    return money(supplier_unit_cost(supplier=supplier, quantity=quantity) * quantity)


# --- Arithmetic -----------------------------------------------------------------------------


def margin_minimum(*, product: Product, price: Decimal) -> Decimal:
    """The least net margin an order at this price must leave: the larger of the two minimums."""
    return max(money(product.min_margin), percent_of(price, product.min_margin_percent))


def margin_of(*, price: Decimal, cost: Decimal, fee_percent: Decimal) -> tuple[Decimal, Decimal]:
    """(fee, net margin) of a sale at `price`: the fee as the order stores it, price − cost − fee."""
    fee = percent_of(price, fee_percent)
    return fee, money(price - cost - fee)


def _margin_ok(product: Product, price: Decimal, cost: Decimal, fee_percent: Decimal) -> bool:
    _, margin = margin_of(price=price, cost=cost, fee_percent=fee_percent)
    return margin >= margin_minimum(product=product, price=price)


def price_floor(*, product: Product, cost: Decimal, fee_percent: Decimal) -> Decimal | None:
    """The lowest price in cents that still leaves the minimum margin; None if no price does.

    Estimated from price·(1 − fee% − min%) ≥ cost and price·(1 − fee%) ≥ cost + minimum, then
    walked cent by cent to absorb the rounding of the fee and the minimum.
    """
    fee_share = fee_percent / 100
    keep = 1 - fee_share - product.min_margin_percent / 100
    if keep <= 0 or fee_share >= 1:
        return None
    estimate = max((cost + product.min_margin) / (1 - fee_share), cost / keep, CENT)
    price = max(money(estimate) - 2 * CENT, CENT)
    for _step in range(_FLOOR_SEARCH_CENTS):
        if _margin_ok(product, price, cost, fee_percent):
            return price
        price += CENT
    return None


def _method_label(code: str) -> str:
    return str(settings.PAYMENT_METHODS.get(code, {}).get("label", code))


def _method_price(*, code: str, product: Product, list_price: Decimal, cost: Decimal,
                  comparable: bool, offer: Decimal) -> MethodPrice:
    """One method's figures at the list price less `offer`, the discount capped at its floor."""
    fee_percent = payment_fee_percent(code)
    floor = price_floor(product=product, cost=cost, fee_percent=fee_percent) if comparable else None
    # Cost in another currency than the price: no margin can be vouched for, so nothing is offered.
    allowed = floor is not None and list_price >= floor
    discount = offer
    if offer and allowed:
        assert floor is not None
        discount = min(offer, list_price - floor)
    elif offer:
        discount = Decimal("0.00")
    discount = max(money(discount), Decimal("0.00"))
    price = list_price - discount
    fee, margin = margin_of(price=price, cost=cost, fee_percent=fee_percent)
    return MethodPrice(
        code=code, label=_method_label(code), price=price, discount=discount,
        discount_limited=discount < offer, fee=fee, margin=margin,
        minimum=margin_minimum(product=product, price=price), allowed=allowed,
    )


def _methods_priced(*, codes: Iterable[str], product: Product, list_price: Decimal, cost: Decimal,
                    comparable: bool, offer: Decimal) -> tuple[MethodPrice, ...]:
    return tuple(_method_price(code=code, product=product, list_price=list_price, cost=cost,
                               comparable=comparable, offer=offer) for code in codes)


# --- Quotes ---------------------------------------------------------------------------------


def quote_price(*, product: Product, package_id: int | None = None, quantity: int | None = None,
                channel: str | None = None, payment_method: str | None = None,
                promo_code: str = "", buyer: BuyerIdentity | None = None,
                supplier: Supplier | None = None, now: datetime | None = None,
                partner_discount_percent: Decimal = Decimal(0),
                packages: Sequence[Package] | None = None) -> Quote:
    """Price a package or a custom quantity from the catalog; never from buyer input.

    With a channel, every method enabled there is priced and checked against the margin
    guard; with a method too, the quote's own figures are that method's. A promo code is
    checked (window, uses, this buyer's uses, what it applies to) and raises a PromoCodeError
    the buyer can read; its discount is capped per method at the minimum margin. Raises
    CatalogError when the product, package or amount is not on sale. `packages` (the
    product's active packages, as package_list gives them) and `supplier` spare the queries
    when the caller has them already (shop.selectors.catalog_current).
    """
    if not product.active:
        raise ProductUnavailable(_("This product is not on sale."))
    package: Package | None = None
    if package_id is not None:
        if packages is not None:  # the caller's reading of the catalog
            package = next((offered for offered in packages if offered.pk == package_id), None)
        else:
            # By primary key alone, then checked here: every order placed reads it, and each
            # filter of an ORM lookup costs more Python than the comparison.
            try:
                package = Package.objects.get(pk=package_id)
            except Package.DoesNotExist:
                package = None
            if package is not None and (package.product_id != product.pk or not package.active):
                package = None
            if package is not None:
                package.product = product  # spares the query; a cached reading is not touched
        if package is None:
            raise ProductUnavailable(_("This package is not on sale."))
        quantity = package.quantity
        list_price, currency = money(package.price), package.currency
    else:
        if not product.custom_amount_enabled:
            raise ProductUnavailable(_("Custom amounts are not on sale."))
        if quantity is None or not product.min_quantity <= quantity <= product.max_quantity:
            raise QuantityOutOfRange(quantity_range_message(product))
        list_price, currency = money(product.custom_unit_price * quantity), product.currency
    supplier = supplier or supplier_current()
    cost = supplier_cost(supplier=supplier, quantity=quantity)
    promo: PromoCode | None = None
    offer = Decimal("0.00")
    if promo_code:
        promo = promo_code_check(code=promo_code, product=product, package=package,
                                 currency=currency, buyer=buyer, now=now)
        offer = promo_offer(promo=promo, list_price=list_price)
    if partner_discount_percent > 0:
        # A partner's wholesale discount, capped like a promo code at the minimum margin.
        offer += percent_of(list_price, partner_discount_percent)
    codes = [code for code, _label in payment_methods_for(channel)] if channel else []
    if payment_method and payment_method not in codes:
        codes.append(payment_method)  # priced all the same: callers check it is enabled
    methods = _methods_priced(codes=codes, product=product, list_price=list_price, cost=cost,
                              comparable=supplier.currency == currency, offer=offer)
    chosen = next((method for method in methods if method.code == payment_method), None)
    if chosen is None:
        # Before a method is chosen: the best price an offered method gives (each may cap the
        # discount differently), else what the code offers.
        offered = [method for method in methods if method.allowed]
        price = min(method.price for method in offered) if offer and offered else list_price - offer
        _fee, margin = margin_of(price=price, cost=cost, fee_percent=Decimal(0))
        return Quote(product=product, package=package, quantity=quantity, list_price=list_price,
                     currency=currency, supplier_code=supplier.code, cost=cost,
                     cost_currency=supplier.currency, price=price, discount=list_price - price,
                     discount_limited=list_price - price < offer, promo=promo, margin=margin,
                     minimum=margin_minimum(product=product, price=price), methods=methods)
    return Quote(product=product, package=package, quantity=quantity, list_price=list_price,
                 currency=currency, supplier_code=supplier.code, cost=cost,
                 cost_currency=supplier.currency, price=chosen.price, discount=chosen.discount,
                 discount_limited=chosen.discount_limited,
                 promo=promo if chosen.discount else None, payment_method=chosen.code,
                 fee=chosen.fee, margin=chosen.margin, minimum=chosen.minimum,
                 allowed=chosen.allowed, methods=methods)


def margin_refusal() -> MarginTooLow:
    """The error for a method the margin guard refuses, worded for the buyer."""
    return MarginTooLow(_("That payment method is not available for this amount. "
                          "Please choose another way to pay or another amount."))


def packages_offered(*, product: Product, channel: str, packages: Sequence[Package] | None = None,
                     supplier: Supplier | None = None) -> list[Package]:
    """Active packages that at least one method of the channel may sell (the margin guard).

    `packages` and `supplier` as for quote_price: read here when not given.
    """
    codes = [code for code, _label in payment_methods_for(channel)]
    packages = list(package_list(product=product) if packages is None else packages)
    if supplier is None:
        try:
            supplier = supplier_current()
        except ProductUnavailable:
            return packages  # nothing can be placed anyway; the order step says why
    comparable = {package.pk: supplier.currency == package.currency for package in packages}
    offered = []
    for package in packages:
        cost = supplier_cost(supplier=supplier, quantity=package.quantity)
        if not codes or any(
            method.allowed for method in _methods_priced(
                codes=codes, product=product, list_price=money(package.price), cost=cost,
                comparable=comparable[package.pk], offer=Decimal(0))):
            offered.append(package)
    return offered


def order_method_check(*, order: Order, payment_method: str) -> None:
    """Refuse switching a placed order to a method that would take it under the minimum margin.

    The order keeps the price it was placed at (a promo discount included); only the fee changes.
    """
    _fee, margin = margin_of(price=order.price, cost=order.cost,
                             fee_percent=payment_fee_percent(payment_method))
    if (order.cost_currency != order.currency
            or margin < margin_minimum(product=order.product, price=order.price)):
        raise MarginTooLow(_("That payment method is not available for this order. "
                             "Please choose another way to pay."))


def order_methods_offered(*, order: Order) -> list[tuple[str, str]]:
    """(code, label) of the methods of the order's channel it may be switched to."""
    offered = []
    for code, label in payment_methods_for(order.channel):
        try:
            order_method_check(order=order, payment_method=code)
        except MarginTooLow:
            continue
        offered.append((code, label))
    return offered


def catalog_margins(*, product: Product, price: Decimal, currency: str, quantity: int,
                    supplier: Supplier | None = None) -> tuple[MethodPrice, ...]:
    """Each enabled method's figures for a price and quantity, for the admin's margin columns."""
    supplier = supplier or supplier_current()
    codes = [code for code, conf in settings.PAYMENT_METHODS.items() if conf.get("enabled")]
    return _methods_priced(codes=codes, product=product, list_price=money(price),
                           cost=supplier_cost(supplier=supplier, quantity=quantity),
                           comparable=supplier.currency == currency, offer=Decimal(0))


# --- Promo codes ----------------------------------------------------------------------------


def promo_code_normalize(code: str) -> str:
    """What a buyer typed as a stored code: no spaces around it, upper case."""
    return "".join(code.split()).upper()


def promo_offer(*, promo: PromoCode, list_price: Decimal) -> Decimal:
    """What the code takes off this price before any cap; never the whole price."""
    if promo.kind == PromoCode.Kind.PERCENT:
        offer = percent_of(list_price, promo.value)
    else:
        offer = money(promo.value)
    return min(offer, list_price - CENT)


def _uses(promo: PromoCode) -> QuerySet[PromoRedemption]:
    """Redemptions that hold a use: their orders were not abandoned."""
    return promo.redemptions.exclude(order__status__in=RELEASED_STATUSES)


def promo_code_check(*, code: str, product: Product, package: Package | None, currency: str,
                     buyer: BuyerIdentity | None = None, now: datetime | None = None,
                     promo: PromoCode | None = None) -> PromoCode:
    """The active code by that name if it may be used on this purchase now, else PromoCodeError."""
    now = now or timezone.now()
    if promo is None:
        promo = PromoCode.objects.filter(code=promo_code_normalize(code), active=True).first()
    if promo is None or not promo.active:
        raise PromoCodeUnknown(_("There is no such promo code. Check it and try again."))
    if promo.valid_from is not None and now < promo.valid_from:
        raise PromoCodeNotValidNow(_("This promo code is not valid yet."))
    if promo.valid_until is not None and now >= promo.valid_until:
        raise PromoCodeNotValidNow(_("This promo code has expired."))
    if promo.product_id is not None and promo.product_id != product.pk:
        raise PromoCodeNotApplicable(_("This promo code is not for this product."))
    limited_to = {package_id for package_id in promo.packages.values_list("pk", flat=True)}
    if limited_to and (package is None or package.pk not in limited_to):
        raise PromoCodeNotApplicable(_("This promo code is not for this package."))
    if promo.kind == PromoCode.Kind.FIXED and promo.currency != currency:
        raise PromoCodeNotApplicable(_("This promo code is not for this currency."))
    if promo.max_uses is not None and _uses(promo).count() >= promo.max_uses:
        raise PromoCodeUsedUp(_("This promo code has been used up."))
    match = buyer.redemptions_match() if buyer is not None else None
    if promo.max_uses_per_buyer is not None and match is not None:
        if _uses(promo).filter(match).count() >= promo.max_uses_per_buyer:
            raise PromoCodeBuyerLimit(_("You have already used this promo code."))
    return promo


def promo_redeem(*, order: Order, quote: Quote, buyer: BuyerIdentity) -> PromoRedemption | None:
    """Record the quote's promo discount on a new order, checking the code's limits once more.

    Runs inside the transaction that inserts the order: the code's row is locked first
    (select_for_update on PostgreSQL; SQLite's IMMEDIATE transactions already serialise
    writers), so racing orders are counted one after another and never exceed the limits.
    A PromoCodeError rolls the order back with it.
    """
    if quote.promo is None or quote.discount <= 0:
        return None
    with transaction.atomic():
        promo = PromoCode.objects.select_for_update().get(pk=quote.promo.pk)
        promo_code_check(code=promo.code, product=quote.product, package=quote.package,
                         currency=quote.currency, buyer=buyer, promo=promo)
        return PromoRedemption.objects.create(
            promo=promo, order=order, code=promo.code, discount=quote.discount,
            currency=quote.currency, discount_limited=quote.discount_limited,
            buyer_telegram_id=buyer.telegram_id, buyer_session_hash=buyer.session_hash,
            buyer_email=buyer.email,
        )


# --- Price history --------------------------------------------------------------------------

# The recorded fields of each catalog model: (model field, PriceChange.Field).
TRACKED_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {
    Package: (("price", PriceChange.Field.PACKAGE_PRICE),),
    Product: (("custom_unit_price", PriceChange.Field.CUSTOM_UNIT_PRICE),
              ("min_margin", PriceChange.Field.MIN_MARGIN),
              ("min_margin_percent", PriceChange.Field.MIN_MARGIN_PERCENT)),
    Supplier: (("cost_per_unit", PriceChange.Field.SUPPLIER_COST),),
}


def catalog_row_save(*, row: Product | Package | Supplier, user: Any = None,
                     actor: str = "") -> list[PriceChange]:
    """Save a product, package or supplier and record each price, cost or minimum it changes."""
    tracked = TRACKED_FIELDS[type(row)]
    with transaction.atomic():
        before: dict[str, Any] = {}
        if row.pk is not None:
            before = (type(row).objects.select_for_update().filter(pk=row.pk)
                      .values(*[name for name, _field in tracked]).first() or {})
        row.save()
        changes = []
        for name, kind in tracked:
            old, new = before.get(name), getattr(row, name)
            if old is not None and Decimal(old) == Decimal(new):
                continue
            changes.append(PriceChange(
                **_changed_by(user=user, actor=actor), field=kind, old_value=old, new_value=new,
                currency="" if kind == PriceChange.Field.MIN_MARGIN_PERCENT else row.currency,
                product=row if isinstance(row, Product) else getattr(row, "product", None),
                package=row if isinstance(row, Package) else None,
                supplier=row if isinstance(row, Supplier) else None,
            ))
        PriceChange.objects.bulk_create(changes)
    return changes


def _changed_by(*, user: Any, actor: str) -> dict[str, Any]:
    """A PriceChange's who: the signed-in user, else the named actor (a service, a command)."""
    signed_in = bool(getattr(user, "pk", None))
    return {"changed_by": user if signed_in else None,
            "actor": actor or (f"admin:{user.get_username()}" if signed_in else "")}


def supplier_volume_prices_set(*, supplier: Supplier, tiers: Mapping[int, Decimal], user: Any = None,
                               actor: str = "") -> list[PriceChange]:
    """Make a supplier's volume tiers exactly `tiers` (from quantity → cost per unit), recording each change.

    A tier is known by the quantity it starts from: one whose quantity is edited is recorded as
    removed at the old quantity and added at the new one, and tiers are rewritten by quantity
    so that two tiers swapping quantities never meet the unique constraint half-way.
    """
    with transaction.atomic():
        # One editor at a time per supplier: the second reads the first's tiers before diffing.
        Supplier.objects.select_for_update().filter(pk=supplier.pk).first()
        current = {tier.min_quantity: tier
                    for tier in SupplierVolumePrice.objects.filter(supplier=supplier)}
        changes = []
        for quantity in sorted(current.keys() | tiers.keys()):
            tier, new = current.get(quantity), tiers.get(quantity)
            old = tier.cost_per_unit if tier is not None else None
            if old is not None and new is not None and Decimal(old) == Decimal(new):
                continue
            if tier is None:
                assert new is not None
                SupplierVolumePrice.objects.create(supplier=supplier, min_quantity=quantity,
                                                   cost_per_unit=new)
            elif new is None:
                tier.delete()
            else:
                tier.cost_per_unit = new
                tier.save(update_fields=["cost_per_unit"])
            changes.append(PriceChange(
                **_changed_by(user=user, actor=actor), field=PriceChange.Field.SUPPLIER_VOLUME_COST,
                supplier=supplier, quantity=quantity, old_value=old, new_value=new,
                currency=supplier.currency))
        PriceChange.objects.bulk_create(changes)
    # A prefetched list on the caller's supplier would now be stale.
    getattr(supplier, "_prefetched_objects_cache", {}).pop("volume_prices", None)
    return changes
