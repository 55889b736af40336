"""Supplier volume prices in the console's roles: Managers add and change tiers; Operators read them.

No delete permission (neither role deletes anything): a Manager removes a tier on the supplier's
page, where it is part of the supplier's price list and the removal is recorded in the price
history (shop.admin.SupplierVolumePriceInline).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS = {
    "Managers": ("add_suppliervolumeprice", "change_suppliervolumeprice",
                 "view_suppliervolumeprice"),
    "Operators": ("view_suppliervolumeprice",),
}


def grant(apps, schema_editor):
    app_config = apps.get_app_config("shop")
    app_config.models_module = True  # create_permissions skips historical apps without one
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.add(*Permission.objects.filter(
            content_type__app_label="shop", codename__in=codenames))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name__in=GRANTS):
        group.permissions.remove(*Permission.objects.filter(
            content_type__app_label="shop", codename__in=GRANTS[group.name]))


class Migration(migrations.Migration):

    dependencies = [
        ("shop", "0005_supplier_volume_price"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
