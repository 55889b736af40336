"""The catalog in the console: prices with their margin per payment method, promo codes, price history.

Prices, costs and minimum margins are saved through shop.pricing.catalog_row_save, which
records every change (who, when, old, new) in PriceChange, from the change forms, the
product's package inline and the package list's editable prices alike; a supplier's volume
tiers through shop.pricing.supplier_volume_prices_set.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from shop.exceptions import ProductUnavailable
from shop.models import (
    Package,
    PriceChange,
    Product,
    PromoCode,
    PromoRedemption,
    Supplier,
    SupplierVolumePrice,
)
from shop.pricing import (
    RELEASED_STATUSES,
    MethodPrice,
    catalog_margins,
    catalog_row_save,
    promo_code_normalize,
    supplier_current,
    supplier_volume_prices_set,
)


def _supplier_or_none() -> Supplier | None:
    """The current supplier with its volume tiers, or None when none is configured."""
    try:
        return supplier_current()
    except ProductUnavailable:
        return None


def _margins_html(margins: tuple[MethodPrice, ...], currency: str) -> SafeString:
    """One line per method: its net margin, marked where it is under the minimum (not offered)."""
    if not margins:
        return format_html("{}", "—")
    return format_html_join(
        "", '<div class="{}">{}: {} {} ({}%){}</div>',
        ((
            "margin-ok" if method.allowed else "margin-low",
            gettext(method.label), method.margin, currency, method.margin_percent,
            "" if method.allowed else " ⚠ " + gettext("under the minimum %(minimum)s: not offered") % {
                "minimum": method.minimum},
        ) for method in margins),
    )


class MarginStyles:
    css = {"all": ("css/admin-pricing.css",)}


class PackageInline(admin.TabularInline):
    model = Package
    extra = 0
    fields = ("name", "name_ru", "quantity", "price", "currency", "active", "sort_order")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "platform", "min_quantity", "max_quantity", "custom_amount_enabled",
                    "custom_unit_price", "currency", "min_margin", "min_margin_percent", "active")
    list_filter = ("active", "platform")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("custom_amount_margins",)
    inlines = [PackageInline]
    Media = MarginStyles

    @admin.display(description=_("Custom amount: net margin per payment method"))
    def custom_amount_margins(self, product: Product) -> SafeString:
        supplier = _supplier_or_none() if product.pk is not None else None
        if supplier is None:
            return format_html("{}", "—")
        # Within a volume tier the margin grows with the quantity: its first quantity is the worst.
        quantities = {product.min_quantity, product.max_quantity} | {
            tier.min_quantity for tier in supplier.volume_prices.all()
            if product.min_quantity < tier.min_quantity <= product.max_quantity}
        rows = []
        for quantity in sorted(quantities):
            margins = catalog_margins(product=product, price=product.custom_unit_price * quantity,
                                      currency=product.currency, quantity=quantity,
                                      supplier=supplier)
            rows.append((quantity, _margins_html(margins, product.currency)))
        return format_html_join("", '<div class="custom-margin"><strong>{}</strong> {}</div>',
                                ((gettext("%(quantity)s units:") % {"quantity": quantity}, html)
                                 for quantity, html in rows))

    def save_model(self, request: HttpRequest, obj: Product, form: forms.ModelForm, change: bool) -> None:
        catalog_row_save(row=obj, user=request.user)

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        if formset.model is not Package:
            super().save_formset(request, form, formset, change)
            return
        packages = formset.save(commit=False)
        for package in formset.deleted_objects:
            package.delete()
        for package in packages:
            catalog_row_save(row=package, user=request.user)
        formset.save_m2m()


@admin.register(Package)
class PackageAdmin(admin.ModelAdmin):
    list_display = ("name", "name_ru", "product", "quantity", "price", "currency", "unit_price",
                    "margins", "active", "sort_order")
    list_editable = ("price", "active", "sort_order")
    list_filter = ("product", "active")
    list_select_related = ("product",)
    ordering = ("product", "sort_order", "quantity")
    Media = MarginStyles

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return PackageChangeList

    @admin.display(description=_("Price per unit"))
    def unit_price(self, package: Package) -> str:
        return f"{package.price / package.quantity:.4f}"

    @admin.display(description=_("Net margin per payment method"))
    def margins(self, package: Package) -> SafeString:
        supplier: Supplier | None = getattr(package, "current_supplier", None)
        if supplier is None:
            return format_html("{}", gettext("no active supplier"))
        margins = catalog_margins(product=package.product, price=package.price,
                                  currency=package.currency, quantity=package.quantity,
                                  supplier=supplier)
        return _margins_html(margins, package.currency)

    def save_model(self, request: HttpRequest, obj: Package, form: forms.ModelForm, change: bool) -> None:
        # Also the list's editable prices: the changelist saves each changed row through here.
        catalog_row_save(row=obj, user=request.user)


class PackageChangeList(ChangeList):
    """The package list with the current supplier (and its tiers) read once and set on each row.

    The margin column then costs no query per row; the rows stay the page's queryset (its cache
    filled here), which the list's editable prices use as well.
    """

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        supplier = _supplier_or_none()
        for package in self.result_list:
            package.current_supplier = supplier


class SupplierVolumePriceInline(admin.TabularInline):
    """The supplier's volume tiers, part of its price list: whoever may change it may remove one."""

    model = SupplierVolumePrice
    extra = 0
    fields = ("min_quantity", "cost_per_unit")
    verbose_name = _("volume price")
    verbose_name_plural = _("volume prices: from this quantity, this cost per unit (below the "
                            "first, the supplier's cost per unit)")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Neither role holds a delete permission; a tier's removal is an edit of the supplier's
        # prices and is recorded in the price history like any other.
        return self.has_change_permission(request, obj)


@admin.register(Supplier)
class SupplierAdmin(admin.ModelAdmin):
    list_display = ("name", "code", "cost_per_unit", "volume_price_list", "currency", "active")
    inlines = [SupplierVolumePriceInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Supplier]:
        return super().get_queryset(request).prefetch_related("volume_prices")

    @admin.display(description=_("volume prices"))
    def volume_price_list(self, supplier: Supplier) -> str:
        return "; ".join(gettext("from %(quantity)s: %(cost)s") % {
            "quantity": tier.min_quantity, "cost": tier.cost_per_unit}
            for tier in supplier.volume_prices.all()) or "—"

    def save_model(self, request: HttpRequest, obj: Supplier, form: forms.ModelForm, change: bool) -> None:
        catalog_row_save(row=obj, user=request.user)

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        if formset.model is not SupplierVolumePrice:
            super().save_formset(request, form, formset, change)
            return
        deleted = formset.deleted_forms if formset.can_delete else []
        kept = [tier_form for tier_form in formset.forms
                if tier_form not in deleted and tier_form.cleaned_data
                and (tier_form.instance.pk is not None or tier_form.has_changed())]
        supplier_volume_prices_set(
            supplier=form.instance, user=request.user,
            tiers={tier_form.cleaned_data["min_quantity"]: tier_form.cleaned_data["cost_per_unit"]
                   for tier_form in kept})
        # What formset.save() would have noted, for the admin log's change message.
        formset.new_objects = [f.instance for f in kept if f.instance.pk is None]
        formset.changed_objects = [(f.instance, f.changed_data) for f in kept
                                   if f.instance.pk is not None and f.has_changed()]
        formset.deleted_objects = [f.instance for f in deleted if f.instance.pk is not None]


class PromoCodeForm(forms.ModelForm):
    class Meta:
        model = PromoCode
        fields = ("code", "kind", "value", "currency", "valid_from", "valid_until", "max_uses",
                  "max_uses_per_buyer", "product", "packages", "active", "note")

    def clean_code(self) -> str:
        code = promo_code_normalize(self.cleaned_data["code"])
        if not code:
            raise forms.ValidationError(_("Enter a code."))
        return code


@admin.register(PromoCode)
class PromoCodeAdmin(admin.ModelAdmin):
    form = PromoCodeForm
    list_display = ("code", "kind", "value", "currency", "valid_from", "valid_until", "uses",
                    "max_uses", "max_uses_per_buyer", "product", "active")
    list_filter = ("active", "kind", "product")
    search_fields = ("code", "note")
    filter_horizontal = ("packages",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromoCode]:
        return super().get_queryset(request).select_related("product").annotate(
            active_uses=Count("redemptions",
                              filter=~Q(redemptions__order__status__in=RELEASED_STATUSES)))

    @admin.display(description=_("uses"), ordering="active_uses")
    def uses(self, promo: PromoCode) -> int:
        return int(getattr(promo, "active_uses", 0))


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record nobody edits in the console: written by the pricing service only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PromoRedemption)
class PromoRedemptionAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "code", "order", "order_status", "discount", "currency",
                    "discount_limited", "buyer")
    list_filter = ("discount_limited",)
    list_select_related = ("order",)
    search_fields = ("code", "order__reference", "buyer_email", "buyer_telegram_id")

    @admin.display(description=_("order status"), ordering="order__status")
    def order_status(self, redemption: PromoRedemption) -> str:
        return redemption.order.get_status_display()

    @admin.display(description=_("buyer"))
    def buyer(self, redemption: PromoRedemption) -> str:
        if redemption.buyer_telegram_id:
            return f"Telegram {redemption.buyer_telegram_id}"
        return redemption.buyer_email or (redemption.buyer_session_hash[:12] + "…"
                                          if redemption.buyer_session_hash else "—")


@admin.register(PriceChange)
class PriceChangeAdmin(ReadOnlyAdmin):
    list_display = ("changed_at", "field", "changed_of", "old_value", "new_value", "currency", "who")
    list_filter = ("field", "product")
    list_select_related = ("product", "package__product", "supplier", "changed_by")
    date_hierarchy = "changed_at"

    @admin.display(description=_("of"))
    def changed_of(self, change: PriceChange) -> str:
        of = str(change.package or change.supplier or change.product or "—")
        if change.quantity is None:
            return of
        return gettext("%(of)s, from %(quantity)s units") % {"of": of, "quantity": change.quantity}

    @admin.display(description=_("who"))
    def who(self, change: PriceChange) -> str:
        return change.changed_by.get_username() if change.changed_by else (change.actor or "—")
