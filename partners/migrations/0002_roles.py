"""The console's roles on the partner API: both see partners, keys, the ledger, partner orders
and webhook deliveries, and redeliver webhooks; only Managers add or edit partners and keys
(so only they create keys) and top up balances. Nobody deletes."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW = tuple(f"view_{model}" for model in (
    "partner", "apikey", "ledgerentry", "partnerorder", "webhookdelivery"))
OPERATOR = VIEW + ("redeliver_webhookdelivery",)
GRANTS = {
    "Operators": OPERATOR,
    "Managers": OPERATOR + ("add_partner", "change_partner", "topup_partner", "add_apikey",
                            "change_apikey"),
}


def grant(apps, schema_editor):
    app_config = apps.get_app_config("partners")
    app_config.models_module = True  # create_permissions skips historical apps without one
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        permissions = list(Permission.objects.filter(content_type__app_label="partners",
                                                     codename__in=codenames))
        assert len(permissions) == len(codenames), "a partners permission is missing"
        group.permissions.add(*permissions)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    partners = Permission.objects.filter(content_type__app_label="partners")
    for group in Group.objects.filter(name__in=GRANTS):
        group.permissions.remove(*partners)


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0006_roles"),
        ("partners", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="partner",
            options={"ordering": ["name"],
                     "permissions": [("topup_partner", "Can top up a partner's balance")],
                     "verbose_name": "partner", "verbose_name_plural": "partners"},
        ),
        migrations.AlterModelOptions(
            name="webhookdelivery",
            options={"ordering": ["-id"],
                     "permissions": [("redeliver_webhookdelivery",
                                      "Can send a webhook delivery again")],
                     "verbose_name": "webhook delivery",
                     "verbose_name_plural": "webhook deliveries"},
        ),
        migrations.RunPython(grant, revoke),
    ]
