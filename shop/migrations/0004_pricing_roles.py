"""Promo codes and the price history in the console's roles (orders 0006 made the groups).

Managers add and change promo codes and read the price history; Operators read both. Nobody
deletes: a code is switched off (its uses stay on the orders that had it).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS = {
    "Managers": ("add_promocode", "change_promocode", "view_promocode", "view_promoredemption",
                 "view_pricechange"),
    "Operators": ("view_promocode", "view_promoredemption", "view_pricechange"),
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
        ("shop", "0003_pricing_promo_history"),
        ("orders", "0006_roles"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
