"""Catalog: what the shop sells, at what price, and what it costs us wholesale."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


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
    # The margin guard (shop.pricing): price − supplier cost − the method's fee must reach the
    # larger of these, or that method is not offered for that package or amount.
    min_margin = models.DecimalField(
        _("minimum margin"), max_digits=12, decimal_places=2, default=Decimal("0.01"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("Least net margin per order, in the product's currency. 0.01 never sells "
                    "at a loss or at cost."))
    min_margin_percent = models.DecimalField(
        _("minimum margin (%)"), max_digits=5, decimal_places=2, default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text=_("Least net margin as a percentage of the price paid; the larger minimum applies."))
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


class SupplierVolumePrice(models.Model):
    """A wholesale volume tier: from `min_quantity` units an order costs `cost_per_unit` each.

    An order's unit cost is the tier with the greatest `min_quantity` up to its quantity, else the
    supplier's own `cost_per_unit` (shop.pricing.supplier_cost).
    """

    supplier = models.ForeignKey(Supplier, on_delete=models.CASCADE, related_name="volume_prices")
    min_quantity = models.PositiveIntegerField(
        _("from quantity"), validators=[MinValueValidator(1)],
        help_text=_("Orders of at least this many units cost the price below."))
    cost_per_unit = models.DecimalField(
        _("cost per unit"), max_digits=12, decimal_places=6,
        validators=[MinValueValidator(Decimal("0.000001"))])

    class Meta:
        verbose_name = _("volume price")
        verbose_name_plural = _("volume prices")
        ordering = ["supplier", "min_quantity"]
        constraints = [
            models.UniqueConstraint(fields=["supplier", "min_quantity"],
                                    name="supplier_volume_price_unique_quantity"),
            models.CheckConstraint(condition=Q(min_quantity__gte=1),
                                   name="supplier_volume_price_quantity_positive"),
            models.CheckConstraint(condition=Q(cost_per_unit__gt=0),
                                   name="supplier_volume_price_cost_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.supplier}: from {self.min_quantity}, {self.cost_per_unit} {self.supplier.currency}"


# --- Promo codes and price history -------------------------------------------------------------


class PromoCode(models.Model):
    """A discount buyers type in; applied by shop.pricing, never below a product's minimum margin."""

    class Kind(models.TextChoices):
        PERCENT = "percent", _("Percentage of the price")
        FIXED = "fixed", _("Fixed amount")

    # Stored upper-case (shop.pricing.promo_code_normalize): buyers type codes in any case.
    code = models.CharField(_("code"), max_length=40, unique=True)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.PERCENT)
    value = models.DecimalField(
        _("value"), max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))],
        help_text=_("Percent off (e.g. 10) or an amount off in the code's currency (e.g. 0.50)."))
    currency = models.CharField(_("currency"), max_length=3, default="USD",
                                help_text=_("For a fixed amount: the currency it is in."))
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    max_uses = models.PositiveIntegerField(
        _("uses in total"), null=True, blank=True,
        help_text=_("Orders that may use the code; empty for no limit. Expired and cancelled "
                    "orders give their use back."))
    max_uses_per_buyer = models.PositiveIntegerField(
        _("uses per buyer"), null=True, blank=True, default=1,
        help_text=_("Per Telegram user in the bot, per browser session or e-mail on the web; "
                    "empty for no limit."))
    product = models.ForeignKey(
        Product, verbose_name=_("only for product"), on_delete=models.PROTECT, null=True, blank=True,
        related_name="promo_codes")
    packages = models.ManyToManyField(
        Package, verbose_name=_("only for packages"), blank=True, related_name="promo_codes",
        help_text=_("Leave empty for every package and the custom amount."))
    active = models.BooleanField(_("active"), default=True)
    note = models.CharField(_("note"), max_length=200, blank=True,
                            help_text=_("For staff: what the code is for."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("promo code")
        verbose_name_plural = _("promo codes")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(value__gt=0), name="promo_value_positive"),
            models.CheckConstraint(condition=~Q(kind="percent") | Q(value__lte=100),
                                   name="promo_percent_at_most_100"),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True) | Q(valid_until__isnull=True)
                | Q(valid_until__gt=models.F("valid_from")),
                name="promo_window_valid"),
        ]

    def __str__(self) -> str:
        return self.code


class PromoRedemption(models.Model):
    """A promo code used by one order: the discount it gave and who the buyer was."""

    promo = models.ForeignKey(PromoCode, on_delete=models.PROTECT, related_name="redemptions")
    # One code per order: the database refuses a second.
    order = models.OneToOneField("orders.Order", on_delete=models.CASCADE, related_name="promo_redemption")
    code = models.CharField(max_length=40, help_text="The code as it was when used.")
    discount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    # Capped below what the code offers, to keep the order's margin at the product's minimum.
    discount_limited = models.BooleanField(default=False)
    buyer_telegram_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    buyer_session_hash = models.CharField(max_length=64, blank=True, db_index=True)
    buyer_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("promo code use")
        verbose_name_plural = _("promo code uses")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(discount__gt=0), name="promo_redemption_discount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.code} −{self.discount} {self.currency}"


class PriceChange(models.Model):
    """One change of a price, a cost or a minimum margin: who, when, what, old and new."""

    class Field(models.TextChoices):
        PACKAGE_PRICE = "package_price", _("Package price")
        CUSTOM_UNIT_PRICE = "custom_unit_price", _("Custom amount price per unit")
        SUPPLIER_COST = "supplier_cost", _("Supplier cost per unit")
        SUPPLIER_VOLUME_COST = "supplier_volume_cost", _("Supplier cost per unit from a quantity")
        MIN_MARGIN = "min_margin", _("Minimum margin")
        MIN_MARGIN_PERCENT = "min_margin_percent", _("Minimum margin (%)")

    changed_at = models.DateTimeField(_("changed at"), auto_now_add=True, db_index=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("changed by"),
                                   on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    # Who or what made it when there is no user (a service, a command).
    actor = models.CharField(_("actor"), max_length=100, blank=True)
    field = models.CharField(_("what"), max_length=30, choices=Field.choices)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, null=True, blank=True,
                                related_name="price_changes")
    package = models.ForeignKey(Package, on_delete=models.CASCADE, null=True, blank=True,
                                related_name="price_changes")
    supplier = models.ForeignKey(Supplier, on_delete=models.CASCADE, null=True, blank=True,
                                 related_name="price_changes")
    # A supplier's volume tier: the quantity it starts from (a tier is known by it).
    quantity = models.PositiveIntegerField(_("from quantity"), null=True, blank=True)
    # Null old value: the row was created with this value; null new value: the tier was removed.
    old_value = models.DecimalField(_("old"), max_digits=12, decimal_places=6, null=True, blank=True)
    new_value = models.DecimalField(_("new"), max_digits=12, decimal_places=6, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)

    class Meta:
        verbose_name = _("price change")
        verbose_name_plural = _("price changes")
        ordering = ["-changed_at", "-pk"]

    def __str__(self) -> str:
        old = "—" if self.old_value is None else self.old_value
        new = "—" if self.new_value is None else self.new_value
        return f"{self.get_field_display()}: {old} → {new}"
