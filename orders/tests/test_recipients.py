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
