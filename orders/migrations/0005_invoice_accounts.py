"""Give invoices and the TON cursor made before provider accounts existed their account.

- TON invoices: network and raw wallet, from the network and wallet kept in their raw quote.
- Stripe invoices: the mode, from the session's livemode (or its cs_live_/cs_test_ id).
- Sandbox invoices: "sandbox".
- Crypto Pay invoices stay "": the app id is in no row (only the token, which we never
  store, says it). That is safe: the shop matches a "" row only when no invoice of the notice's
  own account has that id, and even then pays nothing unless the order reference Crypto Pay
  echoes (payload) names that row's order. Telegram invoices have "" by design (UUID payloads).
- The TON cursor ("" account) moves to the account of the newest TON invoice, the wallet the
  poller last read. Should that guess be wrong, the poller finds out on its next read: the
  chain of that wallet has no transaction at the cursor's lt, so it reads again from before
  the oldest watched invoice (the inbox drops what it already holds). With no TON invoice the
  row stays "", where nothing reads it: the poller starts its account from the history start.
"""

import base64
import binascii

from django.db import migrations


def _ton_account(raw: dict) -> str:
    network, wallet = raw.get("network"), raw.get("wallet")
    if not isinstance(network, str) or not isinstance(wallet, str):
        return ""
    try:
        data = base64.urlsafe_b64decode(wallet.strip().replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        return ""
    if len(data) != 36:  # tag, workchain, 32-byte account id, CRC16
        return ""
    workchain = int.from_bytes(data[1:2], "big", signed=True)
    return f"{network}:{workchain}:{data[2:34].hex().upper()}"


def _stripe_account(invoice) -> str:
    livemode = (invoice.raw or {}).get("livemode")
    if isinstance(livemode, bool):
        return "live" if livemode else "test"
    if invoice.provider_invoice_id.startswith("cs_live_"):
        return "live"
    if invoice.provider_invoice_id.startswith("cs_test_"):
        return "test"
    return ""


def accounts_fill(apps, schema_editor) -> None:
    PaymentInvoice = apps.get_model("orders", "PaymentInvoice")
    ProviderCursor = apps.get_model("orders", "ProviderCursor")
    unkeyed = PaymentInvoice.objects.filter(account="")
    for invoice in unkeyed.filter(provider__in=("ton", "stripe")).iterator():
        if invoice.provider == "ton":
            account = _ton_account(invoice.raw or {})
        else:
            account = _stripe_account(invoice)
        if account:
            invoice.account = account
            invoice.save(update_fields=["account"])
    unkeyed.filter(provider="sandbox").update(account="sandbox")

    newest_ton = (PaymentInvoice.objects.filter(provider="ton").exclude(account="")
                  .order_by("-created_at").values_list("account", flat=True).first())
    if newest_ton and not ProviderCursor.objects.filter(provider="ton", account=newest_ton).exists():
        ProviderCursor.objects.filter(provider="ton", account="").update(account=newest_ton)


class Migration(migrations.Migration):

    dependencies = [
        ("orders", "0004_day_two"),
    ]

    operations = [
        migrations.RunPython(accounts_fill, migrations.RunPython.noop),
    ]
