"""Parsing what buyers type as a recipient: accepted forms, and hostile or malformed input."""

import pytest

from orders.exceptions import InvalidRecipientInput
from orders.recipients import recipient_parse


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123456789", "123456789"),
        ("  123456789\n", "123456789"),
        ("@durov_fan", "@durov_fan"),
        ("durov_fan", "@durov_fan"),
        ("https://t.me/durov_fan", "@durov_fan"),
        ("t.me/durov_fan/", "@durov_fan"),
        ("@sandbox\u200b_ok", "@sandbox_ok"),  # zero-width space pasted from a chat
        ("\ufeff100000001", "100000001"),
    ],
)
def test_accepted_forms(raw, expected):
    assert recipient_parse(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "@",
        "@abc",  # too short
        "@" + "a" * 33,  # too long
        "@1abc_def",  # starts with a digit
        "@abc_def_",  # ends with an underscore
        "0",
        "0123",
        "-5",
        "12.5",
        "9" * 20,  # beyond 52 bits
        "１２３４５６７８９",  # full-width digits
        "@ѕandbox_ok",  # Cyrillic 's' lookalike
        "@sandbox\u202e_ok",  # right-to-left override
        "<script>alert(1)</script>",
        "'; DROP TABLE orders; --",
        "a" * 10_000,
        "@sandbox ok",
    ],
)
def test_rejected_input(raw):
    with pytest.raises(InvalidRecipientInput) as excinfo:
        recipient_parse(raw)
    assert str(excinfo.value)  # always a message a buyer can read


def test_non_string_rejected():
    with pytest.raises(InvalidRecipientInput):
        recipient_parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", "That number is too small to be a Telegram user ID."),
        ("000", "That number is too small to be a Telegram user ID."),
        ("0123", "A Telegram user ID never starts with 0."),
        ("9" * 20, "That number is too large to be a Telegram user ID."),
        ("4503599627370497", "That number is too large to be a Telegram user ID."),  # 2**52 + 1
        ("https://t.me/" + "9" * 20, "That number is too large to be a Telegram user ID."),
        ("１２３４５６７８９", "A Telegram user ID is made of digits 0–9 only."),
        ("-5", "That is not a valid Telegram user ID (digits) or username "
               "(5–32 letters, digits or underscores, starting with a letter)."),
    ],
)
def test_rejected_numbers_say_what_is_wrong(raw, message):
    with pytest.raises(InvalidRecipientInput) as excinfo:
        recipient_parse(raw)
    assert str(excinfo.value) == message


def test_largest_user_id_is_accepted():
    assert recipient_parse("4503599627370496") == "4503599627370496"  # 2**52


def test_out_of_range_messages_in_russian():
    from django.utils import translation

    with translation.override("ru"), pytest.raises(InvalidRecipientInput) as excinfo:
        recipient_parse("0")
    assert str(excinfo.value) == "Это число слишком мало для ID пользователя Telegram."


HIDDEN_MESSAGE = ("That contains hidden control or formatting characters. "
                  "Type the ID or @username instead of pasting it.")


@pytest.mark.parametrize("raw", [
    "@sandbox\u202e_ok",  # right-to-left override: shows another name than it is
    "@sandbox\u2066_ok\u2069",  # bidi isolates
    "\u061c@sandbox_ok",  # Arabic letter mark
    "@sandbox\x00ok",
    "@sandbox\x1b[31m_ok",  # a terminal escape
    "1000\x7f00001",
    "@sandbox\ue000_ok",  # private use
])
def test_control_and_bidi_characters_are_refused_with_a_clear_message(raw):
    with pytest.raises(InvalidRecipientInput) as excinfo:
        recipient_parse(raw)
    assert str(excinfo.value) == HIDDEN_MESSAGE


@pytest.mark.parametrize("raw", [
    "\u200e@sandbox_ok\u200f",  # direction marks change nothing the buyer meant
    "@sand\u00adbox_ok",  # soft hyphen
    "\u2060@sandbox_ok",
    "\t@sandbox_ok\r\n",
])
def test_invisible_marks_and_surrounding_whitespace_are_dropped(raw):
    assert recipient_parse(raw) == "@sandbox_ok"


def test_hidden_characters_message_in_russian():
    from django.utils import translation

    with translation.override("ru"), pytest.raises(InvalidRecipientInput) as excinfo:
        recipient_parse("@sandbox\u202e_ok")
    assert str(excinfo.value).startswith("Здесь есть скрытые управляющие символы")
