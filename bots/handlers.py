"""The bot's handlers: parse the update, call one bots service off the event loop, render.

The ORM is never touched here. Short database steps run on the bot's database threads
(bots.database: a few threads, each keeping its connection); steps that wait on the supplier
or a payment provider run in their own pool thread, so a slow supplier stalls only the buyer
who is waiting for it. Every callback query is answered, stale and forged ones included.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import translation
from telegram import ChatMember, InlineKeyboardMarkup, LabeledPrice, Message, MessageEntity, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)

from bots import callback_data as data
from bots import messages, services
from bots.database import database_threads
from bots.exceptions import AmountOutOfRange, StaleAction
from bots.processor import DEFAULT_MAX_RUNNING
from bots.services import TelegramAccount
from orders.exceptions import (
    InvalidRecipient,
    InvalidRecipientInput,
    PaymentMethodUnavailable,
    PaymentProviderError,
    RecipientLookupLimited,
    SupplierError,
)
from orders.payments.telegram_payments import CODE as TELEGRAM_PAYMENTS
from orders.payments.telegram_payments import provider_token
from orders.recipients import MAX_INPUT_LENGTH
from shop.exceptions import CatalogError, MarginTooLow, PromoCodeError

logger = logging.getLogger(__name__)

R = TypeVar("R")
Context = ContextTypes.DEFAULT_TYPE

# Threads for service calls that wait on the supplier or a payment provider: as many as
# handlers may run at once, so no buyer waits for a thread behind other buyers' slow calls
# (the event loop's default pool has only a few per core).
NETWORK_EXECUTOR = ThreadPoolExecutor(max_workers=DEFAULT_MAX_RUNNING, thread_name_prefix="bot-network")

# Longest amount we try to read as a number; anything longer is not a valid amount anyway.
MAX_AMOUNT_DIGITS = 9
_AMOUNT_SEPARATORS = dict.fromkeys(map(ord, " ,._'\u00a0\u202f\u2009"), None)


def _fresh_connection(service: Callable[..., R]) -> Callable[..., R]:
    """Run a service as Django runs a request: drop dead or expired connections before and after."""

    @functools.wraps(service)
    def run(**kwargs: Any) -> R:
        close_old_connections()
        try:
            return service(**kwargs)
        finally:
            close_old_connections()

    return run


async def db(service: Callable[..., R], /, **kwargs: Any) -> R:
    """Run a short database-only service call off the event loop, on a database thread.

    Straight through the loop's executor hook rather than asgiref's sync_to_async, which adds
    about 0.1 ms per call (thread-local and context bookkeeping these steps do not need). As
    with sync_to_async, the step runs in a copy of the caller's context, and a cancelled
    handler waits for its step to finish, so a buyer's next update never overlaps it.
    """
    loop = asyncio.get_running_loop()
    step = loop.run_in_executor(database_threads(),
                                functools.partial(contextvars.copy_context().run, service, **kwargs))
    try:
        return await asyncio.shield(step)
    except asyncio.CancelledError:
        await asyncio.wait([step])
        raise


async def db_parallel(service: Callable[..., R], /, **kwargs: Any) -> R:
    """Run a service call that waits on the network in its own thread, beside other buyers'."""
    return await sync_to_async(_fresh_connection(service), thread_sensitive=False,
                               executor=NETWORK_EXECUTOR)(**kwargs)


def _account(update: Update) -> TelegramAccount:
    user = update.effective_user
    assert user is not None
    return TelegramAccount(
        telegram_id=user.id,
        username=user.username or "",
        first_name=user.first_name or "",
        language_code=user.language_code or "",
    )


async def _language(update: Update) -> str:
    """The buyer's language, for the paths where the service raised instead of returning it."""
    return (await db(services.buyer_sync, account=_account(update))).language


async def _send(update: Update, text: str, markup: InlineKeyboardMarkup | None = None,
                entities: list[MessageEntity] | None = None) -> None:
    """A new message in the buyer's chat."""
    chat = update.effective_chat
    assert chat is not None
    await chat.send_message(text, reply_markup=markup, entities=entities or None)


async def _show(update: Update, text: str, markup: InlineKeyboardMarkup | None = None,
                entities: list[MessageEntity] | None = None) -> None:
    """Replace the message whose button was tapped; a new message if Telegram won't edit it."""
    query = update.callback_query
    if query is not None and isinstance(query.message, Message):
        try:
            await query.edit_message_text(text, reply_markup=markup, entities=entities or None)
            return
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return  # a repeated tap that changes nothing
            # Too old or deleted: the buyer still needs the next step.
            logger.info("could not edit message %s: %s", query.message.message_id, exc.message)
    await _send(update, text, markup, entities)


async def _answer(update: Update, text: str | None = None) -> None:
    """Answer the callback query, which stops the button's spinner."""
    query = update.callback_query
    assert query is not None
    try:
        await query.answer(text)
    except BadRequest as exc:
        if "query is too old" not in exc.message:
            raise
        # The answer came too late for the spinner; the step itself went through.
        logger.info("callback query %s answered too late", query.id)


async def _answer_stale(update: Update) -> None:
    """Answer a button from an earlier step or purchase; nothing else happens."""
    with translation.override(await _language(update)):
        await _answer(update, messages.stale_text())


async def _tell(update: Update, render: Callable[[], str]) -> None:
    """Send a one-line answer in the buyer's language."""
    with translation.override(await _language(update)):
        await _send(update, render())


# --- Commands ------------------------------------------------------------------------------


async def start_callback(update: Update, context: Context) -> None:
    """/start: welcome, what Stars are, prices."""
    step = await db(services.welcome_read, account=_account(update))
    with translation.override(step.buyer.language):
        text, markup = messages.welcome_screen(step)
    await _send(update, text, markup)


async def help_callback(update: Update, context: Context) -> None:
    """/help: how buying works and the commands."""
    await _tell(update, messages.help_text)


async def buy_callback(update: Update, context: Context) -> None:
    """/buy or the Buy button: start a purchase by asking how many Stars."""
    if update.callback_query is not None:
        await _answer(update)
    try:
        step = await db(services.buy_start, account=_account(update))
    except CatalogError:
        await _tell(update, messages.nothing_on_sale_text)
        return
    with translation.override(step.buyer.language):
        text, markup = messages.amount_screen(step)
    await _send(update, text, markup)


async def orders_callback(update: Update, context: Context) -> None:
    """/orders: the buyer's recent orders with their status."""
    step = await db(services.buyer_orders, account=_account(update))
    with translation.override(step.buyer.language):
        text = messages.orders_text(step.orders)
    await _send(update, text)


async def cancel_callback(update: Update, context: Context) -> None:
    """/cancel: drop the purchase in progress."""
    step = await db(services.buy_cancel, account=_account(update))
    with translation.override(step.buyer.language):
        text = messages.cancelled_text(step)
    await _send(update, text)


async def language_callback(update: Update, context: Context) -> None:
    """/language: offer the languages."""
    with translation.override(await _language(update)):
        text, markup = messages.language_screen()
    await _send(update, text, markup)


async def unknown_command_callback(update: Update, context: Context) -> None:
    """A command the bot does not have."""
    await _tell(update, messages.idle_text)


# --- Buttons -------------------------------------------------------------------------------

ButtonCallback = Callable[[Update, Context], Coroutine[Any, Any, None]]


def button(callback: ButtonCallback) -> ButtonCallback:
    """Answer a tap the step refuses (stale, forged, no longer on sale) and do nothing else.

    The wrapped callback answers the query itself once its service call went through; these
    refusals are raised by the service before that.
    """

    @functools.wraps(callback)
    async def run(update: Update, context: Context) -> None:
        try:
            await callback(update, context)
        except StaleAction:
            await _answer_stale(update)
        except CatalogError:
            await _answer_refusal(update, messages.no_longer_on_sale_text)
        except MarginTooLow:
            # A button from before a price or fee change, or forged: the method is not offered.
            await _answer_refusal(update, messages.method_not_offered_text)
        except PaymentMethodUnavailable:
            await _answer_refusal(update, messages.method_unavailable_text)

    return run


async def _answer_refusal(update: Update, render: Callable[[], str]) -> None:
    with translation.override(await _language(update)):
        await _answer(update, render())


@button
async def language_chosen_callback(update: Update, context: Context) -> None:
    """A language button: store the choice and confirm in the new language."""
    assert context.match is not None
    chosen = context.match["language"]
    language = "" if chosen == data.LANGUAGE_AUTO else chosen
    buyer = await db(services.buyer_language_set, account=_account(update), language=language)
    await _answer(update)
    with translation.override(buyer.language):
        text = messages.language_set_text(automatic=not language)
    await _show(update, text)


@button
async def amount_callback(update: Update, context: Context) -> None:
    """A package button, or "Other amount"."""
    assert context.match is not None
    match, account = context.match, _account(update)
    if match["custom"]:
        step = await db(services.buy_custom_amount_ask, account=account, flow=match["flow"])
    else:
        step = await db(services.buy_amount_choose, account=account, flow=match["flow"],
                        package_id=int(match["package_id"]))
    await _answer(update)
    with translation.override(step.buyer.language):
        screen = messages.custom_amount_screen(step) if match["custom"] else messages.recipient_screen(step)
    await _show(update, *screen)


@button
async def recipient_callback(update: Update, context: Context) -> None:
    """"Myself" (checked with the supplier at once) or "Someone else" (asks for a name or ID)."""
    assert context.match is not None
    match, account = context.match, _account(update)
    if match["choice"] == "other":
        step = await db(services.buy_recipient_other, account=account, flow=match["flow"])
        await _answer(update)
        with translation.override(step.buyer.language):
            screen = messages.recipient_prompt_screen(step)
        await _show(update, *screen)
        return
    # The button shows its spinner while the supplier checks the account (within its timeout).
    try:
        step = await db_parallel(services.buy_recipient_check, account=account, flow=match["flow"],
                                 raw=str(account.telegram_id))
    except RecipientLookupLimited:
        await _answer(update)
        await _tell(update, messages.lookups_limited_text)
        return
    except InvalidRecipient:
        await _answer(update)
        await _tell(update, lambda: messages.recipient_not_found_text(myself=True))
        return
    except SupplierError as exc:
        logger.warning("recipient check failed: %s", exc)
        await _answer(update)
        await _tell(update, messages.supplier_down_text)
        return
    await _answer(update)
    with translation.override(step.buyer.language):
        screen = messages.confirm_screen(step)
    await _show(update, *screen)


@button
async def confirm_callback(update: Update, context: Context) -> None:
    """"Yes" (on to payment) or "Change" (choose the recipient again)."""
    assert context.match is not None
    match, account = context.match, _account(update)
    yes = match["answer"] == "yes"
    step = await db(services.buy_confirm if yes else services.buy_recipient_change,
                    account=account, flow=match["flow"])
    await _answer(update)
    with translation.override(step.buyer.language):
        screen = messages.payment_screen(step) if yes else messages.recipient_screen(step)
    await _show(update, *screen)


@button
async def payment_method_callback(update: Update, context: Context) -> None:
    """A payment method: place the order and show how to pay it."""
    assert context.match is not None
    try:
        step = await db_parallel(services.buy_order_place, account=_account(update),
                                 flow=context.match["flow"], method=context.match["method"])
    except PaymentProviderError as exc:
        # The order was dropped: the method buttons above still work, for this method or another.
        logger.warning("payment provider could not open an invoice: %s", exc)
        await _answer(update)
        await _tell(update, messages.payment_provider_down_text)
        return
    except PromoCodeError as exc:
        # Used up or expired since it was applied: dropped, nothing was placed.
        await _answer(update)
        reason = str(exc)  # worded in the buyer's language by the service
        await _tell(update, lambda: messages.promo_refused_text(reason))
        return
    await _answer(update)
    with translation.override(step.buyer.language):
        text, markup, entities = messages.invoice_screen(step)
        photo = messages.invoice_photo(step)
    await _show(update, text, markup, entities)
    if photo is not None:
        await _send_photo(update, *photo)
    if step.invoice is not None and step.invoice.provider == TELEGRAM_PAYMENTS:
        await _send_invoice(update, step)


async def _send_photo(update: Update, photo: bytes, caption: str) -> None:
    """The TON QR code; the text above already says everything, so a refusal is only logged."""
    chat = update.effective_chat
    assert chat is not None
    try:
        await chat.send_photo(photo, caption=caption)
    except BadRequest as exc:
        logger.warning("could not send the QR code to chat %s: %s", chat.id, exc.message)


async def _send_invoice(update: Update, step: services.Step) -> None:
    """Telegram Payments: the invoice message with Telegram's own Pay button."""
    chat, invoice = update.effective_chat, step.invoice
    assert chat is not None and invoice is not None
    with translation.override(step.buyer.language):
        details = messages.telegram_invoice(step)
    try:
        await chat.send_invoice(
            title=details.title, description=details.description,
            payload=invoice.provider_invoice_id, provider_token=provider_token(),
            currency=invoice.currency, prices=[LabeledPrice(details.label, invoice.amount_minor)],
        )
    except BadRequest as exc:
        # A wrong or revoked provider token, a currency the provider refuses: the operator's to fix.
        logger.error("sendInvoice refused for chat %s: %s", chat.id, exc.message)
        await _tell(update, messages.payment_provider_down_text)


@button
async def promo_callback(update: Update, context: Context) -> None:
    """"Promo code" (asks for it) or "No code" / "Remove promo code" (back to the methods)."""
    assert context.match is not None
    match, account = context.match, _account(update)
    if match["promo"] == "promo":
        step = await db(services.buy_promo_ask, account=account, flow=match["flow"])
        await _answer(update)
        with translation.override(step.buyer.language):
            screen = messages.promo_prompt_screen(step)
    else:
        step = await db(services.buy_promo_skip, account=account, flow=match["flow"])
        await _answer(update)
        with translation.override(step.buyer.language):
            screen = messages.payment_screen(step)
    await _show(update, *screen)


@button
async def pay_callback(update: Update, context: Context) -> None:
    """"Pay (test mode)": simulate the payment; the fulfilment job and order_notify take over."""
    assert context.match is not None
    step = await db_parallel(services.buy_order_pay, account=_account(update),
                             flow=context.match["flow"])
    await _answer(update)
    assert step.order is not None
    with translation.override(step.buyer.language):
        text = messages.order_text(step.order)
    await _show(update, text)


@button
async def simulate_callback(update: Update, context: Context) -> None:
    """"Simulate payment (demo)": the local fake pays; its webhook or the poller marks the order paid."""
    assert context.match is not None
    try:
        step = await db_parallel(services.buy_order_simulate, account=_account(update),
                                 flow=context.match["flow"])
    except PaymentProviderError as exc:
        logger.warning("simulated payment failed: %s", exc)
        await _answer(update)
        await _tell(update, messages.simulate_down_text)
        return
    await _answer(update)
    assert step.order is not None
    with translation.override(step.buyer.language):
        text = messages.simulated_text(step.order)
    await _show(update, text)


@button
async def cancel_button_callback(update: Update, context: Context) -> None:
    """A Cancel button: drop this purchase and cancel its unpaid order."""
    assert context.match is not None
    step = await db(services.buy_cancel, account=_account(update), flow=context.match["flow"])
    await _answer(update)
    with translation.override(step.buyer.language):
        text = messages.cancelled_text(step)
    await _show(update, text)


async def stale_callback(update: Update, context: Context) -> None:
    """Any other button: from an old message, another version of the bot, or forged."""
    await _answer_stale(update)


# --- Messages ------------------------------------------------------------------------------


def _quantity(text: str) -> int | None:
    """A typed amount ("1 000", "1,000") as a number, or None."""
    digits = text.strip().translate(_AMOUNT_SEPARATORS)
    if digits.isascii() and digits.isdigit() and len(digits) <= MAX_AMOUNT_DIGITS:
        return int(digits)
    return None


async def text_callback(update: Update, context: Context) -> None:
    """Typed text: an amount or a recipient when the bot asked for one, else a hint."""
    assert update.message is not None and update.message.text is not None
    text, account = update.message.text, _account(update)
    buyer = await db(services.buyer_sync, account=account)
    if buyer.state == services.TYPING_AMOUNT:
        await _amount_typed(update, buyer, text)
    elif buyer.state == services.TYPING_RECIPIENT:
        await _recipient_typed(update, buyer, text)
    elif buyer.state == services.TYPING_PROMO:
        await _promo_typed(update, buyer, text)
    else:
        with translation.override(buyer.language):
            reply = messages.idle_text() if buyer.state == services.IDLE else messages.use_buttons_text()
        await _send(update, reply)


async def _amount_typed(update: Update, buyer: services.Buyer, text: str) -> None:
    try:
        step = await db(services.buy_custom_amount_enter, account=_account(update), flow=buyer.flow,
                        quantity=_quantity(text))
    except AmountOutOfRange as exc:
        with translation.override(buyer.language):
            await _send(update, messages.amount_invalid_text(exc.minimum, exc.maximum))
        return
    except StaleAction:
        with translation.override(buyer.language):
            await _send(update, messages.idle_text())
        return
    except CatalogError:
        with translation.override(buyer.language):
            await _send(update, messages.no_longer_on_sale_text())
        return
    with translation.override(step.buyer.language):
        screen = messages.recipient_screen(step)
    await _send(update, *screen)


async def _promo_typed(update: Update, buyer: services.Buyer, text: str) -> None:
    try:
        step = await db(services.buy_promo_enter, account=_account(update), flow=buyer.flow, raw=text)
    except StaleAction:
        with translation.override(buyer.language):
            await _send(update, messages.idle_text())
        return
    except CatalogError:
        with translation.override(buyer.language):
            await _send(update, messages.no_longer_on_sale_text())
        return
    with translation.override(step.buyer.language):
        screen = messages.payment_screen(step)
    await _send(update, *screen)


async def _recipient_typed(update: Update, buyer: services.Buyer, text: str) -> None:
    language = buyer.language
    if len(text) > MAX_INPUT_LENGTH:
        with translation.override(language):
            await _send(update, messages.recipient_too_long_text())
        return
    try:
        step = await db_parallel(services.buy_recipient_check, account=_account(update),
                                 flow=buyer.flow, raw=text)
    except RecipientLookupLimited:
        reply = messages.lookups_limited_text
    except InvalidRecipientInput:
        reply = messages.recipient_invalid_text
    except InvalidRecipient:
        reply = functools.partial(messages.recipient_not_found_text, myself=False)
    except SupplierError as exc:
        logger.warning("recipient check failed: %s", exc)
        reply = messages.supplier_down_text
    except StaleAction:
        reply = messages.idle_text
    except CatalogError:
        reply = messages.no_longer_on_sale_text
    else:
        with translation.override(step.buyer.language):
            screen = messages.confirm_screen(step)
        await _send(update, *screen)
        return
    with translation.override(language):
        await _send(update, reply())


async def other_message_callback(update: Update, context: Context) -> None:
    """Stickers, photos, voice and anything else that is not text."""
    buyer = await db(services.buyer_sync, account=_account(update))
    with translation.override(buyer.language):
        await _send(update, messages.non_text_text(buyer.state))


async def pre_checkout_callback(update: Update, context: Context) -> None:
    """Telegram asks, before charging, whether the order can still take this payment (≤ 10 s)."""
    query = update.pre_checkout_query
    assert query is not None
    check = await db(services.buy_checkout_check, account=_account(update),
                     payload=query.invoice_payload, currency=query.currency,
                     total_amount=query.total_amount)
    if not check.refusal:
        await query.answer(ok=True)
        return
    with translation.override(check.buyer.language):
        reason = messages.checkout_refusal_text(check.refusal)
    await query.answer(ok=False, error_message=reason)


async def successful_payment_callback(update: Update, context: Context) -> None:
    """Telegram charged the buyer: the payment goes through the same inbox as every method's."""
    assert update.message is not None and update.message.successful_payment is not None
    paid = update.message.successful_payment
    step = await db_parallel(services.buy_payment_receive, account=_account(update),
                             payment=services.TelegramPayment(
                                 payload=paid.invoice_payload, currency=paid.currency,
                                 total_amount=paid.total_amount,
                                 telegram_payment_charge_id=paid.telegram_payment_charge_id,
                                 provider_payment_charge_id=paid.provider_payment_charge_id))
    with translation.override(step.buyer.language):
        text = (messages.order_text(step.order) if step.order is not None
                else messages.payment_unmatched_text())
    await _send(update, text)


async def my_chat_member_callback(update: Update, context: Context) -> None:
    """The user blocked or unblocked the bot: remember whether messages can reach them."""
    change = update.my_chat_member
    assert change is not None
    if change.chat.type != ChatType.PRIVATE:
        return
    status = change.new_chat_member.status
    await db(services.buyer_membership_set, account=_account(update),
             blocked=status in (ChatMember.BANNED, ChatMember.LEFT))


# --- Errors --------------------------------------------------------------------------------


async def error_callback(update: object, context: Context) -> None:
    """Log the error; tell the buyer something went wrong and stop a button's spinner."""
    logger.error("error while handling update %s", getattr(update, "update_id", update),
                 exc_info=context.error)
    if not isinstance(update, Update) or isinstance(context.error, Forbidden):
        return
    user, chat = update.effective_user, update.effective_chat
    # No database here: it may be what failed.
    language = services.language_for(choice="", language_code=(user.language_code or "") if user else "")
    with translation.override(language):
        text = messages.error_text()
    try:
        if update.pre_checkout_query is not None:
            # Unanswered, Telegram would keep the buyer waiting 10 s; refused, nothing is charged.
            await update.pre_checkout_query.answer(ok=False, error_message=text)
            return
        if update.callback_query is not None:
            try:
                await update.callback_query.answer()
            except BadRequest:
                pass  # answered before the error
        if chat is not None and chat.type == ChatType.PRIVATE:
            await chat.send_message(text)
    except TelegramError as exc:
        logger.warning("could not tell chat %s about the error: %s", chat.id if chat else None, exc)


# --- Registration --------------------------------------------------------------------------


def handlers_register(application: Application) -> None:
    """Add every handler and the error handler to an application."""
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    commands = {
        "start": start_callback,
        "help": help_callback,
        "buy": buy_callback,
        "orders": orders_callback,
        "cancel": cancel_callback,
        "language": language_callback,
    }
    for command, callback in commands.items():
        application.add_handler(CommandHandler(command, callback, filters=private))
    application.add_handler(MessageHandler(private & filters.SUCCESSFUL_PAYMENT,
                                           successful_payment_callback))
    application.add_handler(MessageHandler(private & filters.COMMAND, unknown_command_callback))
    application.add_handler(MessageHandler(private & filters.TEXT, text_callback))
    application.add_handler(MessageHandler(private, other_message_callback))
    buttons = [
        (data.BUY_PATTERN, buy_callback),
        (data.LANGUAGE_PATTERN, language_chosen_callback),
        (data.PACKAGE_PATTERN, amount_callback),
        (data.RECIPIENT_PATTERN, recipient_callback),
        (data.CONFIRM_PATTERN, confirm_callback),
        (data.METHOD_PATTERN, payment_method_callback),
        (data.PAY_PATTERN, pay_callback),
        (data.SIMULATE_PATTERN, simulate_callback),
        (data.CANCEL_PATTERN, cancel_button_callback),
        (data.PROMO_PATTERN, promo_callback),
    ]
    for pattern, tap_callback in buttons:
        application.add_handler(CallbackQueryHandler(tap_callback, pattern=pattern))
    application.add_handler(CallbackQueryHandler(stale_callback))
    application.add_handler(PreCheckoutQueryHandler(pre_checkout_callback))
    application.add_handler(ChatMemberHandler(my_chat_member_callback,
                                               ChatMemberHandler.MY_CHAT_MEMBER))
    application.add_error_handler(error_callback)
