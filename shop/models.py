"""Catalog: what the shop sells, at what price, and what it costs us wholesale."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import get_language


def _localized(row: models.Model, field: str) -> str:
    """A catalog text in the active language (`name_ru` beside `name`), English where it is empty."""
    language = (get_language() or settings.LANGUAGE_CODE).split("-")[0]
    if language != settings.LANGUAGE_CODE:
        translated = getattr(row, f"{field}_{language}", "")
        if translated:
            return translated
    return getattr(row, field)


class Product(models.Model):
    """A top-up product, e.g. Telegram Stars; other platforms can be added as rows."""

    class RecipientKind(models.TextChoices):
        TELEGRAM_USER = "telegram_user", "Telegram user ID or @username"

    name = models.CharField(max_length=100)
    # Per-language catalog texts; an empty one falls back to English (see localized()).
    name_ru = models.CharField("name (Russian)", max_length=100, blank=True)
    slug = models.SlugField(unique=True)
    platform = models.CharField(max_length=40, help_text="Platform code sent to the supplier.")
    recipient_kind = models.CharField(
        max_length=40, choices=RecipientKind.choices, default=RecipientKind.TELEGRAM_USER
    )
    unit_name = models.CharField(max_length=40, default="Stars")
    min_quantity = models.PositiveIntegerField(default=50)
    max_quantity = models.PositiveIntegerField(default=10_000)
    custom_amount_enabled = models.BooleanField(default=True)
    custom_unit_price = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Retail price per unit for a custom amount.",
    )
    currency = models.CharField(max_length=3, default="USD")
    description = models.TextField(blank=True)
    description_ru = models.TextField("description (Russian)", blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(min_quantity__gte=1) & Q(max_quantity__gte=models.F("min_quantity")),
                name="product_quantity_range_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def localized(self, field: str) -> str:
        """`name` or `description` in the active language, falling back to English."""
        return _localized(self, field)


class Package(models.Model):
    """A fixed bundle of a product at a fixed retail price."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="packages")
    name = models.CharField(max_length=60)
    name_ru = models.CharField("name (Russian)", max_length=60, blank=True)
    quantity = models.PositiveIntegerField(help_text="Units (Stars) in the package.")
    price = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    currency = models.CharField(max_length=3, default="USD")
    active = models.BooleanField(default=True)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "quantity"]
        constraints = [
            models.UniqueConstraint(fields=["product", "quantity"], name="package_unique_quantity"),
            models.CheckConstraint(condition=Q(price__gt=0), name="package_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.quantity} {self.product.unit_name})"

    def localized(self, field: str) -> str:
        """`name` in the active language, falling back to English."""
        return _localized(self, field)


class Supplier(models.Model):
    """A wholesale supplier account and what one unit costs us there."""

    code = models.SlugField(unique=True, help_text="Matches the SUPPLIER_CODE setting.")
    name = models.CharField(max_length=100)
    cost_per_unit = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal("0"))]
    )
    currency = models.CharField(max_length=3, default="USD")
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name
