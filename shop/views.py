"""The storefront: catalog → recipient → confirm → pay → status.

What the buyer chose and who they confirmed live in the session; every page re-derives
prices from the catalog, so nothing a browser posts can change what an order costs.
"""

import hashlib
import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import get_language, gettext_lazy, pgettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from orders.exceptions import (
    InvalidRecipient,
    InvalidRecipientInput,
    InvalidTransition,
    OrderStateChanged,
    PaymentMethodUnavailable,
    PaymentProviderError,
    RecipientLookupLimited,
    SupplierError,
)
from orders.models import Order, PaymentInvoice
from orders.models import OrderStatus as S
from orders.payments import payment_methods_for
from orders.payments.money import from_minor
from orders.payments.demo import simulate_payment, simulate_supported
from orders.payments.services import invoice_open, payment_method_change
from orders.payments.ton import ton_qr_data_uri
from orders.services import (
    order_cancel,
    order_create,
    order_pay_sandbox,
    recipient_lookup,
    recipient_lookup_limits,
)
from orders.suppliers.base import RecipientInfo
from orders.display import (
    money_display,
    order_payment_due,
    order_status_payload,
    recipient_handle,
    stars_display,
)
from shop.exceptions import CatalogError, MarginTooLow, ProductUnavailable, PromoCodeError
from shop.forms import (
    EXPIRED_FORM_MESSAGE,
    ConfirmForm,
    CustomAmountForm,
    OrderFindForm,
    PackageChoiceForm,
    RecipientForm,
)
from shop.pricing import BuyerIdentity, order_methods_offered, promo_code_normalize
from shop.ownership import (
    OWNER_KEY_PARAM,
    order_owner_grant,
    order_owner_path,
    request_is_order_buyer,
)
from shop.selectors import (
    Catalog,
    Quote,
    catalog_current,
    order_lookup,
    order_reference_normalize,
    product_default,
    promo_for_order,
)
from reseller.ratelimits import client_ip
from shop.services import order_lookup_blocked, order_lookup_failure_record
from orders.services import buyer_session_hash

logger = logging.getLogger(__name__)

CHANNEL = "web"
# Session keys. CHOICE: {"package_id": int} or {"quantity": int}. RECIPIENT: {"input",
# "user_id", "username"}.
SESSION_CHOICE = "shop_choice"
SESSION_RECIPIENT = "shop_recipient"
# The promo code the buyer applied on the confirm page (normalised), shown again on the next render.
SESSION_PROMO = "shop_promo"
# A confirm page's token is signed for the session that was shown it and carries a digest of
# what it showed, so rendering the page writes nothing; a token that placed an order finds it
# again through Order.request_key. It is refused after this long.
CONFIRM_TOKEN_MAX_AGE = timedelta(days=1)
CONFIRM_TOKEN_SALT = "shop.views.confirm"

MSG_NOT_FOUND = gettext_lazy(
    "We couldn't find that Telegram account. Check the ID or username and try again.")
MSG_SUPPLIER_DOWN = gettext_lazy(
    "Our supplier isn't answering right now, please try again in a minute.")
MSG_LOOKUPS_LIMITED = gettext_lazy(
    "Too many account checks from here. Please wait a few minutes and try again.")
MSG_CHOOSE_FIRST = gettext_lazy("First choose how many Stars you want.")
MSG_RECIPIENT_FIRST = gettext_lazy("First tell us which Telegram account to top up.")
MSG_CHANGED = gettext_lazy(
    "Your order changed in another tab. Check the details below and confirm again.")
MSG_METHOD_UNAVAILABLE = gettext_lazy("That payment method is not available here.")
MSG_ACTION_UNAVAILABLE = gettext_lazy("That action is not available for this order.")
MSG_PROVIDER_DOWN = gettext_lazy(
    "The payment provider isn't answering right now, please try again in a minute.")
MSG_OWNER_LINK_INVALID = gettext_lazy(
    "That link does not let you manage this order. You can still follow it on this page.")
MSG_METHOD_CHANGED = gettext_lazy("You now pay with %(method)s.")
MSG_AMOUNT_NOT_OFFERED = gettext_lazy(
    "This amount can't be bought right now. Please choose another amount.")
MSG_PROMO_APPLIED = gettext_lazy("Promo code %(code)s applied.")
MSG_PROMO_LIMITED = gettext_lazy(
    "Promo code %(code)s applied. With some payment methods its discount is smaller, so that "
    "the price still covers our costs: each method shows its price.")

def _quote_context(quote: Quote) -> dict[str, Any]:
    return {
        # Quote.name is what the order stores; the buyer reads the name in their language.
        "name": quote.package.localized("name") if quote.package else pgettext("package name", "Custom"),
        "stars": quote.quantity,
        "price": money_display(quote.list_price, quote.currency),
        "promo": quote.promo.code if quote.promo else "",
        "discount": money_display(quote.discount, quote.currency) if quote.discount else "",
        "to_pay": money_display(quote.price, quote.currency),
    }


def _buyer_identity(request: HttpRequest, email: str = "") -> BuyerIdentity:
    """The web buyer for a promo code's per-buyer limit: their session, and an e-mail if given."""
    session_key = request.session.session_key or ""
    return BuyerIdentity(session_hash=buyer_session_hash(session_key) if session_key else "",
                         email=email)


def _method_choices(quote: Quote) -> list[tuple[str, str]]:
    """The methods the margin guard lets through; with a promo code, each with its own price."""
    choices = []
    for method in quote.offered:
        label = _(method.label)
        if quote.promo is not None:
            label = _("%(method)s — %(price)s") % {
                "method": label, "price": money_display(method.price, quote.currency)}
            if method.discount_limited:
                label += " " + (_("(discount limited to %(discount)s)") % {
                    "discount": money_display(method.discount, quote.currency)}
                    if method.discount else _("(no discount with this method)"))
        choices.append((method.code, label))
    return choices


def _page(request: HttpRequest, template: str, context: dict[str, Any] | None = None,
          status: int = 200) -> HttpResponse:
    """Render with what base.html needs (templates/ has no context processor of ours)."""
    base = {
        "shop_name": settings.SHOP_NAME,
        "test_mode": settings.SUPPLIER_CODE == "sandbox",
    }
    return render(request, template, {**base, **(context or {})}, status=status)


# --- Session helpers ------------------------------------------------------------------------


def _session_choice(request: HttpRequest) -> dict[str, int] | None:
    """The package or quantity the buyer chose, if the session holds a well-formed one."""
    choice = request.session.get(SESSION_CHOICE)
    if isinstance(choice, dict) and len(choice) == 1:
        key, value = next(iter(choice.items()))
        if key in ("package_id", "quantity") and type(value) is int:
            return {key: value}
    return None


def _session_recipient(request: HttpRequest) -> dict[str, str] | None:
    recipient = request.session.get(SESSION_RECIPIENT)
    if isinstance(recipient, dict) and recipient.get("user_id") and recipient.get("input"):
        return recipient
    return None


def _confirm_fingerprint(choice: dict[str, int], recipient: dict[str, str]) -> str:
    """What a confirm page showed, to tell whether the session changed under it."""
    (key, value), = choice.items()
    return f"{key}={value}|{recipient['user_id']}|{recipient.get('username') or ''}"


def _confirm_signer(request: HttpRequest) -> signing.TimestampSigner:
    """Signs confirm tokens for this session only: another browser's token is refused here."""
    return signing.TimestampSigner(
        salt=f"{CONFIRM_TOKEN_SALT}:{request.session.session_key or ''}")


def _fingerprint_digest(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:12]


def _confirm_token_issue(request: HttpRequest, fingerprint: str) -> str:
    """A new token for one render of the confirm page: a nonce and what the page showed, signed."""
    return _confirm_signer(request).sign(f"{secrets.token_urlsafe(9)}.{_fingerprint_digest(fingerprint)}")


def _confirm_token_shown(request: HttpRequest, token: str) -> str | None:
    """The digest of what the page that issued `token` showed; None unless this session was
    issued it within CONFIRM_TOKEN_MAX_AGE."""
    try:
        value = _confirm_signer(request).unsign(token, max_age=CONFIRM_TOKEN_MAX_AGE)
    except signing.BadSignature:
        return None
    return value.rpartition(".")[2]


def _request_key(token: str) -> str:
    """The order's request key for a confirm token: the database makes it one order per token."""
    return f"confirm:{token}"


# --- Pages ----------------------------------------------------------------------------------


# The catalog page as a visitor without messages sees it, kept per process (CACHES["local"])
# by language, catalog reading and chosen package; the CSRF token goes in per request.
CATALOG_PAGE_SECONDS = 10
_CSRF_SLOT = "csrf-token-slot-5f0c2e"


@require_http_methods(["GET", "HEAD", "POST"])
def catalog(request: HttpRequest) -> HttpResponse:
    """The packages and the custom amount; choosing one stores it and asks for the recipient."""
    try:
        catalog = catalog_current()
    except ProductUnavailable as exc:
        return _page(request, "shop/closed.html", {"reason": str(exc)}, status=503)
    product = catalog.product
    # The margin guard: a package no method of ours may sell is not offered at all.
    packages = catalog.packages_offered(CHANNEL)
    package_form: PackageChoiceForm | None = None
    custom_form: CustomAmountForm | None = None
    if request.method == "POST":
        choice: dict[str, int] | None = None
        form: PackageChoiceForm | CustomAmountForm
        if "package" in request.POST:
            form = package_form = PackageChoiceForm(request.POST, packages=packages)
            if form.is_valid():
                choice = {"package_id": form.cleaned_data["package"]}
        else:
            form = custom_form = CustomAmountForm(request.POST, product=product)
            if form.is_valid():
                choice = {"quantity": form.cleaned_data["quantity"]}
        if choice is not None:
            try:
                quote = catalog.quote(channel=CHANNEL, package_id=choice.get("package_id"),
                                      quantity=choice.get("quantity"))
            except CatalogError as exc:
                form.add_error(None, str(exc))
            else:
                if quote.methods and not quote.offered:
                    form.add_error(None, str(MSG_AMOUNT_NOT_OFFERED))
                else:
                    request.session[SESSION_CHOICE] = choice
                    return redirect("shop:recipient")
    selected = _session_choice(request)
    page_key = None
    if request.method != "POST" and not request.GET and not len(messages.get_messages(request)):
        chosen = ",".join(f"{key}={value}" for key, value in (selected or {}).items())
        page_key = f"catalog_page:{request.path}:{get_language()}:{catalog.serial}:{chosen}"
        body = caches["local"].get(page_key)
        if body is not None:
            return HttpResponse(body.replace(_CSRF_SLOT, get_token(request)))
    context = {
        # The template caches what only changes with the catalog and the language by this.
        "catalog_serial": catalog.serial,
        "product": product,
        "product_name": product.localized("name"),
        "product_description": product.localized("description"),
        # Called by the template only when its cached fragment of the list has expired.
        "packages": lambda: [
            {"id": package.pk, "name": package.localized("name"), "stars": stars_display(package.quantity),
             "price": money_display(package.price, package.currency)}
            for package in packages
        ],
        "unit_price": money_display(product.custom_unit_price, product.currency),
        "package_form": package_form or PackageChoiceForm(packages=packages),
        "custom_form": custom_form or CustomAmountForm(product=product),
        "selected": selected,
    }
    if page_key is None:
        return _page(request, "shop/catalog.html", context,
                     status=400 if request.method == "POST" else 200)
    # Rendered with a stand-in for the CSRF token, kept, then served with this request's token.
    body = _page(request, "shop/catalog.html", {**context, "csrf_token": _CSRF_SLOT}).content.decode()
    caches["local"].set(page_key, body, CATALOG_PAGE_SECONDS)
    return HttpResponse(body.replace(_CSRF_SLOT, get_token(request)))


def _chosen_quote(request: HttpRequest) -> tuple[Catalog, dict[str, int], Quote] | HttpResponse:
    """The catalog, session choice and its current price, or a redirect to the catalog."""
    choice = _session_choice(request)
    if choice is None:
        messages.info(request, MSG_CHOOSE_FIRST)
        return redirect("shop:catalog")
    try:
        catalog = catalog_current()
        quote = catalog.quote(channel=CHANNEL, package_id=choice.get("package_id"),
                              quantity=choice.get("quantity"))
    except CatalogError as exc:
        return _choose_again(request, exc)
    return catalog, choice, quote


def _choose_again(request: HttpRequest, exc: CatalogError) -> HttpResponse:
    """The buyer's choice is no longer on sale: forget it and send them back to the catalog."""
    request.session.pop(SESSION_CHOICE, None)
    messages.error(request, _("%(reason)s Please choose again.") % {"reason": exc})
    return redirect("shop:catalog")


@require_http_methods(["GET", "HEAD", "POST"])
def recipient(request: HttpRequest) -> HttpResponse:
    """Ask for the Telegram account and check with the supplier that it exists."""
    chosen = _chosen_quote(request)
    if isinstance(chosen, HttpResponse):
        return chosen
    _, _, quote = chosen
    current = _session_recipient(request)
    form = RecipientForm(initial={"recipient": current["input"]} if current else None)
    status = 200
    if request.method == "POST":
        form = RecipientForm(request.POST)
        status = 400
        if form.is_valid():
            limits = recipient_lookup_limits(client_ip=client_ip(request),
                                             session_key=request.session.session_key or "")
            try:
                normalised, info = recipient_lookup(raw=form.cleaned_data["recipient"],
                                                    limits=limits)
            except RecipientLookupLimited:
                form.add_error("recipient", MSG_LOOKUPS_LIMITED)
                status = 429
            except InvalidRecipientInput as exc:
                form.add_error("recipient", str(exc))
            except InvalidRecipient:
                form.add_error("recipient", MSG_NOT_FOUND)
            except SupplierError as exc:
                logger.warning("recipient check failed: %r", exc)
                form.add_error("recipient", MSG_SUPPLIER_DOWN)
            else:
                confirmed = {"input": normalised, "user_id": info.user_id,
                             "username": info.username or ""}
                if confirmed != current:  # the same account again: nothing to write
                    request.session[SESSION_RECIPIENT] = confirmed
                return redirect("shop:confirm")
        # A failed attempt must not leave an earlier account silently confirmed.
        request.session.pop(SESSION_RECIPIENT, None)
    return _page(request, "shop/recipient.html", {
        "quote": _quote_context(quote), "form": form,
    }, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest) -> HttpResponse:
    """Show who gets what for how much; the buyer's yes places the order.

    "Apply" (action=promo) prices the purchase with a promo code and shows it again, placing
    nothing; the code then stays in the form. Only the methods the margin guard lets through
    for this package or amount are offered, each at its own price when a code applies.
    """
    token = request.POST.get("token", "") if request.method == "POST" else ""
    if token:
        # A repeated POST of a form that already placed its order (double click, reload).
        placed = Order.objects.filter(channel=CHANNEL, request_key=_request_key(token)).first()
        if placed is not None:
            return redirect("shop:order_pay", public_id=placed.public_id)
    chosen = _chosen_quote(request)
    if isinstance(chosen, HttpResponse):
        return chosen
    catalog, choice, quote = chosen
    current = _session_recipient(request)
    if current is None:
        messages.info(request, MSG_RECIPIENT_FIRST)
        return redirect("shop:recipient")
    fingerprint = _confirm_fingerprint(choice, current)
    posting = request.method == "POST"
    applied = request.session.get(SESSION_PROMO)
    code = (promo_code_normalize(request.POST.get("promo_code", ""))[:40] if posting
            else applied if isinstance(applied, str) else "")
    email = request.POST.get("buyer_email", "").strip()[:254] if posting else ""
    promo_error = ""
    if code:
        try:
            quote = catalog.quote(channel=CHANNEL, promo_code=code,
                                  buyer=_buyer_identity(request, email),
                                  package_id=choice.get("package_id"), quantity=choice.get("quantity"))
        except PromoCodeError as exc:
            promo_error = str(exc)
            if not posting:
                # Applied earlier, used up or expired since: shown once, then out of the form.
                request.session.pop(SESSION_PROMO, None)
                code = ""
        except CatalogError:
            pass  # withdrawn meanwhile: placing the order says so
    methods = _method_choices(quote)
    status = 200
    form = ConfirmForm(payment_methods=methods, initial={"promo_code": code})
    if posting and request.POST.get("action") == "promo":
        # Apply or remove a code: nothing is placed, the page shows the new prices.
        if code and not promo_error:
            request.session[SESSION_PROMO] = code
        else:
            request.session.pop(SESSION_PROMO, None)
        form = ConfirmForm(payment_methods=methods,
                           initial={"promo_code": code, "buyer_email": email})
        status = 400 if promo_error else 200
    elif posting:
        form = ConfirmForm(request.POST, payment_methods=methods)
        if form.is_valid():
            shown = _confirm_token_shown(request, form.cleaned_data["token"])
            if promo_error:
                form.add_error("promo_code", promo_error)
            elif shown is None:
                form.add_error(None, EXPIRED_FORM_MESSAGE)
            elif shown != _fingerprint_digest(fingerprint):
                form.add_error(None, MSG_CHANGED)
            else:
                try:
                    outcome = _order_place(request, form.cleaned_data, choice, current, code)
                except CatalogError as exc:
                    # Withdrawn since the page's catalog reading (CATALOG_CACHE_SECONDS).
                    return _choose_again(request, exc)
                if isinstance(outcome, str):
                    form.add_error(None, outcome)
                else:
                    request.session.pop(SESSION_PROMO, None)
                    return redirect("shop:order_pay", public_id=outcome.public_id)
        status = 400
    promo_note = ""
    if quote.promo is not None and not promo_error:
        limited = any(method.discount_limited for method in quote.offered)
        promo_note = (MSG_PROMO_LIMITED if limited else MSG_PROMO_APPLIED) % {"code": quote.promo.code}
    # Each render is a new confirmation with its own token; the posted one is spent or stale.
    return _page(request, "shop/confirm.html", {
        "token": _confirm_token_issue(request, fingerprint),
        "quote": _quote_context(quote),
        "handle": recipient_handle(current.get("username"), current["user_id"]),
        "user_id": current["user_id"],
        "form": form,
        # The unbound method choices are cached by what they offer (labels carry prices).
        "methods_key": "|".join(f"{code}={label}" for code, label in methods),
        "no_methods": not methods,
        # Methods exist, but none may sell this package or amount (the margin guard).
        "not_offered": bool(quote.methods) and not methods,
        "promo_error": promo_error,
        # A bound form carries the error on its field already.
        "promo_error_list": [promo_error] if promo_error and not form.is_bound else [],
        "promo_note": promo_note,
    }, status=status)


def _order_place(request: HttpRequest, cleaned: dict[str, Any], choice: dict[str, int],
                 current: dict[str, str], promo_code: str) -> Order | str:
    """Create the order once per confirm token; returns it, or a message for the buyer.

    The product is read afresh, not taken from the catalog reading the page was priced from:
    the order is priced from the database as it stands now. Raises CatalogError when the
    choice is no longer on sale.
    """
    try:
        product = product_default()
        return order_create(
            channel=CHANNEL,
            product=product,
            recipient_input=current["input"],
            recipient=RecipientInfo(user_id=current["user_id"],
                                    username=current.get("username") or None),
            payment_method=cleaned["payment_method"],
            buyer_session_key=request.session.session_key or "",
            request_key=_request_key(cleaned["token"]),
            buyer_email=cleaned.get("buyer_email") or "",
            buyer_language=get_language() or "",
            promo_code=promo_code,
            **choice,
        )
    except MarginTooLow as exc:
        return str(exc)
    except PaymentMethodUnavailable:
        return str(MSG_METHOD_UNAVAILABLE)
    except PromoCodeError as exc:
        return str(exc)


def _sandbox_payable(order: Order) -> bool:
    """Only sandbox orders, and only while the sandbox is enabled for the order's channel."""
    return order.payment_method == "sandbox" and "sandbox" in dict(payment_methods_for(order.channel))


def _method_label(code: str) -> str:
    """A payment method's name in the buyer's language (labels live in settings)."""
    return _(settings.PAYMENT_METHODS.get(code, {}).get("label", code))


def _owner_link_followed(request: HttpRequest, order: Order) -> HttpResponse | None:
    """A visit through the buyer's link: grant this session the order, then drop the key.

    The redirect keeps the key out of the address bar, the history and any link copied from
    the page; a wrong key grants nothing and is logged.
    """
    if OWNER_KEY_PARAM not in request.GET:
        return None
    if order_owner_grant(request, order, request.GET[OWNER_KEY_PARAM]):
        logger.info("order %s: buyer's link opened in another session", order.reference)
    else:
        logger.warning("order %s: link with a wrong buyer's key refused", order.reference)
        messages.error(request, MSG_OWNER_LINK_INVALID)
    return redirect(request.path)


def _not_the_buyer(request: HttpRequest, order: Order, action: str) -> HttpResponse:
    """Refuse a change from a session that is not the order's buyer; the order stays as it is."""
    logger.warning("order %s: %r refused, the request is not from the order's buyer",
                   order.reference, action[:40])
    return _page(request, "shop/not_buyer.html", {"order": order}, status=403)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def order_pay(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The invoice, the method and a switch to another; in test mode a simulated payment; cancelling.

    Only the buyer gets this page: it opens an invoice at the provider, and its buttons
    change the order. Anyone else with the link is shown the status page.
    """
    order = get_object_or_404(Order.objects.select_related("product"), public_id=public_id)
    if request.method != "POST" and (followed := _owner_link_followed(request, order)):
        return followed
    if not request_is_order_buyer(request, order):
        if request.method == "POST":
            return _not_the_buyer(request, order, request.POST.get("action", ""))
        return redirect("shop:order_status", public_id=order.public_id)
    if order.status != S.AWAITING_PAYMENT:
        return redirect("shop:order_status", public_id=order.public_id)
    sandbox = _sandbox_payable(order)
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "cancel":
                order_cancel(order=order, actor=f"buyer:{CHANNEL}", reason="Cancelled by the buyer")
                return redirect("shop:order_status", public_id=order.public_id)
            if action == "pay" and sandbox:
                order_pay_sandbox(order=order)
                return redirect("shop:order_status", public_id=order.public_id)
            if action == "simulate":
                invoice = order.invoices.filter(status=PaymentInvoice.Status.OPEN).first()
                if invoice is not None and simulate_supported(invoice):
                    simulate_payment(invoice)
                    return redirect("shop:order_status", public_id=order.public_id)
            if action == "method":
                order = payment_method_change(
                    order=order, payment_method=request.POST.get("payment_method", ""),
                    actor=f"buyer:{CHANNEL}")
                messages.success(request, MSG_METHOD_CHANGED % {
                    "method": _method_label(order.payment_method)})
                return redirect("shop:order_pay", public_id=order.public_id)
        except (OrderStateChanged, InvalidTransition):
            # Paid, expired or cancelled meanwhile: the status page says which.
            return redirect("shop:order_status", public_id=order.public_id)
        except MarginTooLow as exc:
            messages.error(request, str(exc))
            return redirect("shop:order_pay", public_id=order.public_id)
        except PaymentMethodUnavailable:
            messages.error(request, MSG_METHOD_UNAVAILABLE)
            return redirect("shop:order_pay", public_id=order.public_id)
        except PaymentProviderError:
            messages.error(request, MSG_PROVIDER_DOWN)
            return redirect("shop:order_pay", public_id=order.public_id)
        messages.error(request, MSG_ACTION_UNAVAILABLE)
        return redirect("shop:order_pay", public_id=order.public_id)
    provider_down = False
    try:
        invoice = invoice_open(order=order)
    except PaymentMethodUnavailable:
        # The method was withdrawn after the order was placed: the buyer can only cancel.
        invoice = None
    except PaymentProviderError:
        invoice, provider_down = None, True
    except OrderStateChanged:
        return redirect("shop:order_status", public_id=order.public_id)
    return _page(request, "shop/pay.html", {
        "order": order,
        "invoice": invoice,
        "provider_down": provider_down,
        "simulate": invoice is not None and simulate_supported(invoice),
        "ton_qr": (ton_qr_data_uri(invoice.pay_url)
                   if invoice is not None and invoice.provider == "ton" else ""),
        "ton_wallet": settings.TON_WALLET_ADDRESS,
        "amount": (money_display(from_minor(invoice.amount_minor, invoice.currency), invoice.currency)
                   if invoice else money_display(order.price, order.currency)),
        "handle": recipient_handle(order.recipient_username, order.recipient_user_id),
        "sandbox": sandbox,
        "method_label": _method_label(order.payment_method),
        # Only methods the margin guard allows at the order's price (its discount included).
        "other_methods": [(code, _(label)) for code, label in order_methods_offered(order=order)
                          if code != order.payment_method],
        "promo": (promo := promo_for_order(order)),
        "promo_discount": money_display(promo.discount, promo.currency) if promo else "",
        # One deadline: an invoice already expires at the earlier of its quote and the order.
        "pay_by": invoice.expires_at if invoice else order.expires_at,
        # A quote that lapses before the order does is replaced by reloading the page.
        "quote_seconds_left": (
            max(0, int((invoice.expires_at - timezone.now()).total_seconds()))
            if invoice is not None and invoice.expires_at < order.expires_at else None),
        "status_json_url": reverse("shop:order_status_json", kwargs={"public_id": order.public_id}),
    })


@never_cache
@require_safe
def order_status(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Where the order stands; polls status.json until it is final.

    Anyone with the link may watch; only the buyer is offered the buttons and their own link
    for managing the order from another device.
    """
    order = get_object_or_404(Order.objects.select_related("product"), public_id=public_id)
    if followed := _owner_link_followed(request, order):
        return followed
    buyer = request_is_order_buyer(request, order)
    return _page(request, "shop/status.html", {
        "order": order,
        "status": order_status_payload(order),
        "handle": recipient_handle(order.recipient_username, order.recipient_user_id),
        "amount": money_display(order.price, order.currency),
        "pay_by": order_payment_due(order).pay_by,
        "buyer": buyer,
        "owner_url": request.build_absolute_uri(order_owner_path(order)) if buyer else "",
        "status_json_url": reverse("shop:order_status_json", kwargs={"public_id": order.public_id}),
    })


@never_cache
@require_safe
def order_status_json(request: HttpRequest, public_id: uuid.UUID) -> JsonResponse:
    order = get_object_or_404(Order.objects.select_related("product"), public_id=public_id)
    return JsonResponse(order_status_payload(order))


@require_safe
def terms(request: HttpRequest) -> HttpResponse:
    return _page(request, "shop/terms.html")


# --- Finding an order again -----------------------------------------------------------------

MSG_FIND_NO_MATCH = gettext_lazy(
    "No order matches that order number and recipient or e-mail. Check both and try again.")
MSG_FIND_TOO_MANY = gettext_lazy(
    "Too many tries. Please wait ten minutes and try again.")


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def order_find(request: HttpRequest) -> HttpResponse:
    """Find an order by its number and the recipient or receipt e-mail; opens its status page.

    Every wrong combination gets the same answer, so the page never tells whether a number
    exists; wrong guesses are counted per client address and per number (shop.services).
    """
    form = OrderFindForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        reference = order_reference_normalize(form.cleaned_data["reference"])
        client = client_ip(request)
        if order_lookup_blocked(client=client, reference=reference):
            form.add_error(None, MSG_FIND_TOO_MANY)
        else:
            found = (order_lookup(reference=reference, secret=form.cleaned_data["secret"])
                     if reference else None)
            if found is not None:
                return redirect("shop:order_status", public_id=found.public_id)
            order_lookup_failure_record(client=client, reference=reference)
            form.add_error(None, MSG_FIND_NO_MATCH)
    return _page(request, "shop/find.html", {"form": form},
                 status=400 if request.method == "POST" else 200)
