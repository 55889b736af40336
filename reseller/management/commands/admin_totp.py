"""Give an admin user a TOTP authenticator: prints the otpauth:// link and its QR code to scan."""

import io
from typing import Any

import segno
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = ("Add a TOTP authenticator for an admin user and print the key to scan; from then on "
            "the admin login asks that user for its code. --replace drops the old ones (lost phone).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--replace", action="store_true",
                            help="delete the user's existing authenticators first")
        parser.add_argument("--no-qr", action="store_true", help="print only the otpauth:// link")

    def handle(self, *args: Any, username: str, replace: bool, no_qr: bool, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if not user.is_staff:
            self.stderr.write(f"Note: {username} is not staff and cannot use the admin anyway.")
        with transaction.atomic():
            existing = TOTPDevice.objects.filter(user=user)
            if existing.exists() and not replace:
                raise CommandError(f"{username} already has an authenticator; "
                                   "pass --replace to drop it and make a new one.")
            existing.delete()
            # Confirmed at once: whoever runs this on the server is trusted to hand the key over.
            device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
        url = device.config_url
        self.stdout.write(f"Authenticator added for {username}. Scan the code below, or add this link "
                          "in your authenticator app; keep it secret:")
        self.stdout.write(url)
        if not no_qr:
            drawing = io.StringIO()
            segno.make(url, error="m").terminal(out=drawing, compact=True)
            self.stdout.write(drawing.getvalue(), ending="")
        self.stdout.write(self.style.SUCCESS(
            "From now on the admin login asks this user for the app's 6-digit code."))
