"""Storefront forms: they check the shape of what the buyer sent; prices and names come from the catalog."""

import unicodedata
from collections.abc import Iterable
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

from orders.recipients import HIDDEN_CATEGORIES
from shop.models import Package, Product
from shop.selectors import quantity_range_message

# Long enough for every legal amount; anything longer is rejected before int() sees it.
QUANTITY_MAX_DIGITS = 9
# recipient_parse has the buyer-friendly rules; this only stops megabytes reaching it.
RECIPIENT_MAX_LENGTH = 200
EXPIRED_FORM_MESSAGE = _("This page had expired. Check the details below and confirm again.")
# The labels settings.PAYMENT_METHODS ships with, marked so they reach the catalogue; a label
# an operator configured that has no translation is shown as configured.
PAYMENT_METHOD_LABELS = (
    gettext_noop("Sandbox payment (test mode)"),
    gettext_noop("Crypto (USDT, TON, BTC via Crypto Pay)"),
    gettext_noop("TON"),
    gettext_noop("Card (Stripe Checkout)"),
    gettext_noop("Card in Telegram (Telegram Payments)"),
    gettext_noop("Partner balance"),
)


class PackageChoiceForm(forms.Form):
    """One of the packages on sale, by id; anything else is "not on sale"."""

    package = forms.ChoiceField(
        error_messages={
            "required": _("Choose a package."),
            "invalid_choice": _("That package is not on sale. Choose one from the list."),
        }
    )

    def __init__(self, *args: Any, packages: Iterable[Package], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Compared as strings against the ids we offer: the input never reaches a query.
        package_field = cast(forms.ChoiceField, self.fields["package"])
        package_field.choices = [(str(package.pk), str(package)) for package in packages]

    def clean_package(self) -> int:
        return int(self.cleaned_data["package"])


class CustomAmountForm(forms.Form):
    """A whole number of units within the product's limits, in ASCII digits."""

    quantity = forms.CharField(
        label=_("Custom amount (Stars)"),
        error_messages={"required": _("Enter how many Stars you want.")},
    )

    def __init__(self, *args: Any, product: Product, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.product = product
        self.fields["quantity"].widget = forms.NumberInput(
            attrs={
                "min": product.min_quantity,
                "max": product.max_quantity,
                "step": 1,
                "inputmode": "numeric",
                "placeholder": f"{product.min_quantity}–{product.max_quantity}",
            }
        )

    def clean_quantity(self) -> int:
        text = self.cleaned_data["quantity"]
        # str.isdigit() alone accepts full-width and other scripts' digits; int() would too.
        if not (text.isascii() and text.isdigit()):
            raise ValidationError(
                _("Enter a whole number of Stars using digits 0–9."), code="not_digits"
            )
        digits = text.lstrip("0") or "0"
        if len(digits) > QUANTITY_MAX_DIGITS:
            raise ValidationError(quantity_range_message(self.product), code="out_of_range")
        quantity = int(digits)
        if not self.product.min_quantity <= quantity <= self.product.max_quantity:
            raise ValidationError(quantity_range_message(self.product), code="out_of_range")
        return quantity


class RecipientForm(forms.Form):
    """The Telegram account to top up, as typed; orders.recipients decides what is valid."""

    recipient = forms.CharField(
        label=_("Telegram user ID or @username"),
        max_length=RECIPIENT_MAX_LENGTH,
        error_messages={
            "required": _("Enter a Telegram user ID or @username."),
            "max_length": _("That is too long for a Telegram user ID or @username."),
        },
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "autocapitalize": "none",
                "spellcheck": "false",
                "placeholder": _("123456789 or @username"),
            }
        ),
    )


class ConfirmForm(forms.Form):
    """The buyer's yes: the one-time token of the page they saw and a payment method."""

    token = forms.CharField(
        # A signed token (shop.views._confirm_token_issue) is about 75 characters; the order's
        # request_key ("confirm:" + token) holds 100.
        max_length=90,
        widget=forms.HiddenInput,
        error_messages={"required": EXPIRED_FORM_MESSAGE, "max_length": EXPIRED_FORM_MESSAGE},
    )
    payment_method = forms.ChoiceField(
        label=_("Pay with"),
        widget=forms.RadioSelect,
        error_messages={
            "required": _("Choose how to pay."),
            "invalid_choice": _("That payment method is not available. Choose one from the list."),
        },
    )

    promo_code = forms.CharField(
        label=_("Promo code (optional)"),
        required=False,
        max_length=40,
        error_messages={"max_length": _("That is too long for a promo code.")},
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters",
                                      "spellcheck": "false"}),
    )

    buyer_email = forms.EmailField(
        label=_("E-mail for a receipt (optional)"),
        required=False,
        max_length=254,
        help_text=_("We send the receipt here when the order is finished. With the order "
                    "number it also finds your order again."),
        error_messages={"invalid": _("Enter a valid e-mail address, or leave it empty.")},
        widget=forms.EmailInput(attrs={"autocomplete": "email", "spellcheck": "false"}),
    )

    def __init__(self, *args: Any, payment_methods: list[tuple[str, str]], **kwargs: Any) -> None:
        """payment_methods: the (code, label) the buyer may choose; anything else is refused."""
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["payment_method"])
        field.choices = [(code, gettext(label)) for code, label in payment_methods]
        if len(payment_methods) == 1:
            field.initial = payment_methods[0][0]

    def clean_buyer_email(self) -> str:
        email: str = self.cleaned_data["buyer_email"]
        # Django's validator accepts a quoted local part with control characters in it
        # ("\x01"@example.com); no buyer needs one, and the address goes into mail headers.
        if email.startswith('"') or any(unicodedata.category(char) in HIDDEN_CATEGORIES
                                        for char in email):
            raise ValidationError(self.fields["buyer_email"].error_messages["invalid"],
                                  code="invalid")
        return email


class OrderFindForm(forms.Form):
    """An order number and something only its buyer knows: the recipient or the receipt e-mail."""

    reference = forms.CharField(
        label=_("Order number"),
        max_length=30,
        error_messages={"required": _("Enter the order number, for example ORD-000123."),
                        "max_length": _("That is too long for an order number.")},
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters",
                                      "spellcheck": "false", "placeholder": "ORD-000123"}),
    )
    secret = forms.CharField(
        label=_("Recipient (@username or ID) or the e-mail you gave for the receipt"),
        max_length=254,
        error_messages={
            "required": _("Enter the recipient or the e-mail address you gave."),
            "max_length": _("That is too long for a Telegram account or an e-mail address."),
        },
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "none",
                                      "spellcheck": "false"}),
    )
