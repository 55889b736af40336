"""manage.py apikey create --partner NAME [--test] | revoke PREFIX | list: partner API keys."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from partners.models import ApiKey, Partner
from partners.webhooks import webhook_target_refusal
from partners.services import api_key_create, api_key_revoke, partner_create


class Command(BaseCommand):
    help = "Create, list or revoke partner API keys; a new key is printed once and never again."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="A new key (the partner is made if new).")
        create.add_argument("--partner", required=True, help="The partner's name.")
        create.add_argument("--test", action="store_true",
                            help="A test key: sandbox supplier and sandbox balance.")
        create.add_argument("--name", default="", help="What the key is for.")
        create.add_argument("--webhook-url", default="", help="Where order updates are POSTed.")
        revoke = actions.add_parser("revoke", help="Revoke a key by its prefix.")
        revoke.add_argument("prefix")
        actions.add_parser("list", help="Every key, without secrets.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            refusal = (webhook_target_refusal(options["webhook_url"])
                       if options["webhook_url"] else "")
            if refusal:
                raise CommandError(f"Webhooks go to public addresses only: {refusal}.")
            partner = Partner.objects.filter(name=options["partner"]).first()
            if partner is None:
                partner = partner_create(name=options["partner"], actor="manage.py apikey")
                self.stdout.write(f"Created partner {partner.name} (sandbox balance "
                                  f"{partner.sandbox_balance} {partner.currency}).")
            key, token = api_key_create(partner=partner, test=options["test"],
                                        name=options["name"], webhook_url=options["webhook_url"])
            self.stdout.write(f"{'Test' if key.test else 'Live'} key for {partner.name}; "
                              "store it now, it is not shown again:")
            self.stdout.write(token)
            if options["webhook_url"]:
                self.stdout.write(f"Webhook signing secret: {key.webhook_secret}")
        elif action == "revoke":
            found = ApiKey.objects.filter(prefix=options["prefix"]).first()
            if found is None:
                raise CommandError(f"No key with prefix {options['prefix']!r}.")
            api_key_revoke(key=found)
            self.stdout.write(f"Revoked {found.prefix}.")
        else:
            for key in ApiKey.objects.select_related("partner").order_by("partner__name", "pk"):
                state = "revoked" if key.revoked_at else "active"
                self.stdout.write(f"{key.prefix}\t{key.partner.name}\t"
                                  f"{'test' if key.test else 'live'}\t{state}\t{key.name}")
