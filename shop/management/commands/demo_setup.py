"""Load the demo catalog and orders, make sure an admin login exists; safe to run again and again."""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orders.demo import demo_orders_load
from shop.demo import demo_catalog_load


class Command(BaseCommand):
    help = "Load the demo catalog and orders and create (or reuse) the demo admin user, printing its login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        if settings.DJANGO_ENV != "demo":
            # A superuser with a printed password and a sample catalog have no place there.
            raise CommandError(
                f"demo_setup is for the demo only, and DJANGO_ENV={settings.DJANGO_ENV}. In "
                "production create the admin with `manage.py createsuperuser` (README, Production).")
        product = demo_catalog_load()
        self.stdout.write(f"Catalog: {product.name}, {product.packages.count()} packages.")
        created = demo_orders_load()
        self.stdout.write(f"Demo orders: {created} created over the last six days." if created else
                          "Demo orders: not added (the shop has orders already).")
        login_file = Path(settings.BASE_DIR) / "var" / "admin-login.txt"
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        password = None
        if user is not None and login_file.exists():
            saved_user, _, saved_password = login_file.read_text().strip().partition(":")
            if saved_user == username and user.check_password(saved_password):
                password = saved_password
        if password is None:
            password = secrets.token_urlsafe(12)
            if user is None:
                user = user_model.objects.create_superuser(username=username, email="", password=password)
            else:
                user.set_password(password)
                user.is_staff = user.is_superuser = True
                user.save()
            login_file.parent.mkdir(parents=True, exist_ok=True)
            login_file.write_text(f"{username}:{password}\n")
            login_file.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(
            f"Admin login: http://127.0.0.1:8000/admin/  user: {username}  password: {password}"
        ))
