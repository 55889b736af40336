"""What the bot's inline buttons send back, and the patterns handlers match it with.

Purchase buttons carry the purchase's flow token, so a button from an earlier purchase or
a forged one matches nothing the buyer is doing now. Never an order ID: the buyer's own
row says which order a button acts on. Telegram caps callback data at 64 bytes.
"""

import re

BUY = "buy"
LANGUAGE_PREFIX = "lang:"
LANGUAGE_AUTO = "auto"

_FLOW = r"^f:(?P<flow>[0-9a-f]{8}):"
PACKAGE_PATTERN = re.compile(_FLOW + r"(?:pkg:(?P<package_id>[0-9]{1,9})|(?P<custom>custom))$")
RECIPIENT_PATTERN = re.compile(_FLOW + r"(?P<choice>self|other)$")
CONFIRM_PATTERN = re.compile(_FLOW + r"(?P<answer>yes|change)$")
METHOD_PATTERN = re.compile(_FLOW + r"method:(?P<method>[a-z0-9_]{1,30})$")
PAY_PATTERN = re.compile(_FLOW + r"pay$")
SIMULATE_PATTERN = re.compile(_FLOW + r"simulate$")
CANCEL_PATTERN = re.compile(_FLOW + r"cancel$")
# "Promo code" on the payment screen, and "No code" (or drop the code) back to it.
PROMO_PATTERN = re.compile(_FLOW + r"(?P<promo>promo|nopromo)$")
LANGUAGE_PATTERN = re.compile(r"^lang:(?P<language>en|ru|auto)$")
BUY_PATTERN = re.compile(r"^buy$")


def flow_data(flow: str, action: str) -> str:
    """Callback data for a purchase button."""
    return f"f:{flow}:{action}"


def package_data(flow: str, package_id: int) -> str:
    return flow_data(flow, f"pkg:{package_id}")


def method_data(flow: str, method: str) -> str:
    return flow_data(flow, f"method:{method}")


def language_data(language: str) -> str:
    return f"{LANGUAGE_PREFIX}{language or LANGUAGE_AUTO}"
