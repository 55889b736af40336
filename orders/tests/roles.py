"""The console's roles for tests that flush the database (transactional tests).

The Operators and Managers groups and their permissions are rows written by data migrations;
a transactional test's flush removes them. roles_restore() runs those migrations' own
functions again, against the migrated project state, so the groups are exactly what a
fresh database has.
"""

import importlib

from django.db import connection
from django.db.migrations.loader import MigrationLoader

# (app, migration, function) in the order migrate runs them.
ROLE_MIGRATIONS = (
    ("orders", "0006_roles", "create_roles"),
    ("orders", "0007_console_permissions", "grant"),
    ("shop", "0004_pricing_roles", "grant"),
    ("shop", "0006_volume_price_roles", "grant"),
    ("stock", "0002_roles", "grant"),
    ("partners", "0002_roles", "grant"),
)


def roles_restore() -> None:
    apps = MigrationLoader(connection).project_state().apps
    with connection.schema_editor() as schema_editor:
        for app_label, migration, function in ROLE_MIGRATIONS:
            module = importlib.import_module(f"{app_label}.migrations.{migration}")
            getattr(module, function)(apps, schema_editor)
