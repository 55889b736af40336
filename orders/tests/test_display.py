"""What buyers read about orders, in English and Russian, with the plural forms each language needs."""

from decimal import Decimal

import pytest
from django.utils import translation

from orders.display import (
    STATUS_LABELS,
    money_display,
    order_status_message,
    order_status_payload,
    recipient_handle,
    stars_display,
)
from orders.models import OrderStatus as S

NBSP = "\xa0"  # Russian groups thousands with a no-break space: «5 000».


@pytest.fixture
def ru():
    with translation.override("ru"):
        yield


@pytest.fixture
def en():
    with translation.override("en"):
        yield


# --- Numbers, money, handles --------------------------------------------------------------


@pytest.mark.parametrize("quantity, text", [
    (1, "1 Star"), (2, "2 Stars"), (50, "50 Stars"), (500, "500 Stars"), (5000, "5,000 Stars"),
])
def test_stars_in_english(en, quantity, text):
    assert stars_display(quantity) == text


@pytest.mark.parametrize("quantity, text", [
    (1, "1 звезда"), (2, "2 звезды"), (4, "4 звезды"), (5, "5 звёзд"), (11, "11 звёзд"),
    (12, "12 звёзд"), (14, "14 звёзд"), (21, "21 звезда"), (22, "22 звезды"), (25, "25 звёзд"),
    (50, "50 звёзд"), (51, "51 звезда"), (101, "101 звезда"), (111, "111 звёзд"), (500, "500 звёзд"),
    (1001, f"1{NBSP}001 звезда"), (5000, f"5{NBSP}000 звёзд"), (10_000, f"10{NBSP}000 звёзд"),
])
def test_stars_in_russian_take_the_plural_form_of_the_number(ru, quantity, text):
    assert stars_display(quantity) == text


@pytest.mark.parametrize("amount, currency, text", [
    (Decimal("8.50"), "USD", "$8.50"), (Decimal("1"), "USD", "$1.00"), (Decimal("0.018"), "USD", "$0.018"),
    (Decimal("70.00"), "EUR", "€70.00"), (Decimal("8.5"), "CHF", "8.50 CHF"),
])
def test_money_in_english(en, amount, currency, text):
    assert money_display(amount, currency) == text


@pytest.mark.parametrize("amount, currency, text", [
    (Decimal("8.50"), "USD", "8,50 $"), (Decimal("1"), "USD", "1,00 $"), (Decimal("0.018"), "USD", "0,018 $"),
    (Decimal("70.00"), "EUR", "70,00 €"), (Decimal("8.5"), "CHF", "8,50 CHF"),
])
def test_money_in_russian_has_a_decimal_comma_and_the_symbol_after(ru, amount, currency, text):
    assert money_display(amount, currency) == text


def test_recipient_handle_in_both_languages():
    for language in ("en", "ru"):
        with translation.override(language):
            assert recipient_handle("sandbox_ok", "100000001") == "@sandbox_ok"
            assert recipient_handle("@sandbox_ok", "100000001") == "@sandbox_ok"
            assert recipient_handle("", "100000001") == "Telegram ID 100000001"


# --- Order messages -----------------------------------------------------------------------


def test_delivered_message_in_english(en, make_order):
    order = make_order(S.DELIVERED)

    assert order_status_message(order) == f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}"


@pytest.mark.parametrize("stars, text", [
    (500, "✅ 500 звёзд отправлено @sandbox_ok. Заказ #{reference}"),
    (51, "✅ 51 звезда отправлена @sandbox_ok. Заказ #{reference}"),
    (52, "✅ 52 звезды отправлены @sandbox_ok. Заказ #{reference}"),
    (5000, f"✅ 5{NBSP}000 звёзд отправлено @sandbox_ok. Заказ #{{reference}}"),
])
def test_delivered_message_in_russian_agrees_with_the_number(ru, make_order, stars, text):
    order = make_order(S.DELIVERED, stars=stars)

    assert order_status_message(order) == text.format(reference=order.reference)


def test_delivered_message_names_the_account_by_id_without_a_username(ru, make_order):
    order = make_order(S.DELIVERED, recipient_username="")

    assert order_status_message(order) == (
        f"✅ 500 звёзд отправлено Telegram ID 100000001. Заказ #{order.reference}")


@pytest.mark.parametrize("status, english, russian", [
    (S.AWAITING_PAYMENT, "Waiting for your payment of $8.50.", "Ожидаем оплату: 8,50 $."),
    (S.PAID, "Payment received. Sending 500 Stars to @sandbox_ok…",
     "Оплата получена. Отправляем 500 звёзд @sandbox_ok…"),
    (S.PROCESSING, "Payment received. Sending 500 Stars to @sandbox_ok…",
     "Оплата получена. Отправляем 500 звёзд @sandbox_ok…"),
    (S.FAILED,
     "We couldn't send the 500 Stars to @sandbox_ok, so nothing was delivered. "
     "Your payment is being refunded.",
     "Не удалось отправить 500 звёзд @sandbox_ok, поэтому ничего не доставлено. "
     "Мы возвращаем ваш платёж."),
    (S.REFUNDED,
     "We couldn't send the 500 Stars to @sandbox_ok, so nothing was delivered. "
     "Your payment has been refunded.",
     "Не удалось отправить 500 звёзд @sandbox_ok, поэтому ничего не доставлено. "
     "Ваш платёж возвращён."),
    (S.EXPIRED, "This order expired before it was paid. Nothing was charged.",
     "Срок оплаты заказа истёк. Деньги не списаны."),
    (S.CANCELLED, "This order was cancelled. Nothing was charged.", "Заказ отменён. Деньги не списаны."),
    (S.REVIEW,
     "We're on it: your order is safe and we're checking it with our supplier. "
     "Either the 500 Stars reach @sandbox_ok or your payment is refunded. No need to pay again.",
     "Мы уже занимаемся заказом: он в сохранности, мы проверяем его у поставщика. "
     "Либо 500 звёзд дойдут до @sandbox_ok, либо мы вернём платёж. Платить повторно не нужно."),
])
def test_status_messages_in_both_languages(make_order, status, english, russian):
    order = make_order(status)

    with translation.override("en"):
        assert order_status_message(order) == english
    with translation.override("ru"):
        assert order_status_message(order) == russian


@pytest.mark.parametrize("stars, sending, failed", [
    (21, "Отправляем 21 звезду", "Не удалось отправить 21 звезду"),
    (23, "Отправляем 23 звезды", "Не удалось отправить 23 звезды"),
    (111, "Отправляем 111 звёзд", "Не удалось отправить 111 звёзд"),
])
def test_russian_messages_put_the_noun_in_the_form_the_number_needs(ru, make_order, stars, sending, failed):
    assert sending in order_status_message(make_order(S.PROCESSING, stars=stars))
    assert failed in order_status_message(make_order(S.FAILED, stars=stars))


# --- Labels and the payload the status page polls ----------------------------------------


def test_every_status_has_a_buyer_label():
    assert set(STATUS_LABELS) == set(S.values)


def test_status_labels_follow_the_language_active_when_read(make_order):
    order = make_order(S.DELIVERED)

    with translation.override("en"):
        english = order_status_payload(order)
    with translation.override("ru"):
        russian = order_status_payload(order)

    assert english["status_label"] == "Delivered"
    assert russian["status_label"] == "Доставлен"
    assert russian["message"] == f"✅ 500 звёзд отправлено @sandbox_ok. Заказ #{order.reference}"
    assert {key: value for key, value in russian.items() if key not in ("status_label", "message")} == {
        "reference": order.reference, "status": "delivered", "is_final": True,
    }
    assert type(russian["status_label"]) is str  # JSON-ready, not a lazy proxy


def test_every_status_label_is_translated_into_russian():
    with translation.override("en"):
        english = {status: str(label) for status, label in STATUS_LABELS.items()}
    with translation.override("ru"):
        russian = {status: str(label) for status, label in STATUS_LABELS.items()}

    assert [status for status in STATUS_LABELS if russian[status] == english[status]] == []
