"""The admin site's login: password (counted by django-axes), then a TOTP code for staff who have one.

Staff choose whether to add an authenticator (`manage.py admin_totp <username>`); once they have
a confirmed device, the admin only lets in sessions that gave its code. Where
ADMIN_TOTP_REQUIRED_FOR_SUPERUSERS is on (always in production) a superuser without one is
refused until an operator runs that command on the server.

The admin home also shows the operator's problem queues, each count linking to its orders, and
the supplier balance with the open reconciliation mismatches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.translation import gettext, gettext_lazy as _
from django_otp import devices_for_user
from django_otp.forms import OTPAuthenticationFormMixin
from django_otp.models import Device

from orders import console, selectors
from reseller import dashboard
from stock import selectors as stock_selectors


def login_client_ip(request: HttpRequest) -> str | None:
    """The address django-axes counts failed logins by: the client's, also behind our TLS proxy.

    Each trusted proxy appends the address it was reached from to X-Forwarded-For, so with
    TRUSTED_PROXY_COUNT proxies the client is that many entries from the right; anything further
    left came from the client and may be forged. Without trusted proxies (the demo) the header
    is ignored.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [entry for entry in forwarded if entry]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


def totp_devices(user: Any) -> list[Device]:
    """The user's confirmed second-factor devices."""
    return list(devices_for_user(user, confirmed=True))


def totp_setup_required(user: Any) -> bool:
    """A superuser without an authenticator where one is required: refused until one is added."""
    return (settings.ADMIN_TOTP_REQUIRED_FOR_SUPERUSERS and user.is_superuser
            and not totp_devices(user))


def totp_setup_message(user: Any) -> str:
    return gettext(
        "Superusers need an authenticator app here. On the server run "
        "`manage.py admin_totp %(username)s`, add the key it prints to your app, "
        "then log in with the app's code.") % {"username": user.get_username()}


class AdminLoginForm(OTPAuthenticationFormMixin, AdminAuthenticationForm):
    """The admin login: password first; the TOTP code is checked only for users with a device."""

    otp_token = forms.CharField(
        required=False, label=_("Authenticator code"),
        help_text=_("Only if you added an authenticator app."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}))
    # django-otp's mixin reads these two: a device picker for users with several devices, and
    # the challenge button of interactive devices (TOTP is not one, so it stays empty).
    otp_device = forms.CharField(required=False, widget=forms.Select)
    otp_challenge = forms.CharField(required=False)

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()  # wrong passwords stop here, counted by django-axes
        user = self.get_user()
        if user is None:
            return cleaned_data
        if totp_devices(user):
            try:
                self.clean_otp(user)
            except forms.ValidationError as error:
                if error.code in ("token_required", "device_required"):
                    raise
                # A wrong code counts as a failed login for this user and address, as a wrong
                # password does: the device's own back-off alone would allow guessing for hours.
                user_login_failed.send(sender=type(self), request=self.request,
                                       credentials={"username": user.get_username()})
                raise
        elif totp_setup_required(user):
            raise forms.ValidationError(totp_setup_message(user), code="totp_required")
        return cleaned_data

    def _chosen_device(self, user: Any) -> Device | None:
        # One device needs no choosing: its code alone is tried, which is all django-otp asks.
        device = super()._chosen_device(user)
        if device is None and len(devices := totp_devices(user)) == 1:
            device = devices[0]
        return device

    def needs_device_choice(self) -> bool:
        user = self.get_user()
        return user is not None and len(totp_devices(user)) > 1


class ResellerAdminSite(admin.AdminSite):
    """Django's admin site that also requires the TOTP code from staff with a device."""

    login_form = AdminLoginForm
    login_template = "admin/totp_login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        user = request.user
        if getattr(user, "is_verified", lambda: False)():
            return True
        # Not verified: enough for staff without a device, unless this superuser needs one.
        # Asked twice per page (the view's check, then each_context): read the devices once.
        allowed = getattr(request, "_admin_without_totp", None)
        if allowed is None:
            allowed = not totp_devices(user) and not totp_setup_required(user)
            request._admin_without_totp = allowed  # type: ignore[attr-defined]
        return allowed

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = dict(extra_context or {})
        if request.user.is_authenticated and request.user.is_staff and totp_setup_required(request.user):
            context["totp_setup_message"] = totp_setup_message(request.user)
        return super().login(request, context)

    def get_urls(self) -> list[URLPattern | URLResolver]:
        # The dashboard and its margin report: admin pages of their own, not of a model.
        return [
            path("dashboard/", self.admin_view(partial(dashboard.dashboard_view, site=self)),
                 name="dashboard"),
            path("dashboard/margin.csv", self.admin_view(dashboard.margin_report_view),
                 name="dashboard_margin_csv"),
            *super().get_urls(),
        ]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        context = dict(extra_context or {})
        if request.user.has_perm("orders.view_order"):
            minutes = settings.CONSOLE_UNDELIVERED_MINUTES
            counts = selectors.problem_queue_counts(undelivered_minutes=minutes)
            context["problem_queues"] = problem_queues(counts, undelivered_minutes=minutes)
        # The supplier wallet (a warning when under its threshold) and the reconciliation queue.
        if request.user.has_perm("stock.view_balancereading"):
            context["show_supplier_balance"] = True
            context["supplier_balance"] = stock_selectors.balance_latest()
        if request.user.has_perm("stock.view_reconciliationmismatch"):
            context["reconciliation_open"] = stock_selectors.mismatches_open_count()
        return super().index(request, context)


@dataclass(frozen=True)
class ProblemQueue:
    """One line of the admin home's problem queues: what, how many, and the filtered list."""

    label: str
    count: int
    url: str


def problem_queues(counts: selectors.ProblemQueueCounts, *, undelivered_minutes: int) -> list[ProblemQueue]:
    """The admin home's queue lines, each linking to the order list's Queue filter.

    The list filters by the same conditions the counts come from (orders.selectors); the
    paid-but-undelivered queue's cutoff moves on with the clock, so an order that crossed it
    since the home was counted is listed too.
    """
    orders = reverse("admin:orders_order_changelist")
    return [
        ProblemQueue(console.queue_label(name, undelivered_minutes=undelivered_minutes),
                     getattr(counts, name), f"{orders}?{urlencode({'queue': name})}")
        for name in selectors.QUEUE_NAMES
    ]


def lockout_response(request: HttpRequest, original_response: HttpResponse | None,
                     credentials: dict[str, Any] | None) -> HttpResponse:
    """django-axes' answer to a locked-out (username, address) pair: 429 and how long to wait."""
    return render(request, "admin/locked_out.html", {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": round(settings.AXES_COOLOFF_TIME * 60),
    }, status=429)
