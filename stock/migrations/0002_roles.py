"""The console's roles on the supplier account: both see it all and work the reconciliation
queue (change = note and resolve); Managers also set the low-balance thresholds. Nobody deletes."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

MODELS = ("balancereading", "balancethreshold", "balancealert", "reconciliationmismatch")
OPERATOR = tuple(f"view_{model}" for model in MODELS) + ("change_reconciliationmismatch",)
GRANTS = {
    "Operators": OPERATOR,
    "Managers": OPERATOR + ("add_balancethreshold", "change_balancethreshold"),
}


def grant(apps, schema_editor):
    app_config = apps.get_app_config("stock")
    app_config.models_module = True  # create_permissions skips historical apps without one
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        permissions = list(Permission.objects.filter(content_type__app_label="stock",
                                                     codename__in=codenames))
        assert len(permissions) == len(codenames), "a stock permission is missing"
        group.permissions.add(*permissions)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    stock = Permission.objects.filter(content_type__app_label="stock")
    for group in Group.objects.filter(name__in=GRANTS):
        group.permissions.remove(*stock)


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0006_roles"),
        ("stock", "0001_initial"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
