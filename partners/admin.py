"""The console's partner pages: partners and their balances (Managers top up), API keys
(Managers create, revoke, rotate webhook secrets), and the read-only ledger, partner orders and
webhook deliveries (both roles redeliver). Every write goes through partners.services or
partners.webhooks."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy as _, ngettext
from django.views.decorators.http import require_POST

from orders.admin import to_the_second
from partners import selectors, services, webhooks
from partners.exceptions import LedgerError
from partners.models import ApiKey, LedgerEntry, Partner, PartnerOrder, WebhookDelivery
from reseller.ratelimits import rates_parse

# How many ledger entries the partner page shows; the ledger list has them all.
LEDGER_ON_PAGE = 20


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


def _time_column(field_name: str, description: Any) -> Any:
    @admin.display(description=description, ordering=field_name)
    def column(model_admin: Any, row: Any) -> str | None:
        return to_the_second(getattr(row, field_name))

    return column


class ReasonForm(forms.Form):
    """Why an operator acts on a key: recorded in the admin log."""

    reason = forms.CharField(label=_("Reason"), max_length=255,
                             help_text=_("Why: recorded in the admin log."),
                             widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(gettext("Say why."))
        return reason


class TopupForm(forms.Form):
    """Money a partner paid us, credited to one of its balances."""

    LIVE, SANDBOX = "live", "sandbox"

    amount = forms.DecimalField(label=_("Amount"), max_digits=12, decimal_places=2,
                                min_value=0.01)
    balance = forms.ChoiceField(label=_("Balance"), widget=forms.RadioSelect, initial=LIVE,
                                choices=[(LIVE, _("Live")), (SANDBOX, _("Sandbox"))])
    note = forms.CharField(label=_("Note"), max_length=255,
                           help_text=_("The payment's reference, or why: on the ledger entry."))

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError(gettext("Say where the money came from."))
        return note


def _https_by_default(db_field: Any, **kwargs: Any) -> Any:
    """A URL typed without a scheme is https (Django 6's default, asked for now)."""
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ApiKeyForm(forms.ModelForm):
    """A key's settings, checked here so that a typo cannot break the key's requests later."""

    class Meta:
        model = ApiKey
        fields = ("partner", "name", "test", "allowed_ips", "rate_limit", "webhook_url")
        formfield_callback = _https_by_default

    def clean_rate_limit(self) -> str:
        rate_limit = self.cleaned_data["rate_limit"].strip()
        try:
            rates_parse(rate_limit)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None
        return rate_limit

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data["webhook_url"].strip()
        refusal = webhooks.webhook_target_refusal(url) if url else ""
        if refusal:
            raise forms.ValidationError(
                gettext("Webhooks go to public addresses only: %(why)s.") % {"why": refusal})
        return url

    def clean_allowed_ips(self) -> str:
        entries = [line.strip() for line in
                   self.cleaned_data["allowed_ips"].replace(",", "\n").splitlines()]
        entries = [entry for entry in entries if entry]
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise forms.ValidationError(
                    gettext("%(entry)s is not an address or network.") % {"entry": entry},
                ) from None
        return "\n".join(entries)


def _confirm_page(model_admin: admin.ModelAdmin, request: HttpRequest, *, title: str,
                  explanation: str, button: str, form: forms.Form | None, back_url: str,
                  original: Any = None, hidden: list[tuple[str, str]] | None = None,
                  ) -> TemplateResponse:
    """The confirmation step of an action: what will happen, and (if asked) why."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title, "explanation": explanation, "button": button, "form": form,
        "back_url": back_url, "opts": model_admin.model._meta, "original": original,
        "hidden": hidden or [],
    }
    return TemplateResponse(request, "admin/partners/confirm.html", context)


class _ReadOnly(admin.ModelAdmin):
    """Rows written only by the services: nobody adds, edits or deletes them here."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields] + list(self.readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Partners ---------------------------------------------------------------------------------


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ("name", "balance", "sandbox_balance", "currency", "discount_percent",
                    "active")
    list_filter = ("active",)
    search_fields = ("name", "contact_email")
    add_fields = ("name", "contact_email", "discount_percent", "currency", "active", "note")
    change_fields = ("name", "contact_email", "discount_percent", "currency", "active", "note",
                     "balance", "sandbox_balance", "created", "recent_ledger")
    created = _time_column("created_at", _("Created at"))

    def get_fields(self, request: HttpRequest, obj: Partner | None = None) -> Any:
        return self.change_fields if obj is not None else self.add_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Partner | None = None) -> Any:
        if obj is None:
            return ()
        # The balances move only through the ledger; the currency is what they are in.
        return ("currency", "balance", "sandbox_balance", "created", "recent_ledger")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its ledger and orders stay; deactivate it instead

    def save_model(self, request: HttpRequest, obj: Partner, form: Any, change: bool) -> None:
        if change:
            services.partner_update(partner=obj)
            return
        created = services.partner_create(
            name=obj.name, actor=_actor(request), contact_email=obj.contact_email,
            discount_percent=obj.discount_percent, currency=obj.currency, active=obj.active,
            note=obj.note)
        # The admin goes on with its own instance (the log, the redirect): make it the new row.
        obj.pk = created.pk
        obj.refresh_from_db()
        obj._state.adding = False

    @admin.display(description=_("Latest ledger entries"))
    def recent_ledger(self, partner: Partner) -> str:
        entries = selectors.ledger_recent(partner=partner, limit=LEDGER_ON_PAGE)
        link = format_html('<a href="{}?partner__id__exact={}">{}</a>',
                           reverse("admin:partners_ledgerentry_changelist"), partner.pk,
                           gettext("The whole ledger"))
        if not entries:
            return format_html("{} · {}", gettext("No entries yet."), link)
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                                    "<td>{}</td><td>{}</td><td>{}</td></tr>", (
            (to_the_second(entry.created_at), gettext("sandbox") if entry.sandbox
             else gettext("live"), entry.get_kind_display(), entry.amount, entry.balance_after,
             entry.order.reference if entry.order else "", entry.note, entry.actor)
            for entry in entries))
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>"
            "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>{}",
            gettext("Time"), gettext("Balance"), gettext("Kind"), gettext("Amount"),
            gettext("Balance after"), gettext("Order"), gettext("Note"), gettext("By"), rows, link)

    # --- Top up ---------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        topup = path("<path:object_id>/topup/", self.admin_site.admin_view(self.topup_view),
                     name="partners_partner_topup")
        return [topup, *super().get_urls()]

    def has_topup_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("partners.topup_partner")

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Partner | None = None,
                           ) -> HttpResponse:
        if obj is not None and self.has_topup_permission(request):
            context["topup_url"] = reverse("admin:partners_partner_topup", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def topup_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Credit a balance: GET shows the form, POST (amount, balance, note) moves the money."""
        if not self.has_topup_permission(request):
            raise PermissionDenied
        partner = self.get_object(request, unquote(object_id))
        if partner is None:
            raise Http404(f"No partner {object_id}")
        change_url = reverse("admin:partners_partner_change", args=[partner.pk])
        form = TopupForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            sandbox = form.cleaned_data["balance"] == TopupForm.SANDBOX
            try:
                entry = services.partner_balance_topup(
                    partner=partner, amount=form.cleaned_data["amount"], actor=_actor(request),
                    note=form.cleaned_data["note"], sandbox=sandbox)
            except LedgerError as error:
                self.message_user(request, gettext("Nothing was done: %(why)s") % {"why": error},
                                  messages.ERROR)
            else:
                balance_label = gettext("sandbox") if sandbox else gettext("live")
                self.log_change(request, partner, gettext("Topped up %(amount)s %(currency)s "
                                                          "(%(balance)s): %(note)s") % {
                    "amount": entry.amount, "currency": entry.currency,
                    "balance": balance_label, "note": entry.note})
                self.message_user(request, gettext(
                    "%(partner)s: %(amount)s %(currency)s added; the %(balance)s balance is "
                    "%(after)s %(currency)s.") % {
                    "partner": partner, "amount": entry.amount, "currency": entry.currency,
                    "balance": balance_label, "after": entry.balance_after},
                    messages.SUCCESS)
            return redirect(change_url)
        return _confirm_page(
            self, request, title=gettext("Top up balance: %(partner)s") % {"partner": partner},
            explanation=gettext("Balance now: %(live)s %(currency)s live, %(sandbox)s "
                                "%(currency)s sandbox. The amount is added to the balance you "
                                "choose and written to the ledger with your note.") % {
                "live": partner.balance, "sandbox": partner.sandbox_balance,
                "currency": partner.currency},
            button=gettext("Top up balance"), form=form, back_url=change_url, original=partner)


# --- API keys ---------------------------------------------------------------------------------


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("prefix", "partner", "name", "test", "is_active", "last_used", "created",
                    "webhook_url")
    list_filter = ("test", ("revoked_at", admin.EmptyFieldListFilter), "partner")
    search_fields = ("=prefix", "name", "partner__name")
    list_select_related = ("partner",)
    actions = ["revoke_keys"]
    add_fields = ("partner", "name", "test", "allowed_ips", "rate_limit", "webhook_url")
    change_fields = ("partner", "test", "prefix", "name", "allowed_ips", "rate_limit",
                     "webhook_url", "webhook_secret_masked", "created", "created_by",
                     "last_used", "revoked")
    created = _time_column("created_at", _("Created at"))
    last_used = _time_column("last_used_at", _("Last used"))
    revoked = _time_column("revoked_at", _("Revoked at"))

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return self.change_fields if obj is not None else self.add_fields

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if isinstance(db_field, models.URLField):
            kwargs.setdefault("assume_scheme", "https")
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ()
        # A key's partner and mode are in its prefix; only its settings change.
        return ("partner", "test", "prefix", "webhook_secret_masked", "created", "created_by",
                "last_used", "revoked")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its orders and deliveries name it; revoke it instead

    @admin.display(description=_("Active"), boolean=True)
    def is_active(self, key: ApiKey) -> bool:
        return key.active

    @admin.display(description=_("Webhook signing secret"))
    def webhook_secret_masked(self, key: ApiKey) -> str:
        return f"{key.webhook_secret[:10]}…" if key.webhook_secret else "-"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            services.api_key_update(key=obj)
            return
        created, token = services.api_key_create(
            partner=obj.partner, test=obj.test, name=obj.name, created_by=request.user,
            allowed_ips=obj.allowed_ips, rate_limit=obj.rate_limit, webhook_url=obj.webhook_url)
        obj.pk = created.pk
        obj.refresh_from_db()
        obj._state.adding = False
        # Only this request's response shows it: not the session, not a message (a cookie).
        obj._token_once = token  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey,
                     post_url_continue: str | None = None) -> HttpResponse:
        """The new key, once: this page is the only place it is ever shown."""
        token = getattr(obj, "_token_once", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        return self._secret_page(request, obj, title=gettext("API key created"), token=token,
                                 secret=obj.webhook_secret)

    def _secret_page(self, request: HttpRequest, key: ApiKey, *, title: str, token: str = "",
                     secret: str = "") -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title, "key": key, "token": token, "secret": secret,
            "change_url": reverse("admin:partners_apikey_change", args=[key.pk]),
            "opts": self.model._meta, "original": key,
        }
        return TemplateResponse(request, "admin/partners/apikey/secret_once.html", context)

    def get_urls(self) -> list[URLPattern]:
        return [
            path("<path:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view),
                 name="partners_apikey_revoke"),
            path("<path:object_id>/rotate-secret/",
                 self.admin_site.admin_view(self.rotate_view), name="partners_apikey_rotate"),
            *super().get_urls(),
        ]

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: ApiKey | None = None,
                           ) -> HttpResponse:
        if obj is not None and obj.active and self.has_change_permission(request, obj):
            context["key_actions"] = [
                (gettext("Revoke"), reverse("admin:partners_apikey_revoke", args=[obj.pk])),
                (gettext("Rotate webhook secret"),
                 reverse("admin:partners_apikey_rotate", args=[obj.pk])),
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _key_for_action(self, request: HttpRequest, object_id: str) -> ApiKey:
        key = self.get_object(request, unquote(object_id))
        if key is None:
            raise Http404(f"No API key {object_id}")
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        return key

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Revoke one key: GET confirms, POST (with a reason) revokes it for good."""
        key = self._key_for_action(request, object_id)
        change_url = reverse("admin:partners_apikey_change", args=[key.pk])
        if not key.active:
            self.message_user(request, gettext("%(key)s was revoked already.") % {"key": key},
                              messages.WARNING)
            return redirect(change_url)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            services.api_key_revoke(key=key)
            self.log_change(request, key, gettext("Revoked: %(reason)s") % {
                "reason": form.cleaned_data["reason"]})
            self.message_user(request, gettext("%(key)s is revoked: every request with it now "
                                               "gets 401.") % {"key": key}, messages.SUCCESS)
            return redirect(change_url)
        return _confirm_page(
            self, request, title=gettext("Revoke %(key)s") % {"key": key},
            explanation=gettext("Every request with this key will get 401 from now on, and its "
                                "webhooks stop. This cannot be undone: the partner needs a new "
                                "key."),
            button=gettext("Revoke"), form=form, back_url=change_url, original=key)

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A new webhook signing secret: GET confirms, POST shows the new secret once."""
        key = self._key_for_action(request, object_id)
        change_url = reverse("admin:partners_apikey_change", args=[key.pk])
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            secret = services.api_key_webhook_secret_rotate(key=key)
            self.log_change(request, key, gettext("Webhook secret rotated: %(reason)s") % {
                "reason": form.cleaned_data["reason"]})
            return self._secret_page(request, key, title=gettext("Webhook secret rotated"),
                                     secret=secret)
        return _confirm_page(
            self, request, title=gettext("Rotate the webhook secret of %(key)s") % {"key": key},
            explanation=gettext("Webhooks are signed with a new secret from now on, and the "
                                "old one stops verifying. The new secret is shown once, on "
                                "the next page."),
            button=gettext("Rotate webhook secret"), form=form, back_url=change_url,
            original=key)

    @admin.action(description=_("Revoke selected keys"), permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        confirmed = request.POST.get("confirm") == "yes"
        form = ReasonForm(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            revoked = []
            for key in queryset.filter(revoked_at__isnull=True):
                services.api_key_revoke(key=key)
                self.log_change(request, key, gettext("Revoked: %(reason)s") % {
                    "reason": form.cleaned_data["reason"]})
                revoked.append(key.prefix)
            self.message_user(request, ngettext(
                "%(count)s key revoked: %(keys)s.", "%(count)s keys revoked: %(keys)s.",
                len(revoked)) % {"count": len(revoked), "keys": ", ".join(revoked) or "-"},
                messages.SUCCESS if revoked else messages.WARNING)
            return None
        active = [str(key) for key in queryset.filter(revoked_at__isnull=True)]
        return _confirm_page(
            self, request, title=gettext("Revoke selected keys"),
            explanation=gettext("Every request with these keys will get 401 from now on: "
                                "%(keys)s.") % {"keys": ", ".join(active) or "-"},
            button=gettext("Revoke"), form=form,
            back_url=reverse("admin:partners_apikey_changelist"),
            hidden=[("action", request.POST.get("action", "")), ("confirm", "yes"),
                    ("select_across", request.POST.get("select_across", "0")),
                    *((helpers.ACTION_CHECKBOX_NAME, pk)
                      for pk in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))])


# --- The ledger, partner orders and webhook deliveries (read-only) ----------------------------


@admin.register(LedgerEntry)
class LedgerEntryAdmin(_ReadOnly):
    list_display = ("created", "partner", "sandbox", "kind", "amount", "balance_after",
                    "currency", "order", "note", "actor")
    list_filter = ("kind", "sandbox", "partner", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=order__reference", "note", "partner__name")
    list_select_related = ("partner", "order")
    created = _time_column("created_at", _("Created at"))


@admin.register(PartnerOrder)
class PartnerOrderAdmin(_ReadOnly):
    list_display = ("reference", "partner", "sandbox", "api_key", "order", "order_status",
                    "created")
    list_filter = ("sandbox", "partner")
    search_fields = ("=reference", "=order__reference")
    list_select_related = ("partner", "api_key", "order")
    created = _time_column("created_at", _("Created at"))

    @admin.display(description=_("Status"))
    def order_status(self, partner_order: PartnerOrder) -> str:
        return partner_order.order.get_status_display()


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_ReadOnly):
    list_display = ("created", "event", "status", "partner", "key_prefix", "order", "attempts",
                    "last_status_code", "last_error", "next_attempt")
    list_filter = ("status", "event", "api_key__test", "api_key__partner",
                   ("created_at", admin.DateFieldListFilter))
    search_fields = ("=event_id", "=order__reference", "=api_key__prefix")
    list_select_related = ("api_key__partner", "order")
    readonly_fields = ("payload_pretty",)
    exclude = ("payload",)
    actions = ["redeliver"]
    created = _time_column("created_at", _("Created at"))
    next_attempt = _time_column("next_attempt_at", _("Next attempt"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields if f.name != "payload"] + [
            "payload_pretty"]

    @admin.display(description=_("Partner"), ordering="api_key__partner__name")
    def partner(self, delivery: WebhookDelivery) -> str:
        return str(delivery.api_key.partner)

    @admin.display(description=_("Key"), ordering="api_key__prefix")
    def key_prefix(self, delivery: WebhookDelivery) -> str:
        return delivery.api_key.prefix

    @admin.display(description=_("Payload"))
    def payload_pretty(self, delivery: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(delivery.payload, indent=2,
                                                        ensure_ascii=False, sort_keys=True))

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("partners.redeliver_webhookdelivery")

    def get_urls(self) -> list[URLPattern]:
        redeliver = path("<path:object_id>/redeliver/",
                         self.admin_site.admin_view(require_POST(self.redeliver_view)),
                         name="partners_webhookdelivery_redeliver")
        return [redeliver, *super().get_urls()]

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "",
                           obj: WebhookDelivery | None = None) -> HttpResponse:
        if obj is not None and self.has_redeliver_permission(request):
            context["redeliver_url"] = reverse("admin:partners_webhookdelivery_redeliver",
                                               args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _redeliver(self, request: HttpRequest, deliveries: list[WebhookDelivery]) -> None:
        sent, skipped = [], []
        for delivery in deliveries:
            if webhooks.webhook_redeliver(delivery=delivery):
                sent.append(str(delivery.event_id))
                self.log_change(request, delivery, gettext("Redelivered"))
            else:
                skipped.append(str(delivery.event_id))
        if sent:
            self.message_user(request, ngettext(
                "%(count)s delivery queued again.", "%(count)s deliveries queued again.",
                len(sent)) % {"count": len(sent)}, messages.SUCCESS)
        if skipped:
            self.message_user(request, ngettext(
                "%(count)s not queued (%(events)s): still pending, or its key is revoked or "
                "has no webhook URL.", "%(count)s not queued (%(events)s): still pending, or "
                "their key is revoked or has no webhook URL.", len(skipped)) % {
                "count": len(skipped), "events": ", ".join(skipped[:10])}, messages.WARNING)

    def redeliver_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_redeliver_permission(request):
            raise PermissionDenied
        delivery = self.get_object(request, unquote(object_id))
        if delivery is None:
            raise Http404(f"No delivery {object_id}")
        self._redeliver(request, [delivery])
        return redirect(reverse("admin:partners_webhookdelivery_change", args=[delivery.pk]))

    @admin.action(description=_("Redeliver selected deliveries"), permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        self._redeliver(request, list(queryset.select_related("api_key")))
