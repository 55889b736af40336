"""Catalog reads: what is on sale and what it costs."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet

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
        return self.package.name if self.package else "Custom"


def product_default() -> Product:
    """The product the storefront sells today (Telegram Stars)."""
    product = Product.objects.filter(active=True).order_by("pk").first()
    if product is None:
        raise ProductUnavailable("Nothing is on sale right now.")
    return product


def package_list(*, product: Product) -> QuerySet[Package]:
    """Active packages of a product, in display order."""
    return product.packages.filter(active=True).order_by("sort_order", "quantity")


def supplier_current() -> Supplier:
    """The supplier the shop buys from (settings.SUPPLIER_CODE)."""
    try:
        return Supplier.objects.get(code=settings.SUPPLIER_CODE, active=True)
    except Supplier.DoesNotExist:
        raise ProductUnavailable("No active supplier is configured.") from None


def quote_build(*, product: Product, package_id: int | None = None, quantity: int | None = None) -> Quote:
    """Price a package or a custom quantity from the catalog; never from buyer input."""
    if not product.active:
        raise ProductUnavailable("This product is not on sale.")
    package: Package | None = None
    if package_id is not None:
        package = package_list(product=product).filter(pk=package_id).first()
        if package is None:
            raise ProductUnavailable("This package is not on sale.")
        quantity = package.quantity
        price, currency = package.price, package.currency
    else:
        if not product.custom_amount_enabled:
            raise ProductUnavailable("Custom amounts are not on sale.")
        if quantity is None or not product.min_quantity <= quantity <= product.max_quantity:
            raise QuantityOutOfRange(
                f"Choose between {product.min_quantity:,} and {product.max_quantity:,} "
                f"{product.unit_name}."
            )
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
