"""What the bot says: every text and keyboard, rendered in the language active at call time.

Handlers call these inside `translation.override(buyer.language)`. Texts about an order's
status come from orders.display, shared with the storefront. Plain text, no parse mode, so
a name or username can never be read as markup.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import get_language, gettext_lazy
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity

from bots import callback_data as data
from bots.services import TYPING_AMOUNT, TYPING_PROMO, TYPING_RECIPIENT, Catalog, Step
from orders.display import (
    STATUS_LABELS,
    money_display,
    number_display,
    order_status_message,
    recipient_handle,
    stars_display,
)
from orders.models import Order
from orders.models import OrderStatus as S
from orders.payments.money import from_minor
from orders.payments.telegram_payments import CODE as TELEGRAM_PAYMENTS
from orders.payments.telegram_payments import CheckoutRefusal
from orders.payments.ton import CODE as TON
from orders.payments.ton import ton_qr_png
from orders.suppliers.base import RecipientInfo
from shop.selectors import Quote

Screen = tuple[str, InlineKeyboardMarkup | None]
# A screen with entities (copyable `code` spans): still no parse mode, nothing is read as markup.
FormattedScreen = tuple[str, InlineKeyboardMarkup | None, list[MessageEntity]]

# The bot's commands, as Telegram lists them in the menu (setMyCommands) and /help.
COMMANDS = [
    ("buy", gettext_lazy("Buy Stars")),
    ("orders", gettext_lazy("Your recent orders")),
    ("cancel", gettext_lazy("Stop the current purchase")),
    ("language", gettext_lazy("Change the language")),
    ("help", gettext_lazy("How it works")),
]
PACKAGES_PER_ROW = 2
# The link schemes Telegram accepts on an inline button.
BUTTON_URL_SCHEMES = ("https://", "http://", "tg://")
IN_FLIGHT = (S.PAID, S.SUBMITTING, S.PROCESSING)


def _keyboard(*rows: Sequence[InlineKeyboardButton]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([list(row) for row in rows if row])


def _button(text: str, callback: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text, callback_data=callback)


def _cancel_row(flow: str) -> list[InlineKeyboardButton]:
    return [_button(_("✖ Cancel"), data.flow_data(flow, "cancel"))]


def _price_line(quote: Quote) -> str:
    return _("%(stars)s for %(price)s.") % {
        "stars": stars_display(quote.quantity), "price": money_display(quote.price, quote.currency),
    }


def commands_text() -> str:
    return "\n".join(f"/{command} — {description}" for command, description in COMMANDS)


# --- Welcome, help, language ---------------------------------------------------------------


def welcome_screen(step: Step) -> Screen:
    """/start: who we are, what Stars are, the prices, the commands."""
    body, markup = _welcome_body(step.catalog, get_language())
    return _("Hi, %(name)s! ⭐") % {"name": step.buyer.first_name or _("there")} + "\n" + body, markup


@functools.lru_cache(maxsize=16)
def _welcome_body(catalog: Catalog | None, language: str) -> Screen:
    """The welcome below its greeting, built once per catalog read and language (the menus'
    catalog is at most CATALOG_MAX_AGE old; keyboards are immutable, so one serves every send)."""
    lines = [
        "",
        _("Here you can buy Telegram Stars for yourself or for anyone on Telegram."),
        # The operator's description of the product, in the buyer's language where it has one.
        (catalog and catalog.product.localized("description"))
        or _("Stars pay for digital goods in bots and mini apps, for reactions, gifts and "
             "subscriptions, right inside Telegram."),
        "",
    ]
    if catalog is None:
        lines.append(_("Sorry, nothing is on sale right now. Please try again later."))
    else:
        lines += [_("Prices:"), *_price_lines(catalog, language)]
    lines += ["", commands_text()]
    markup = _keyboard([_button(_("⭐ Buy Stars"), data.BUY)]) if catalog else None
    return "\n".join(lines), markup


@functools.lru_cache(maxsize=16)
def _price_lines(catalog: Catalog, language: str) -> tuple[str, ...]:
    """The catalog's price list in `language` (the active one), worked out once per catalog read.

    The menus show a kept catalog (bots.services.CATALOG_MAX_AGE), so the same lines, with
    their number and money formatting, would otherwise be built again for every /start.
    """
    lines = [f"⭐ {stars_display(package.quantity)} — {money_display(package.price, package.currency)}"
             f" · {package.localized('name')}"
             for package in catalog.packages]
    product = catalog.product
    if product.custom_amount_enabled:
        lines.append(_("Any other amount from %(min)s to %(max)s: %(price)s per Star.") % {
            "min": number_display(product.min_quantity),
            "max": number_display(product.max_quantity),
            "price": money_display(product.custom_unit_price, product.currency),
        })
    return tuple(lines)


def help_text() -> str:
    """/help: the steps of a purchase and the commands."""
    return "\n".join([
        _("How it works:"),
        _("1. Send /buy and choose how many Stars."),
        _("2. Say who gets them: you, or someone else by @username or numeric user ID."),
        _("3. Check the account we found and pay."),
        "",
        _("We send the Stars as soon as your payment arrives, usually within a minute, and "
          "message you here when they are delivered. If they can't be delivered, your "
          "payment is refunded."),
        "",
        commands_text(),
    ])


def language_screen() -> Screen:
    """/language: the choices."""
    return _("Choose the language:"), _keyboard(
        [_button("English", data.language_data("en")), _button("Русский", data.language_data("ru"))],
        [_button(_("Telegram app's language"), data.language_data(""))],
    )


def language_set_text(*, automatic: bool) -> str:
    """Said in the language just chosen."""
    if automatic:
        return _("Done: I'll answer in your Telegram app's language.")
    return _("Done: I'll answer in this language.")


# --- Buying --------------------------------------------------------------------------------


def amount_screen(step: Step) -> Screen:
    """How many Stars: a button per package, another amount, cancel."""
    assert step.catalog is not None
    flow = step.buyer.flow
    buttons = [
        _button(f"⭐ {number_display(package.quantity)} · {money_display(package.price, package.currency)}",
                data.package_data(flow, package.pk))
        for package in step.catalog.packages
    ]
    rows = [buttons[i:i + PACKAGES_PER_ROW] for i in range(0, len(buttons), PACKAGES_PER_ROW)]
    if step.catalog.product.custom_amount_enabled:
        rows.append([_button(_("Other amount"), data.flow_data(flow, "custom"))])
    rows.append(_cancel_row(flow))
    return _("How many Stars would you like?"), _keyboard(*rows)


def custom_amount_screen(step: Step) -> Screen:
    """Ask for a number."""
    assert step.catalog is not None
    product = step.catalog.product
    text = _("Send the number of Stars you want, from %(min)s to %(max)s. "
             "Price: %(price)s per Star.") % {
        "min": number_display(product.min_quantity),
        "max": number_display(product.max_quantity),
        "price": money_display(product.custom_unit_price, product.currency),
    }
    return text, _keyboard(_cancel_row(step.buyer.flow))


def amount_invalid_text(minimum: int, maximum: int) -> str:
    return _("Please send a whole number of Stars from %(min)s to %(max)s.") % {
        "min": number_display(minimum), "max": number_display(maximum),
    }


def recipient_screen(step: Step) -> Screen:
    """For whom: myself, someone else."""
    assert step.quote is not None
    flow = step.buyer.flow
    text = "\n\n".join([_price_line(step.quote), _("Who should get them?")])
    return text, _keyboard(
        [_button(_("👤 Myself"), data.flow_data(flow, "self")),
         _button(_("🎁 Someone else"), data.flow_data(flow, "other"))],
        _cancel_row(flow),
    )


def recipient_prompt_screen(step: Step) -> Screen:
    """Ask for the other person's @username or ID."""
    return (_("Send the recipient's Telegram @username or numeric user ID."),
            _keyboard(_cancel_row(step.buyer.flow)))


def _handle(recipient: RecipientInfo) -> str:
    return recipient_handle(recipient.username, recipient.user_id)


def confirm_screen(step: Step) -> Screen:
    """Topping up @username — is this correct?"""
    assert step.quote is not None and step.recipient is not None
    flow = step.buyer.flow
    text = "\n\n".join([
        _("Topping up %(handle)s — is this correct?") % {"handle": _handle(step.recipient)},
        _price_line(step.quote),
    ])
    return text, _keyboard(
        [_button(_("✅ Yes"), data.flow_data(flow, "yes")),
         _button(_("✏️ Change"), data.flow_data(flow, "change"))],
        _cancel_row(flow),
    )


def recipient_too_long_text() -> str:
    return _("That is too long for a Telegram @username or user ID. Send it again, or /cancel.")


def recipient_invalid_text() -> str:
    return _("That is not a Telegram user ID (digits only) or @username (5–32 letters, digits "
             "or underscores, starting with a letter). Send it again, or /cancel.")


def recipient_not_found_text(*, myself: bool) -> str:
    if myself:
        return _("Our supplier can't top up your account. Choose someone else, or try again later.")
    return _("We couldn't find that Telegram account. Check the @username or ID and send it "
             "again, or /cancel.")


def lookups_limited_text() -> str:
    return _("Too many account checks. Please wait a few minutes and try again, or /cancel.")


def supplier_down_text() -> str:
    return _("Our supplier isn't answering right now, please try again in a minute.")


def method_label(code: str, label: str) -> str:
    """A payment method's button, translated: the labels settings ship with are in shop's catalogue."""
    known = {"sandbox": _("🧪 Test payment")}
    return known.get(code) or _(label)


def payment_screen(step: Step) -> Screen:
    """What it costs and the methods to pay with (those the margin guard allows), and a promo code."""
    quote = step.quote
    assert quote is not None and step.recipient is not None
    flow = step.buyer.flow
    lines = [step.promo_error, ""] if step.promo_error else []
    lines.append(_("%(stars)s for %(handle)s.") % {
        "stars": stars_display(quote.quantity), "handle": _handle(step.recipient),
    })
    if quote.promo is not None:
        lines += [
            _("Price: %(price)s") % {"price": money_display(quote.list_price, quote.currency)},
            _("Promo code %(code)s: −%(discount)s") % {
                "code": quote.promo.code, "discount": money_display(quote.discount, quote.currency)},
        ]
    lines += [_("To pay: %(price)s") % {"price": money_display(quote.price, quote.currency)}, ""]
    prices = {method.code: method for method in quote.offered}
    if step.methods:
        if quote.promo is not None and any(method.discount_limited for method in quote.offered):
            lines += [_("With some payment methods the discount is smaller, so that the price still "
                        "covers our costs: each button shows its price."), ""]
        lines.append(_("How would you like to pay?"))
    elif step.not_offered:
        lines.append(_("Sorry, this amount can't be paid for right now. Send /buy to choose "
                       "another amount."))
    else:
        lines.append(_("Sorry, payments are not available right now. Please try again later."))
    rows = []
    for code, label in step.methods:
        text = method_label(code, label)
        if quote.promo is not None and code in prices:
            text += f" · {money_display(prices[code].price, quote.currency)}"
        rows.append([_button(text, data.method_data(flow, code))])
    if step.methods:
        rows.append([_button(_("🏷 Remove promo code"), data.flow_data(flow, "nopromo"))
                     if quote.promo is not None else
                     _button(_("🏷 Promo code"), data.flow_data(flow, "promo"))])
    rows.append([_button(_("✏️ Change recipient"), data.flow_data(flow, "change"))])
    rows.append(_cancel_row(flow))
    return "\n".join(lines), _keyboard(*rows)


def promo_prompt_screen(step: Step) -> Screen:
    """Ask for the promo code."""
    flow = step.buyer.flow
    return (_("Send your promo code."),
            _keyboard([_button(_("No code"), data.flow_data(flow, "nopromo"))], _cancel_row(flow)))


def promo_refused_text(reason: str) -> str:
    """A promo code that could not be used when the order was placed; it has been dropped."""
    return "\n\n".join([reason, _("The code was removed: tap a payment method again to pay the "
                                   "full price, or /cancel.")])


def method_not_offered_text() -> str:
    return _("That payment method is not available for this amount. Choose another one.")


def _code_entities(text: str, spans: Sequence[str]) -> list[MessageEntity]:
    """`code` entities over each span's first place in text after the previous one.

    Telegram counts offsets in UTF-16 code units, so a flag or an emoji before a span counts twice.
    """
    entities: list[MessageEntity] = []
    start = 0
    for span in spans:
        index = text.find(span, start) if span else -1
        if index < 0:
            continue
        offset = len(text[:index].encode("utf-16-le")) // 2
        length = len(span.encode("utf-16-le")) // 2
        entities.append(MessageEntity(MessageEntity.CODE, offset, length))
        start = index + len(span)
    return entities


def invoice_screen(step: Step) -> FormattedScreen:
    """The placed order and how to pay it; the demo's simulate button when a local fake takes the money."""
    order, invoice = step.order, step.invoice
    assert order is not None
    amount = (money_display(from_minor(invoice.amount_minor, invoice.currency), invoice.currency)
              if invoice is not None else money_display(order.price, order.currency))
    lines = [
        _("Order #%(reference)s") % {"reference": order.reference},
        _("%(stars)s for %(handle)s.") % {
            "stars": stars_display(order.stars),
            "handle": recipient_handle(order.recipient_username, order.recipient_user_id),
        },
        _("To pay: %(price)s") % {"price": amount},
    ]
    flow = step.buyer.flow
    rows: list[list[InlineKeyboardButton]] = []
    copyable: list[str] = []
    if order.payment_method == "sandbox":
        lines += ["", _("Test mode: no real money moves. Tap “Pay (test mode)” to simulate "
                        "the payment.")]
        rows.append([_button(_("💳 Pay (test mode)"), data.flow_data(flow, "pay"))])
    elif invoice is not None:
        if invoice.provider == TON:
            wallet = str((invoice.raw or {}).get("wallet") or "")
            lines += ["", _("Send exactly %(amount)s to this TON wallet:") % {"amount": amount}, wallet,
                      _("with this comment, or we can't match your payment to the order:"),
                      invoice.comment]
            copyable += [wallet, invoice.comment]
        elif invoice.comment:
            lines.append(_("Payment comment (required): %(comment)s") % {"comment": invoice.comment})
        if invoice.provider == TELEGRAM_PAYMENTS:
            lines += ["", _("Tap “Pay” on the invoice below to pay by card right here in Telegram.")]
        if invoice.pay_url.startswith(BUTTON_URL_SCHEMES):
            rows.append([InlineKeyboardButton(_("💳 Pay"), url=invoice.pay_url)])
        elif invoice.pay_url:
            # Telegram refuses other schemes (ton://) on buttons; wallets open them from text.
            lines += ["", _("Pay with this link: %(url)s") % {"url": invoice.pay_url}]
        if step.simulate:
            lines += ["", _("Demo: this method talks to a local test service, no real money moves. "
                            "“Simulate payment (demo)” pays as a buyer would.")]
            rows.append([_button(_("🧪 Simulate payment (demo)"), data.flow_data(flow, "simulate"))])
    rows.append([_button(_("✖ Cancel order"), data.flow_data(flow, "cancel"))])
    text = "\n".join(lines)
    return text, _keyboard(*rows), _code_entities(text, copyable)


def invoice_photo(step: Step) -> tuple[bytes, str] | None:
    """TON's pay link as a QR code to scan, with its caption; None for other methods."""
    invoice = step.invoice
    if invoice is None or invoice.provider != TON or not invoice.pay_url:
        return None
    return ton_qr_png(invoice.pay_url), _("Scan this QR code with a TON wallet app: the amount "
                                          "and the comment are filled in.")


@dataclass(frozen=True)
class TelegramInvoice:
    """What sendInvoice shows: Telegram caps the title at 32 characters, the description at 255."""

    title: str
    description: str
    label: str


def telegram_invoice(step: Step) -> TelegramInvoice:
    """The invoice the bot sends for Telegram Payments."""
    order = step.order
    assert order is not None
    stars = stars_display(order.stars)
    return TelegramInvoice(
        title=stars[:32],
        description=(_("%(stars)s for %(handle)s. Order #%(reference)s.") % {
            "stars": stars, "handle": recipient_handle(order.recipient_username, order.recipient_user_id),
            "reference": order.reference,
        })[:255],
        label=stars,
    )


def payment_provider_down_text() -> str:
    return _("The payment service isn't answering right now. Please try again in a minute, or "
             "choose another way to pay.")


def simulate_down_text() -> str:
    return _("The demo payment service isn't answering right now. Please try again in a minute.")


def simulated_text(order: Order) -> str:
    """After "Simulate payment (demo)": where the order stands."""
    if order.status == S.AWAITING_PAYMENT:
        return _("Demo payment sent. We'll confirm it as soon as it arrives and message you here "
                 "when the Stars are delivered.")
    return order_text(order)


def checkout_refusal_text(refusal: str) -> str:
    """Why Telegram's payment form won't take the money (answerPreCheckoutQuery ok=False)."""
    texts = {
        CheckoutRefusal.PAID: _("This order is already paid."),
        CheckoutRefusal.CANCELLED: _("This order was cancelled. Send /buy to place a new one."),
        CheckoutRefusal.EXPIRED: _("This order has expired. Send /buy to place a new one."),
        CheckoutRefusal.AMOUNT: _("This invoice no longer matches the order. Send /buy to place "
                                  "a new one."),
    }
    return texts.get(refusal, _("We can't find this order. Send /buy to place a new one."))


def payment_unmatched_text() -> str:
    return _("We received your payment but couldn't match it to an order. We have been alerted "
             "and will sort it out.")


def order_text(order: Order) -> str:
    """Where an order the buyer just acted on stands."""
    text = order_status_message(order)
    if order.status in IN_FLIGHT:
        text += "\n\n" + _("We'll message you here when they arrive.")
    return text


def cancelled_text(step: Step) -> str:
    """After /cancel or a Cancel button."""
    if not step.cancelled:
        return _("There is nothing to cancel. Send /buy to buy Stars.")
    if step.order is None:
        return _("Cancelled, nothing was ordered. Send /buy to start again.")
    if step.order.status == S.CANCELLED:
        return order_status_message(step.order) + "\n\n" + _("Send /buy to start again.")
    return order_text(step.order)


def orders_text(orders: Sequence[Order]) -> str:
    """/orders: the buyer's recent orders with their status."""
    if not orders:
        return _("You have no orders yet. Send /buy to buy Stars.")
    blocks = [_("Your recent orders:")]
    for order in orders:
        label = STATUS_LABELS.get(order.status)
        blocks.append("\n".join([
            f"#{order.reference} · {stars_display(order.stars)} → "
            f"{recipient_handle(order.recipient_username, order.recipient_user_id)} · "
            f"{money_display(order.price, order.currency)}",
            str(label) if label is not None else order.get_status_display(),
        ]))
    return "\n\n".join(blocks)


def notice_text(order: Order) -> str:
    """The message the notify task sends when an order reaches a final state."""
    text = order_status_message(order)
    if order.status == S.DELIVERED:
        text += "\n\n" + _("Thank you! Send /buy to buy more.")
    return text


# --- When something is off -------------------------------------------------------------------


def stale_text() -> str:
    return _("This button is no longer active.")


def use_buttons_text() -> str:
    return _("Please use the buttons above, or /cancel.")


def idle_text() -> str:
    return _("Send /buy to buy Stars, or /help to see what I can do.")


def non_text_text(state: str) -> str:
    """A sticker, photo or other non-text message, answered by what the buyer is doing."""
    if state == TYPING_AMOUNT:
        return _("Please send the number of Stars as text, for example 500.")
    if state == TYPING_RECIPIENT:
        return _("Please send the @username or user ID as text.")
    if state == TYPING_PROMO:
        return _("Please send the promo code as text.")
    return _("I only understand text and buttons. Send /buy to buy Stars, or /help to see "
             "what I can do.")


def nothing_on_sale_text() -> str:
    return _("Sorry, nothing is on sale right now. Please try again later.")


def no_longer_on_sale_text() -> str:
    return _("That is no longer on sale. Send /buy to choose again.")


def method_unavailable_text() -> str:
    return _("That payment method is not available right now.")


def error_text() -> str:
    return _("Sorry, something went wrong on our side. Please try again in a moment, or send "
             "/cancel to start over.")
