"""The demo catalog: the seed's seven Stars packages at its illustrative prices, in English and Russian."""

from decimal import Decimal

from django.db import transaction

from shop.models import Package, Product, Supplier, SupplierVolumePrice

STARS_PACKAGES = [
    ("Starter", "Стартовый", 50, "1.00"),
    ("Small", "Малый", 100, "2.00"),
    ("Medium", "Средний", 250, "4.50"),
    ("Standard", "Стандарт", 500, "8.50"),
    ("Large", "Большой", 1000, "16.00"),
    ("Mega", "Мега", 2500, "37.00"),
    ("Ultra", "Ультра", 5000, "70.00"),
]
# The sandbox supplier's volume tiers (from Stars, USD per Star); below the first its 0.0165.
# With them every package keeps at least the minimum margin with Stripe's 2.5% and Crypto
# Pay's 3%, except Standard via Crypto Pay: 8.50 − 8.25 − 0.26 = −0.01, refused by the guard.
# Large 16.00 − 15.00: 0.60 by card, 0.52 by Crypto Pay; Mega 37.00 − 35.00: 1.07, 0.89;
# Ultra 70.00 − 66.00: 2.25, 1.90.
SANDBOX_VOLUME_PRICES = [
    (1000, "0.0150"),
    (2500, "0.0140"),
    (5000, "0.0132"),
]
PRODUCT_RUSSIAN = {
    "name_ru": "Звёзды Telegram",
    "description_ru": (
        "Звёздами Telegram платят за цифровые товары в ботах и мини-приложениях, за реакции, "
        "донаты авторам, подарки и подписки — прямо в Telegram."
    ),
}


@transaction.atomic
def demo_catalog_load() -> Product:
    """Create or update the Telegram Stars product, its packages and the sandbox supplier with its tiers."""
    product, _ = Product.objects.update_or_create(
        slug="telegram-stars",
        defaults={
            "name": "Telegram Stars",
            "platform": "telegram",
            "unit_name": "Stars",
            "min_quantity": 50,
            "max_quantity": 10_000,
            "custom_amount_enabled": True,
            # $9.00 for 500 Stars, the seed's margin example.
            "custom_unit_price": Decimal("0.018"),
            "currency": "USD",
            "description": (
                "Telegram Stars pay for digital goods in bots and mini apps, reactions, "
                "tips to creators, gifts and subscriptions, right inside Telegram."
            ),
        },
    )
    # Russian texts are only filled in where empty: an operator's own wording survives a re-run.
    for field, text in PRODUCT_RUSSIAN.items():
        Product.objects.filter(pk=product.pk, **{field: ""}).update(**{field: text})
    for position, (name, name_ru, stars, price) in enumerate(STARS_PACKAGES):
        package, _ = Package.objects.update_or_create(
            product=product,
            quantity=stars,
            defaults={"name": name, "price": Decimal(price), "currency": "USD",
                      "sort_order": position, "active": True},
        )
        Package.objects.filter(pk=package.pk, name_ru="").update(name_ru=name_ru)
    # $8.25 wholesale for 500 Stars, as in the seed's margin tables.
    supplier, _ = Supplier.objects.get_or_create(
        code="sandbox",
        defaults={"name": "Sandbox supplier", "cost_per_unit": Decimal("0.0165"), "currency": "USD"},
    )
    # Only for a supplier without tiers: an operator's own volume prices survive a re-run.
    if not supplier.volume_prices.exists():
        SupplierVolumePrice.objects.bulk_create(
            SupplierVolumePrice(supplier=supplier, min_quantity=quantity, cost_per_unit=Decimal(cost))
            for quantity, cost in SANDBOX_VOLUME_PRICES)
    product.refresh_from_db()
    return product
