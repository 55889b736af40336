"""The console's roles: Operators work orders and queues; Managers also edit the catalog.

Superusers stand above both. Permissions are created here (they are otherwise made only after
all migrations, by post_migrate), so the groups get them on a fresh database too.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OPERATORS = "Operators"
MANAGERS = "Managers"

ROLE_APPS = ("orders", "shop")
# Operators see everything in orders and shop, act on orders (admin actions need change) and
# add notes to an order's timeline; no price, supplier or catalog edits.
OPERATOR_EXTRA = ("orders.change_order", "orders.add_orderevent")
# Managers: prices, packages and suppliers besides. (Promo codes and reports join when they exist.)
MANAGER_EXTRA = tuple(
    f"shop.{action}_{model}" for model in ("product", "package", "supplier")
    for action in ("add", "change")
)


def _permissions(apps, codenames):
    Permission = apps.get_model("auth", "Permission")
    found = []
    for dotted in codenames:
        app_label, codename = dotted.split(".")
        found.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return found


def create_roles(apps, schema_editor):
    for label in ROLE_APPS:
        app_config = apps.get_app_config(label)
        # create_permissions skips app configs without a models module, as historical ones are.
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view_all = list(Permission.objects.filter(
        content_type__app_label__in=ROLE_APPS, codename__startswith="view_"))
    operator_permissions = view_all + _permissions(apps, OPERATOR_EXTRA)

    operators, _ = Group.objects.get_or_create(name=OPERATORS)
    operators.permissions.set(operator_permissions)
    managers, _ = Group.objects.get_or_create(name=MANAGERS)
    managers.permissions.set(operator_permissions + _permissions(apps, MANAGER_EXTRA))


def delete_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[OPERATORS, MANAGERS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0005_invoice_accounts"),
        ("shop", "0002_catalog_russian"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
