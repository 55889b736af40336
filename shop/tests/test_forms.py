"""Hostile and malformed input, at the forms and through the pages: a clear message, never a 500 or a wrong order."""

import pytest
from django.urls import reverse
from django.utils.html import escape

from orders.exceptions import InvalidRecipientInput
from orders.models import Order
from orders.recipients import recipient_parse
from shop import views
from shop.forms import ConfirmForm, CustomAmountForm, PackageChoiceForm, RecipientForm
from shop.models import Product
from shop.tests.conftest import page

RANGE = "Choose between 50 and 10,000 Stars."
DIGITS = "Enter a whole number of Stars using digits 0–9."


# --- Custom amount ------------------------------------------------------------------------


@pytest.mark.parametrize("raw, quantity", [
    ("500", 500), (" 777 ", 777), ("50", 50), ("10000", 10_000), ("0500", 500),
    ("0" * 5000 + "500", 500),
])
def test_custom_amount_accepts_whole_numbers_in_range(catalog, raw, quantity):
    form = CustomAmountForm({"quantity": raw}, product=catalog)

    assert form.is_valid(), form.errors
    assert form.cleaned_data["quantity"] == quantity


@pytest.mark.parametrize("raw, message", [
    ("49", RANGE),
    ("0", RANGE),
    ("10001", RANGE),
    ("9" * 20, RANGE),
    ("9" * 5000, RANGE),  # would exceed int()'s 4300-digit limit
    ("-500", DIGITS),
    ("+500", DIGITS),
    ("500.0", DIGITS),
    ("5e2", DIGITS),
    ("0x1f4", DIGITS),
    ("5_00", DIGITS),
    ("５００", DIGITS),  # full-width digits: int() would take them
    ("٥٠٠", DIGITS),  # Arabic-Indic digits
    ("500\u200b", DIGITS),  # zero-width space
    ("\u202e005", DIGITS),  # right-to-left override
    ("<script>alert(1)</script>", DIGITS),
    ("500 Stars", DIGITS),
    ("NaN", DIGITS),
    ("", "Enter how many Stars you want."),
    ("   ", "Enter how many Stars you want."),
    ("5\x0000", "Null characters are not allowed."),
])
def test_custom_amount_rejects_everything_else_with_a_clear_message(catalog, raw, message):
    form = CustomAmountForm({"quantity": raw}, product=catalog)

    assert not form.is_valid()
    assert form.errors["quantity"] == [message]


def test_custom_amount_limits_come_from_the_product(catalog):
    Product.objects.filter(pk=catalog.pk).update(min_quantity=100, max_quantity=200)
    catalog.refresh_from_db()

    assert not CustomAmountForm({"quantity": "99"}, product=catalog).is_valid()
    assert CustomAmountForm({"quantity": "150"}, product=catalog).is_valid()
    form = CustomAmountForm({"quantity": "201"}, product=catalog)
    assert form.errors["quantity"] == ["Choose between 100 and 200 Stars."]
    assert 'min="100"' in str(form["quantity"]) and 'max="200"' in str(form["quantity"])


@pytest.mark.parametrize("raw", ["-500", "9" * 5000, "５００", "<script>alert(1)</script>", "\u202e005"])
def test_catalog_page_shows_the_message_and_stores_nothing(buyer, catalog, raw):
    response = buyer.choose_quantity(raw)

    assert response.status_code == 400
    html = page(response)
    assert escape(RANGE) in html or escape(DIGITS) in html
    assert "<script>alert(1)" not in html
    assert views.SESSION_CHOICE not in buyer.client.session


def test_catalog_post_without_any_field_asks_for_an_amount(buyer, catalog):
    response = buyer.client.post(reverse("shop:catalog"), {"price": "0.01"})

    assert response.status_code == 400
    assert "Enter how many Stars you want." in page(response)


# --- Packages -----------------------------------------------------------------------------


def test_package_choice_accepts_an_active_package(catalog, standard):
    form = PackageChoiceForm({"package": str(standard.pk)}, packages=catalog.packages.filter(active=True))

    assert form.is_valid()
    assert form.cleaned_data["package"] == standard.pk


@pytest.mark.parametrize("raw", [
    "", "abc", "-1", "0", "1.0", "1e0", "99999999999999999999999999", " 1", "１", "1\u200b",
    "<script>", "[1]", "x" * 10_000,
])
def test_package_choice_rejects_anything_not_on_offer(catalog, raw):
    form = PackageChoiceForm({"package": raw}, packages=catalog.packages.filter(active=True))

    assert not form.is_valid()
    assert form.errors["package"] in (["Choose a package."],
                                      ["That package is not on sale. Choose one from the list."])


def test_inactive_package_cannot_be_chosen(buyer, catalog):
    mega = catalog.packages.get(name="Mega")
    mega.active = False
    mega.save()

    response = buyer.choose_package(mega)

    assert response.status_code == 400
    assert "That package is not on sale." in page(response)
    assert views.SESSION_CHOICE not in buyer.client.session


@pytest.mark.parametrize("raw", ["abc", "-1", "99999999999999999999999999", "１", "<script>"])
def test_catalog_page_refuses_a_forged_package(buyer, catalog, raw):
    response = buyer.client.post(reverse("shop:catalog"), {"package": raw})

    assert response.status_code == 400
    assert "That package is not on sale." in page(response)
    assert "<script>" not in page(response).split("<body>")[1]


def test_package_wins_over_a_smuggled_quantity(buyer, standard):
    buyer.client.post(reverse("shop:catalog"), {"package": str(standard.pk), "quantity": "10000",
                                                "price": "0.01"})

    assert buyer.client.session[views.SESSION_CHOICE] == {"package_id": standard.pk}


# --- Recipient ----------------------------------------------------------------------------


def _parse_message(raw: str) -> str:
    with pytest.raises(InvalidRecipientInput) as caught:
        recipient_parse(raw)
    return str(caught.value)


@pytest.mark.parametrize("raw", [
    "abc",  # too short for a username
    "@",
    "-100000001",
    "0",
    "１２３４５６７８９",  # full-width digits
    "\u202e@sandbox_ok",  # right-to-left override
    "@sandbox_ok\u202e",
    "<script>alert(1)</script>",
    "9" * 30,  # larger than any Telegram user ID
    "@" + "a" * 40,
    "x" * 65,
    "@sandbox ok",
    "@пример_имя",
    "'; DROP TABLE orders_order; --",
])
def test_malformed_recipients_show_the_parser_message(buyer, standard, supplier, raw):
    buyer.choose_package(standard)

    response = buyer.enter_recipient(raw)

    assert response.status_code == 400
    html = page(response)
    assert escape(_parse_message(raw)) in html
    assert "<script>alert(1)" not in html
    assert views.SESSION_RECIPIENT not in buyer.client.session


@pytest.mark.parametrize("raw, message", [
    ("", "Enter a Telegram user ID or @username."),
    ("   ", "Enter a Telegram user ID or @username."),
    ("x" * 5000, "That is too long for a Telegram user ID or @username."),
    ("@sandbox\x00ok", "Null characters are not allowed."),
])
def test_recipient_form_rejects_empty_huge_and_null_input(raw, message):
    form = RecipientForm({"recipient": raw})

    assert not form.is_valid()
    assert form.errors["recipient"] == [message]


@pytest.mark.parametrize("raw, stored", [
    ("\u200b@sandbox_ok\u200d", "@sandbox_ok"),  # zero-width characters from a copy-paste
    ("\ufeff100000001", "100000001"),
    ("https://t.me/sandbox_ok", "@sandbox_ok"),
    ("SANDBOX_OK", "@SANDBOX_OK"),
])
def test_invisible_characters_and_links_are_normalised(buyer, standard, supplier, raw, stored):
    buyer.choose_package(standard)

    response = buyer.enter_recipient(raw)

    assert response.status_code == 302
    assert buyer.client.session[views.SESSION_RECIPIENT]["input"] == stored
    assert buyer.client.session[views.SESSION_RECIPIENT]["user_id"] == "100000001"


def test_missing_recipient_field(buyer, standard, supplier):
    buyer.choose_package(standard)

    response = buyer.client.post(reverse("shop:recipient"), {"user_id": "100000001"})

    assert response.status_code == 400
    assert "Enter a Telegram user ID or @username." in page(response)


def test_huge_post_bodies_are_refused_without_an_order(buyer, standard, supplier):
    buyer.choose_package(standard)

    response = buyer.enter_recipient("1" * 3_000_000)

    assert response.status_code in (400, 413)
    assert not Order.objects.exists()


# --- Confirm ------------------------------------------------------------------------------


def test_confirm_form_preselects_the_only_method():
    form = ConfirmForm(payment_methods=[("sandbox", "Sandbox payment (test mode)")])

    assert form["payment_method"].initial == "sandbox"
    assert 'value="sandbox"' in str(form["payment_method"]) and "checked" in str(form["payment_method"])


def test_confirm_form_wants_no_preselection_among_several():
    form = ConfirmForm(payment_methods=[("sandbox", "Sandbox"), ("ton", "TON")])

    assert form["payment_method"].initial is None


@pytest.mark.parametrize("data, field", [
    ({"payment_method": "sandbox"}, "token"),
    ({"token": "t", "payment_method": "ton"}, "payment_method"),
    ({"token": "x" * 91, "payment_method": "sandbox"}, "token"),
])
def test_confirm_form_errors(data, field):
    form = ConfirmForm(data, payment_methods=[("sandbox", "Sandbox")])

    assert not form.is_valid()
    assert list(form.errors) == [field]
