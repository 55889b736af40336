"""The storefront flow against the real sandbox supplier over HTTP: catalog → … → delivered."""

import threading
import uuid
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from orders.models import Order, OrderStatus
from orders.services import buyer_session_hash, order_create
from orders.suppliers.base import RecipientInfo
from shop import ownership, views
from shop.models import Package, Product
from shop.tests.conftest import Buyer, page, token_from


def flash(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- Catalog ------------------------------------------------------------------------------


def test_catalog_lists_packages_custom_amount_and_what_stars_are_for(client, catalog):
    response = client.get(reverse("shop:catalog"))

    assert response.status_code == 200
    html = page(response)
    assert "pay for digital goods" in html.lower()
    for name, stars, price in [("Starter", "50", "$1.00"), ("Standard", "500", "$8.50"),
                               ("Ultra", "5,000", "$70.00")]:
        assert name in html and f"{stars} Stars" in html and price in html
    assert "$0.018" in html  # the custom amount's unit price
    assert 'min="50"' in html and 'max="10000"' in html
    assert 'name="viewport"' in html
    assert "csrfmiddlewaretoken" in html
    assert "Test mode: sandbox supplier and payments" in html
    assert reverse("shop:terms") in html


def test_catalog_hides_inactive_packages(client, catalog):
    catalog.packages.filter(name="Medium").update(active=False)

    html = page(client.get(reverse("shop:catalog")))

    assert "Medium" not in html
    assert "Small" in html


def test_footer_has_no_test_mode_line_with_a_real_supplier(client, catalog, settings):
    settings.SUPPLIER_CODE = "acme"

    assert "Test mode" not in page(client.get(reverse("shop:catalog")))


def test_catalog_without_a_product_says_so(client, db):
    response = client.get(reverse("shop:catalog"))

    assert response.status_code == 503
    assert "Nothing on sale right now" in page(response)


def test_choosing_a_package_stores_it_and_asks_for_the_recipient(buyer, standard):
    response = buyer.choose_package(standard)

    assert response.status_code == 302
    assert response.url == reverse("shop:recipient")
    assert buyer.client.session[views.SESSION_CHOICE] == {"package_id": standard.pk}


def test_choosing_a_custom_amount_stores_it(buyer, catalog):
    response = buyer.choose_quantity(777)

    assert response.status_code == 302
    assert buyer.client.session[views.SESSION_CHOICE] == {"quantity": 777}


def test_catalog_rejects_custom_amounts_when_they_are_off(buyer, catalog):
    Product.objects.filter(pk=catalog.pk).update(custom_amount_enabled=False)

    response = buyer.choose_quantity(777)

    assert response.status_code == 400
    assert "Custom amounts are not on sale." in page(response)
    assert views.SESSION_CHOICE not in buyer.client.session


def test_terms_page(client, catalog):
    html = page(client.get(reverse("shop:terms")))

    assert "confirmed" in html
    assert "cannot be taken back" in html
    assert "refunded" in html


# --- Recipient ----------------------------------------------------------------------------


def test_recipient_page_needs_a_choice_first(client, catalog):
    response = client.get(reverse("shop:recipient"))

    assert response.status_code == 302
    assert response.url == reverse("shop:catalog")
    assert flash(response) == [views.MSG_CHOOSE_FIRST]


def test_recipient_page_shows_the_choice_and_how_to_find_an_id(buyer, standard):
    buyer.choose_package(standard)

    html = page(buyer.client.get(reverse("shop:recipient")))

    assert "Standard" in html and "500" in html and "$8.50" in html
    assert "Telegram user ID or @username" in html
    assert "Settings → tap your username" in html
    assert "@userinfobot" in html


def test_valid_recipient_is_checked_with_the_supplier_and_stored(buyer, standard, supplier):
    buyer.choose_package(standard)

    response = buyer.enter_recipient("  100000001 ")

    assert response.status_code == 302
    assert response.url == reverse("shop:confirm")
    assert buyer.client.session[views.SESSION_RECIPIENT] == {
        "input": "100000001", "user_id": "100000001", "username": "@sandbox_ok",
    }


def test_unknown_account_is_reported_on_the_form(buyer, standard, supplier):
    buyer.choose_package(standard)

    response = buyer.enter_recipient("@sandbox_invalid")

    assert response.status_code == 400
    assert "We couldn&#x27;t find that Telegram account" in page(response)
    assert views.SESSION_RECIPIENT not in buyer.client.session


def test_supplier_down_is_reported_on_the_form(buyer, standard, supplier):
    buyer.choose_package(standard)
    supplier.stop()

    response = buyer.enter_recipient("@sandbox_ok")

    assert response.status_code == 400
    assert "Our supplier isn&#x27;t answering right now, please try again in a minute" in page(response)


def test_supplier_refusing_our_key_is_reported_as_supplier_trouble(buyer, standard, supplier, settings):
    settings.SUPPLIER_API_KEY = "wrong-key"
    buyer.choose_package(standard)

    response = buyer.enter_recipient("@sandbox_ok")

    assert response.status_code == 400
    assert "Our supplier isn&#x27;t answering right now" in page(response)


def test_a_failed_check_forgets_the_previously_confirmed_account(buyer, standard, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    buyer.enter_recipient("@sandbox_invalid")

    response = buyer.confirm_page()
    assert response.status_code == 302
    assert response.url == reverse("shop:recipient")


# --- Confirm ------------------------------------------------------------------------------


def test_confirm_page_asks_is_this_correct(buyer, standard, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    response = buyer.confirm_page()

    html = page(response)
    assert "Topping up <span class=\"handle\">@sandbox_ok</span> — is this correct?" in html
    assert "Standard" in html and "500" in html and "$8.50" in html
    assert "Yes, continue" in html
    assert 'type="radio" name="payment_method" value="sandbox"' in html
    assert f'href="{reverse("shop:recipient")}"' in html and ">Change<" in html


def test_confirm_without_recipient_goes_back_to_recipient(buyer, standard):
    buyer.choose_package(standard)

    response = buyer.confirm_page()

    assert response.url == reverse("shop:recipient")


def test_confirm_places_an_order_priced_from_the_catalog(buyer, standard, supplier):
    order = buyer.place(standard)

    assert order.status == OrderStatus.AWAITING_PAYMENT
    assert (order.stars, order.price, order.currency) == (500, Decimal("8.50"), "USD")
    assert order.package == standard
    assert order.recipient_user_id == "100000001"
    assert order.recipient_username == "@sandbox_ok"
    assert order.recipient_input == "@sandbox_ok"
    assert order.payment_method == "sandbox"
    assert order.channel == "web"
    assert order.buyer_session_hash == buyer_session_hash(buyer.client.session.session_key)
    assert buyer.client.session.session_key not in order.buyer_session_hash


def test_custom_amount_is_priced_per_star(buyer, catalog, supplier):
    order = buyer.place(quantity=777, recipient="100000001")

    assert order.package is None
    assert order.stars == 777
    assert order.price == Decimal("13.99")  # 777 × $0.018 = 13.986, rounded half up


def test_double_submit_places_one_order(buyer, standard, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    token = token_from(buyer.confirm_page())

    first = buyer.confirm(token)
    second = buyer.confirm(token)

    assert Order.objects.count() == 1
    assert first.status_code == second.status_code == 302
    assert first.url == second.url == reverse("shop:order_pay", args=[Order.objects.get().public_id])


@pytest.mark.django_db(transaction=True)
def test_racing_submits_of_one_form_place_one_order(standard, supplier):
    """Two requests of one double click, in parallel threads sharing the session cookie."""
    buyer = Buyer(Client())
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    token = token_from(buyer.confirm_page())
    cookies = buyer.client.cookies
    barrier = threading.Barrier(2)
    results: list[int] = []

    def submit() -> None:
        client = Client()
        client.cookies = cookies
        barrier.wait()
        results.append(client.post(reverse("shop:confirm"),
                                   {"token": token, "payment_method": "sandbox"}).status_code)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert results == [302, 302]
    assert Order.objects.count() == 1


def test_reloading_the_confirm_page_after_ordering_offers_a_new_confirmation(buyer, standard, supplier):
    """A fresh confirm page is a new decision; only a re-posted form is a repeat."""
    buyer.place(standard)

    buyer.confirm()

    assert Order.objects.count() == 2


def test_forged_price_package_and_recipient_fields_are_ignored(buyer, standard, catalog, supplier):
    ultra = catalog.packages.get(name="Ultra")
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    response = buyer.confirm(
        price="0.01", amount="0.01", currency="XXX", package=str(ultra.pk), package_id=str(ultra.pk),
        quantity="10000", stars="10000", recipient_user_id="100000004", user_id="100000004",
        username="@evil",
    )

    assert response.status_code == 302
    order = Order.objects.get()
    assert (order.package, order.stars, order.price, order.currency) == (standard, 500, Decimal("8.50"), "USD")
    assert (order.recipient_user_id, order.recipient_username) == ("100000001", "@sandbox_ok")


def test_choice_changed_in_another_tab_is_not_ordered_blind(buyer, standard, catalog, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    token = token_from(buyer.confirm_page())
    buyer.choose_package(catalog.packages.get(name="Small"))  # the other tab

    response = buyer.confirm(token)

    assert response.status_code == 400
    assert "Your order changed in another tab" in page(response)
    assert "Small" in page(response)  # the page now shows what a yes would buy
    assert not Order.objects.exists()


@pytest.mark.parametrize("token", ["", "made-up-token", "x" * 500])
def test_unknown_or_missing_token_asks_to_confirm_again(buyer, standard, supplier, token):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    buyer.confirm_page()

    response = buyer.confirm(token)

    assert response.status_code == 400
    assert "This page had expired" in page(response)
    assert not Order.objects.exists()


@pytest.mark.parametrize("method", ["", "card", "sandbox<script>", "SANDBOX"])
def test_unavailable_payment_method_is_refused(buyer, standard, supplier, method):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")

    response = buyer.confirm(payment_method=method)

    assert response.status_code == 400
    assert ("Choose how to pay." if not method else "That payment method is not available") in page(response)
    assert "<script>" not in page(response)
    assert not Order.objects.exists()


def test_package_withdrawn_before_confirming_sends_buyer_back_to_catalog(buyer, standard, supplier):
    buyer.choose_package(standard)
    buyer.enter_recipient("@sandbox_ok")
    token = token_from(buyer.confirm_page())
    Package.objects.filter(pk=standard.pk).update(active=False)

    response = buyer.confirm(token)

    assert response.status_code == 302
    assert response.url == reverse("shop:catalog")
    assert flash(response) == ["This package is not on sale. Please choose again."]
    assert not Order.objects.exists()


def test_forged_session_choice_is_ignored(buyer, standard, supplier):
    session = buyer.client.session
    session[views.SESSION_CHOICE] = {"package_id": "4; DROP TABLE"}
    session.save()

    response = buyer.client.get(reverse("shop:recipient"))

    assert response.url == reverse("shop:catalog")


# --- Pay ----------------------------------------------------------------------------------


def test_pay_page_shows_the_invoice_and_a_test_mode_button(buyer, standard, supplier):
    order = buyer.place(standard)

    html = page(buyer.client.get(reverse("shop:order_pay", args=[order.public_id])))

    assert order.reference in html
    assert "$8.50" in html
    assert "Test mode: no money moves." in html
    assert "Simulate payment (test mode)" in html
    assert "Cancel order" in html


def test_whole_flow_to_delivered(buyer, standard, supplier, q_sync, django_capture_on_commit_callbacks):
    order = buyer.place(standard)

    with django_capture_on_commit_callbacks(execute=True):
        response = buyer.pay(order)

    assert response.status_code == 302
    assert response.url == reverse("shop:order_status", args=[order.public_id])
    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    html = page(buyer.client.get(response.url))
    assert f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}" in html
    assert "http-equiv=\"refresh\"" not in html  # final: nothing left to poll
    status = buyer.client.get(reverse("shop:order_status_json", args=[order.public_id])).json()
    assert status == {
        "reference": order.reference,
        "status": "delivered",
        "status_label": "Delivered",
        "message": f"✅ 500 Stars sent to @sandbox_ok. Order #{order.reference}",
        "is_final": True,
    }
    # A late second click on "simulate payment" changes nothing.
    again = buyer.pay(order)
    assert again.url == reverse("shop:order_status", args=[order.public_id])
    assert order.payments.count() == 1


def test_failed_delivery_explains_the_refund(buyer, catalog, supplier, q_sync,
                                            django_capture_on_commit_callbacks):
    order = buyer.place(catalog.packages.get(name="Starter"), recipient="@sandbox_fail")

    with django_capture_on_commit_callbacks(execute=True):
        buyer.pay(order)

    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    html = page(buyer.client.get(reverse("shop:order_status", args=[order.public_id])))
    assert "We couldn&#x27;t send the 50 Stars to @sandbox_fail" in html
    assert "Your payment has been refunded." in html


def test_paying_without_a_worker_leaves_the_order_paid_and_polling(buyer, standard, supplier):
    order = buyer.place(standard)

    buyer.pay(order)

    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    html = page(buyer.client.get(reverse("shop:order_status", args=[order.public_id])))
    assert "Payment received. Sending 500 Stars to @sandbox_ok…" in html
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in html
    assert "js/status.js" in html
    assert 'data-final="false"' in html
    payload = buyer.client.get(reverse("shop:order_status_json", args=[order.public_id])).json()
    assert payload["is_final"] is False


def test_pay_page_of_a_paid_order_goes_to_status(buyer, standard, supplier):
    order = buyer.place(standard)
    buyer.pay(order)

    response = buyer.client.get(reverse("shop:order_pay", args=[order.public_id]))

    assert response.url == reverse("shop:order_status", args=[order.public_id])


def test_cancel_an_unpaid_order(buyer, standard, supplier):
    order = buyer.place(standard)

    response = buyer.client.post(reverse("shop:order_pay", args=[order.public_id]), {"action": "cancel"})

    assert response.url == reverse("shop:order_status", args=[order.public_id])
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    html = page(buyer.client.get(response.url))
    assert "This order was cancelled. Nothing was charged." in html
    # Paying a cancelled order is not offered any more.
    buyer.pay(order)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert not order.payments.exists()


def test_cancel_after_payment_changes_nothing(buyer, standard, supplier):
    order = buyer.place(standard)
    buyer.pay(order)

    buyer.client.post(reverse("shop:order_pay", args=[order.public_id]), {"action": "cancel"})

    order.refresh_from_db()
    assert order.status == OrderStatus.PAID


@pytest.mark.parametrize("action", ["", "refund", "pay " * 100])
def test_unknown_pay_action_is_refused(buyer, standard, supplier, action):
    order = buyer.place(standard)

    response = buyer.client.post(reverse("shop:order_pay", args=[order.public_id]),
                                 {"action": action, "amount": "0.01"})

    assert response.url == reverse("shop:order_pay", args=[order.public_id])
    assert flash(response) == ["That action is not available for this order."]
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_PAYMENT


def test_no_simulated_payment_once_the_sandbox_is_switched_off(buyer, standard, supplier, settings):
    order = buyer.place(standard)
    settings.PAYMENT_METHODS = {**settings.PAYMENT_METHODS,
                                "sandbox": {**settings.PAYMENT_METHODS["sandbox"], "enabled": False}}

    html = page(buyer.client.get(reverse("shop:order_pay", args=[order.public_id])))
    buyer.pay(order)

    assert "Simulate payment" not in html
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_PAYMENT


# --- Status -------------------------------------------------------------------------------


@pytest.mark.parametrize("status, words", [
    (OrderStatus.AWAITING_PAYMENT, "Waiting for your payment of $8.50."),
    (OrderStatus.PROCESSING, "Payment received. Sending 500 Stars to @sandbox_ok…"),
    (OrderStatus.FAILED, "Your payment is being refunded."),
    (OrderStatus.REFUND_PENDING, "Your payment is being refunded."),
    (OrderStatus.REFUNDED, "Your payment has been refunded."),
    (OrderStatus.ON_HOLD, "We&#x27;re on it: your order is safe"),
    (OrderStatus.REVIEW, "We&#x27;re on it: your order is safe"),
    (OrderStatus.UNKNOWN, "We&#x27;re on it: your order is safe"),
    (OrderStatus.EXPIRED, "This order expired before it was paid. Nothing was charged."),
])
def test_status_page_words(client, catalog, status, words):
    order = _order(catalog, recipient=RecipientInfo(user_id="100000001", username="@sandbox_ok"))
    Order.objects.filter(pk=order.pk).update(status=status)  # test set-up only

    html = page(client.get(reverse("shop:order_status", args=[order.public_id])))

    assert words in html
    assert order.reference in html
    assert "500" in html and "@sandbox_ok" in html


def test_status_of_an_account_without_username_shows_its_id(client, catalog):
    order = _order(catalog, recipient=RecipientInfo(user_id="100000009", username=None))

    payload = client.get(reverse("shop:order_status_json", args=[order.public_id])).json()

    assert payload["message"] == "Waiting for your payment of $8.50."
    html = page(client.get(reverse("shop:order_status", args=[order.public_id])))
    assert "Telegram ID 100000009" in html


def test_usernames_from_outside_are_escaped(client, catalog):
    order = _order(catalog, recipient=RecipientInfo(user_id="1", username='<script>alert("x")</script>'))

    html = page(client.get(reverse("shop:order_status", args=[order.public_id])))
    client.get(ownership.order_owner_path(order))  # the buyer's link: the pay page is theirs
    pay_html = page(client.get(reverse("shop:order_pay", args=[order.public_id])))

    assert "Simulate payment" in pay_html
    assert "<script>alert" not in html and "<script>alert" not in pay_html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


@pytest.mark.parametrize("name", ["shop:order_status", "shop:order_status_json", "shop:order_pay"])
def test_unknown_order_is_404(client, catalog, name):
    assert client.get(reverse(name, args=[uuid.uuid4()])).status_code == 404


@pytest.mark.parametrize("path", ["/orders/not-a-uuid/", "/orders/1/pay/", "/orders/%00/status.json",
                                  "/orders/" + "9" * 5000 + "/"])
def test_malformed_order_urls_are_404(client, catalog, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_refused(client, catalog, method):
    for name in ["shop:catalog", "shop:recipient", "shop:confirm", "shop:terms"]:
        assert getattr(client, method)(reverse(name)).status_code == 405


def test_every_form_needs_a_csrf_token(csrf_buyer, standard):
    assert csrf_buyer.choose_package(standard).status_code == 403
    assert csrf_buyer.enter_recipient("@sandbox_ok").status_code == 403
    assert csrf_buyer.client.post(reverse("shop:confirm"), {}).status_code == 403


def _order(catalog: Product, *, recipient: RecipientInfo) -> Order:
    return order_create(
        channel="web", product=catalog, recipient_input=recipient.user_id,
        recipient=recipient, payment_method="sandbox",
        package_id=catalog.packages.get(name="Standard").pk,
    )
