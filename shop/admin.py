from django.contrib import admin

from shop.models import Package, Product, Supplier


class PackageInline(admin.TabularInline):
    model = Package
    extra = 0
    fields = ("name", "name_ru", "quantity", "price", "currency", "active", "sort_order")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "platform", "min_quantity", "max_quantity", "custom_amount_enabled",
                    "custom_unit_price", "currency", "active")
    list_filter = ("active", "platform")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [PackageInline]


@admin.register(Package)
class PackageAdmin(admin.ModelAdmin):
    list_display = ("name", "name_ru", "product", "quantity", "price", "currency", "unit_price",
                    "active", "sort_order")
    list_editable = ("active", "sort_order")
    list_filter = ("product", "active")
    ordering = ("product", "sort_order", "quantity")

    @admin.display(description="Price per unit")
    def unit_price(self, package: Package) -> str:
        return f"{package.price / package.quantity:.4f}"


@admin.register(Supplier)
class SupplierAdmin(admin.ModelAdmin):
    list_display = ("name", "code", "cost_per_unit", "currency", "active")
