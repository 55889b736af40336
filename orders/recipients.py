"""Parsing what a buyer typed as a Telegram recipient, before anything is sent anywhere."""

import re
import unicodedata

from django.utils.translation import gettext as _

from orders.exceptions import InvalidRecipientInput

# Invisible characters that survive copy-paste from chats and would make two names look equal:
# dropped, since they change nothing the buyer meant. Any other control or format character
# (bidi overrides and isolates, which reorder what the buyer sees, NUL, escapes) is refused.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u00ad"), None)
# Control, format (bidi, zero-width), surrogate and private-use characters.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,30}[A-Za-z0-9]")
_LINK = re.compile(r"(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me)/([^/?#]+)/?", re.IGNORECASE)
MAX_INPUT_LENGTH = 64
# Telegram user IDs fit in 52 bits (Bot API docs); anything bigger is a typo or an attack.
MAX_USER_ID = 2**52


def recipient_parse(raw: str) -> str:
    """Normalise buyer input to a numeric user ID ("123456789") or "@username", or raise."""
    if not isinstance(raw, str):
        raise InvalidRecipientInput(_("Enter a Telegram user ID or @username."))
    text = raw.translate(_INVISIBLE).strip()
    if not text:
        raise InvalidRecipientInput(_("Enter a Telegram user ID or @username."))
    if len(text) > MAX_INPUT_LENGTH:
        raise InvalidRecipientInput(_("That is too long for a Telegram user ID or @username."))
    if any(unicodedata.category(char) in HIDDEN_CATEGORIES for char in text):
        raise InvalidRecipientInput(_(
            "That contains hidden control or formatting characters. "
            "Type the ID or @username instead of pasting it."
        ))
    link = _LINK.fullmatch(text)
    if link:
        text = link.group(1)
    if text.isascii() and text.isdigit():
        # Digits alone are meant as an ID: say which way they miss, not that they are not digits.
        if int(text) == 0:
            raise InvalidRecipientInput(_("That number is too small to be a Telegram user ID."))
        if text.startswith("0"):
            raise InvalidRecipientInput(_("A Telegram user ID never starts with 0."))
        if int(text) > MAX_USER_ID:
            raise InvalidRecipientInput(_("That number is too large to be a Telegram user ID."))
        return text
    name = text[1:] if text.startswith("@") else text
    if name.isascii() and _USERNAME.fullmatch(name):
        return "@" + name
    if text.isdigit():
        # Digits from another script (full-width, Arabic-Indic): they look right but are not 0–9.
        raise InvalidRecipientInput(_("A Telegram user ID is made of digits 0–9 only."))
    raise InvalidRecipientInput(_(
        "That is not a valid Telegram user ID (digits) or username "
        "(5–32 letters, digits or underscores, starting with a letter)."
    ))
