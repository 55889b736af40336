"""The demo catalog: the seed's seven Stars packages at its illustrative prices."""

from decimal import Decimal

from django.db import transaction

from shop.models import Package, Product, Supplier

STARS_PACKAGES = [
    ("Starter", 50, "1.00"),
    ("Small", 100, "2.00"),
    ("Medium", 250, "4.50"),
    ("Standard", 500, "8.50"),
    ("Large", 1000, "16.00"),
    ("Mega", 2500, "37.00"),
    ("Ultra", 5000, "70.00"),
]


@transaction.atomic
def demo_catalog_load() -> Product:
    """Create or update the Telegram Stars product, its packages and the sandbox supplier."""
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
    for position, (name, stars, price) in enumerate(STARS_PACKAGES):
        Package.objects.update_or_create(
            product=product,
            quantity=stars,
            defaults={"name": name, "price": Decimal(price), "currency": "USD",
                      "sort_order": position, "active": True},
        )
    # $8.25 wholesale for 500 Stars, as in the seed's margin tables.
    Supplier.objects.get_or_create(
        code="sandbox",
        defaults={"name": "Sandbox supplier", "cost_per_unit": Decimal("0.0165"), "currency": "USD"},
    )
    return product
