"""The order page's actions: offered only where they apply, confirmed with a reason, refused when
raced, recorded on the timeline and in the admin log, and only for staff who may change orders."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import ERROR, SUCCESS, WARNING, get_messages
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from bots.models import BuyerNotice, TelegramUser
from bots.services import notice_claim, notice_record
from orders import console, selectors, services
from orders.exceptions import ActionNotApplicable
from orders.models import Order, OrderEvent, Payment, PaymentEvent, SupplierAttempt
from orders.models import OrderStatus as S
from orders.transitions import order_transition
from shop.services import order_receipt_send


@pytest.fixture
def jobs(monkeypatch):
    recorded: list[tuple] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", lambda pk: recorded.append(("fulfil", pk)))
    monkeypatch.setattr("orders.queue.enqueue_refund", lambda pk: recorded.append(("refund", pk)))
    monkeypatch.setattr("orders.queue.enqueue_buyer_notice",
                        lambda pk, channel, status: recorded.append(("notice", pk, status)))
    monkeypatch.setattr(
        "orders.queue.enqueue_buyer_notice_resend",
        lambda pk, channel, status, note: recorded.append(("resend", pk, status, note)))
    return recorded


def page(order: Order) -> str:
    return reverse("admin:orders_order_change", args=[order.pk])


def action_url(order: Order, name: str) -> str:
    return reverse("admin:orders_order_console", args=[order.pk, name])


def do(client, order: Order, name: str, *, reason: str = "Checked with the supplier",
       seen: str | None = None, **extra) -> list[tuple[int, str]]:
    """Confirm an action on the order's page; the messages the operator sees afterwards."""
    response = client.post(action_url(order, name), {
        "reason": reason, "seen_status": seen or order.status, **extra}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == page(order)
    return [(message.level, message.message) for message in get_messages(response.wsgi_request)]


def offered(client, order: Order) -> set[str]:
    """The actions the order's page offers, by name."""
    body = client.get(page(order)).content.decode()
    return set(re.findall(rf"/admin/orders/order/{order.pk}/console/(\w+)/", body))


def status(order: Order) -> str:
    return Order.objects.get(pk=order.pk).status


def logged(order: Order) -> list[str]:
    return [entry.get_change_message() for entry in
            LogEntry.objects.filter(object_id=str(order.pk), action_flag=CHANGE)]


# --- What the page offers ----------------------------------------------------------------


@pytest.mark.parametrize(("order_status", "expected"), [
    (S.AWAITING_PAYMENT, {"cancel"}),
    (S.PAID, set()),
    (S.SUBMITTING, set()),
    (S.PROCESSING, set()),
    (S.UNKNOWN, {"resolve"}),
    (S.ON_HOLD, {"retry", "refund"}),
    (S.REVIEW, {"retry", "refund", "mark_refunded"}),
    (S.FAILED, {"refund"}),
    (S.REFUND_PENDING, {"mark_refunded"}),
    (S.DELIVERED, {"resend_notice"}),  # a web order with an e-mail address
    (S.REFUNDED, {"resend_notice"}),
    (S.EXPIRED, set()),
    (S.CANCELLED, set()),
])
def test_the_page_offers_only_what_applies(admin_client, make_order, order_status, expected):
    order = make_order(order_status, buyer_email="buyer@example.com")
    assert offered(admin_client, order) == expected


def test_an_owed_excess_is_offered_until_it_is_refunded(admin_client, make_order):
    order = make_order(S.DELIVERED)
    payment = Payment.objects.create(order=order, provider="ton", provider_reference="tx-9",
                                     amount=Decimal("5.2"), currency="TON", excess_minor=200_000_000)
    assert "refund_excess" in offered(admin_client, order)
    Payment.objects.filter(pk=payment.pk).update(excess_refunded_at=timezone.now())
    assert "refund_excess" not in offered(admin_client, order)


@pytest.mark.parametrize(("channel", "contact", "offered_too"), [
    ("web", {"buyer_email": "buyer@example.com"}, True),
    ("web", {}, False),  # no address: no receipt to resend
    ("bot", {"buyer_telegram_id": 300000001}, False),  # no bot token in tests: nothing sends
    ("api", {}, False),
])
def test_resend_is_offered_only_when_something_can_send(admin_client, make_order, channel, contact,
                                                        offered_too):
    order = make_order(S.DELIVERED, channel=channel, **contact)
    assert ("resend_notice" in offered(admin_client, order)) is offered_too


def test_an_action_that_does_not_apply_is_refused_by_its_url(admin_client, make_order, jobs):
    delivered = make_order(S.DELIVERED)
    response = admin_client.get(action_url(delivered, "refund"), follow=True)
    assert response.redirect_chain[-1][0] == page(delivered)
    shown = [(m.level, m.message) for m in get_messages(response.wsgi_request)]
    assert shown == [(ERROR, f"{delivered} is Delivered: Refund applies only to Failed or Needs "
                             "review or On hold orders.")]
    # A crafted POST, claiming the status it has, is refused the same way.
    assert do(admin_client, delivered, "refund")[0][0] == ERROR
    assert status(delivered) == S.DELIVERED and jobs == []
    assert not OrderEvent.objects.filter(order=delivered).exists() and not logged(delivered)


def test_an_unknown_action_is_404(admin_client, make_order):
    order = make_order(S.ON_HOLD)
    assert admin_client.get(action_url(order, "retry").replace("retry", "delete")).status_code == 404


# --- The confirmation step -----------------------------------------------------------------


def test_the_confirmation_page_says_what_will_happen_to_which_order(admin_client, make_order):
    held = make_order(S.ON_HOLD, status_reason=selectors.HOLD_REASON_BALANCE)
    response = admin_client.get(action_url(held, "retry"))
    body = response.content.decode()
    assert response.status_code == 200
    assert held.reference in body and "On hold" in body and selectors.HOLD_REASON_BALANCE in body
    assert str(console.RETRY.explanation) in body.replace("&#x27;", "'")
    assert 'name="reason"' in body and f'name="seen_status" value="{S.ON_HOLD}"' in body
    assert status(held) == S.ON_HOLD  # a GET changes nothing


def test_the_reason_is_required(admin_client, make_order, jobs):
    held = make_order(S.ON_HOLD)
    response = admin_client.post(action_url(held, "retry"), {"reason": " ",
                                                             "seen_status": S.ON_HOLD})
    assert response.status_code == 200 and response.context["form"].errors["reason"]
    assert status(held) == S.ON_HOLD and jobs == []


def test_the_templates_have_no_inline_script_or_style():
    folder = django_settings.BASE_DIR / "templates" / "admin" / "orders" / "order"
    for name in ("change_form.html", "console_action.html", "bulk_action.html"):
        text = (folder / name).read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), name
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", text), name


# --- Races ---------------------------------------------------------------------------------


def test_an_order_moved_after_the_page_was_shown_is_not_acted_on(admin_client, make_order, jobs):
    held = make_order(S.ON_HOLD)
    assert admin_client.get(action_url(held, "refund")).status_code == 200
    order_transition(order=held, to_status=S.PAID, actor="sweeper", reason="Balance is back")
    shown = do(admin_client, held, "refund", seen=S.ON_HOLD)
    assert shown == [(WARNING, f"Nothing was done: {held} changed meanwhile. It was On hold when "
                               "you opened the page and is Paid now; look again before acting.")]
    assert status(held) == S.PAID and jobs == []
    assert not OrderEvent.objects.filter(order=held, actor="admin:admin").exists()
    assert not logged(held)


def test_an_order_moved_during_the_click_is_reported(admin_client, make_order, jobs, monkeypatch):
    """The move lands between the view's check and the service's conditional update."""
    held = make_order(S.ON_HOLD)
    resume = services.order_resume

    def raced(**kwargs):
        order_transition(order=Order.objects.get(pk=held.pk), to_status=S.REFUND_PENDING,
                         actor="admin:other", reason="Refund")
        return resume(**kwargs)

    monkeypatch.setattr(services, "order_resume", raced)
    shown = do(admin_client, held, "retry")
    assert shown[0][0] == WARNING and "Nothing was done" in shown[0][1]
    assert "is Refund pending now" in shown[0][1]
    assert status(held) == S.REFUND_PENDING and not logged(held)


# --- Each action ---------------------------------------------------------------------------


def test_retry_sends_a_held_order_back_to_fulfilment(admin_client, make_order, jobs,
                                                     django_capture_on_commit_callbacks):
    held = make_order(S.ON_HOLD, status_reason=selectors.HOLD_REASON_BALANCE)
    with django_capture_on_commit_callbacks(execute=True):
        shown = do(admin_client, held, "retry", reason="Topped up the supplier")
    assert shown[0][0] == SUCCESS
    assert status(held) == S.PAID and jobs == [("fulfil", held.pk)]
    event = OrderEvent.objects.get(order=held)
    assert (event.from_status, event.to_status, event.actor, event.reason) == (
        S.ON_HOLD, S.PAID, "admin:admin", "Topped up the supplier")
    assert logged(held) == ["Retry fulfilment: Topped up the supplier"]


def test_refund_starts_the_refund_task_for_a_failed_order(admin_client, make_order, jobs,
                                                          django_capture_on_commit_callbacks):
    failed = make_order(S.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        do(admin_client, failed, "refund", reason="Supplier failed it")
    assert status(failed) == S.REFUND_PENDING
    assert jobs == [("notice", failed.pk, S.REFUND_PENDING), ("refund", failed.pk)]
    assert OrderEvent.objects.get(order=failed).reason == "Supplier failed it"
    assert logged(failed) == ["Refund: Supplier failed it"]


def test_cancel_an_unpaid_order(admin_client, make_order, jobs):
    unpaid = make_order(S.AWAITING_PAYMENT)
    do(admin_client, unpaid, "cancel", reason="Buyer asked by e-mail")
    assert status(unpaid) == S.CANCELLED
    assert OrderEvent.objects.get(order=unpaid).reason == "Buyer asked by e-mail"
    assert len(logged(unpaid)) == 1


@pytest.mark.parametrize("from_status", [S.REVIEW, S.REFUND_PENDING])
def test_mark_refunded_manually(admin_client, make_order, jobs, from_status):
    order = make_order(from_status, paid_at=timezone.now())
    payment = Payment.objects.create(order=order, provider="cryptopay", provider_reference="inv-5",
                                     amount=Decimal("8.50"), currency="USDT")
    do(admin_client, order, "mark_refunded", reason="Sent by Crypto Pay transfer",
       reference="transfer-77")
    order.refresh_from_db()
    assert order.status == S.REFUNDED and order.margin == Decimal("0.00")
    event = OrderEvent.objects.get(order=order)
    assert event.reason == "Sent by Crypto Pay transfer"
    assert event.data == {"refund_reference": "transfer-77", "refunded_outside_the_shop": True}
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED and payment.refund_reference == "transfer-77"
    # The refund task finds the order refunded and leaves it (and the provider) alone.
    assert services.order_refund(order_id=order.pk).status == S.REFUNDED


def test_mark_refunded_needs_a_reference(admin_client, make_order):
    order = make_order(S.REFUND_PENDING)
    response = admin_client.post(action_url(order, "mark_refunded"),
                                 {"reason": "Done", "seen_status": S.REFUND_PENDING})
    assert response.status_code == 200 and response.context["form"].errors["reference"]
    assert status(order) == S.REFUND_PENDING


def test_a_partner_balance_order_is_refunded_by_the_refund_action_not_by_hand(admin_client,
                                                                              make_order):
    """Only the refund task credits a partner's balance: marking it refunded would not."""
    order = make_order(S.REVIEW, channel="api")
    Order.objects.filter(pk=order.pk).update(payment_method="balance")
    order.refresh_from_db()
    response = admin_client.post(action_url(order, "mark_refunded"), {
        "reason": "Done", "reference": "by hand", "seen_status": S.REVIEW})
    assert response.status_code in (200, 302, 403)
    assert status(order) == S.REVIEW
    with pytest.raises(ActionNotApplicable, match="use Refund"):
        services.order_mark_refunded(order=order, actor="op", reason="x", refund_reference="y",
                                     expected_status=S.REVIEW)


def test_resend_the_receipt_sends_it_once_more(admin_client, make_order, settings,
                                               django_capture_on_commit_callbacks, monkeypatch):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    sent: list[str] = []
    # The queue runs the task at once, as a worker would (twice: a repeated task is harmless).
    monkeypatch.setattr("orders.queue.async_task", lambda task, order_id, status, **kwargs: [
        sent.append(order_receipt_send(order_id=order_id, status=status,
                                       resend=kwargs.get("resend"))) for _ in range(2)])
    order = make_order(S.DELIVERED, buyer_email="buyer@example.com")
    assert order_receipt_send(order_id=order.pk, status=S.DELIVERED) == "sent"
    assert order_receipt_send(order_id=order.pk, status=S.DELIVERED) == "skipped"  # once per status
    with django_capture_on_commit_callbacks(execute=True):
        shown = do(admin_client, order, "resend_notice", reason="Buyer lost the e-mail")
    assert shown[0][0] == SUCCESS
    assert sent == ["sent", "skipped"] and len(mail.outbox) == 2
    note = OrderEvent.objects.get(order=order, actor="admin:admin")
    assert note.reason == "Buyer lost the e-mail" and note.data == {"notice_resend": S.DELIVERED}
    assert logged(order) == ["Resend the buyer's notice: Buyer lost the e-mail"]


def test_a_bot_notice_is_claimed_again_once_per_resend(make_order, settings):
    order = make_order(S.DELIVERED, channel="bot", buyer_telegram_id=300000001)
    first = notice_claim(order_id=order.pk, status=S.DELIVERED)
    notice_record(notice_id=first.notice_id, outcome=BuyerNotice.Outcome.SENT, message_id=1)
    assert notice_claim(order_id=order.pk, status=S.DELIVERED) is None  # sent: once per status
    note = OrderEvent.objects.create(order=order, from_status=S.DELIVERED, to_status=S.DELIVERED,
                                     actor="admin:admin", reason="Resend",
                                     data={"notice_resend": S.DELIVERED})
    again = notice_claim(order_id=order.pk, status=S.DELIVERED, resend=note.pk)
    assert again is not None and again.chat_id == 300000001
    notice_record(notice_id=again.notice_id, outcome=BuyerNotice.Outcome.SENT, message_id=2)
    assert notice_claim(order_id=order.pk, status=S.DELIVERED, resend=note.pk) is None
    other = make_order(S.DELIVERED, channel="bot", buyer_telegram_id=300000002)
    # Another order's note does not release this order's notice.
    assert notice_claim(order_id=order.pk, status=S.DELIVERED,
                        resend=OrderEvent.objects.create(order=other, to_status=S.DELIVERED,
                                                         actor="x").pk) is None


def test_resend_refused_when_the_order_moved(make_order, jobs):
    order = make_order(S.DELIVERED, buyer_email="buyer@example.com")
    with pytest.raises(services.OrderStateChanged):
        services.order_notice_resend(order=order, actor="admin:a", reason="r",
                                     expected_status=S.REFUNDED)
    assert not OrderEvent.objects.filter(order=order).exists() and jobs == []


def test_the_overpaid_excess_is_marked_refunded_by_hand(admin_client, make_order):
    order = make_order(S.DELIVERED, paid_at=timezone.now())
    payment = Payment.objects.create(order=order, provider="ton", provider_reference="tx-9",
                                     amount=Decimal("5.2"), currency="TON", excess_minor=200_000_000)
    body = admin_client.get(action_url(order, "refund_excess")).content.decode()
    # No provider here refunds part of a payment: the page says so and how much to send back.
    assert "cannot refund part of a payment" in body and "0.200000000 TON" in body
    shown = do(admin_client, order, "refund_excess", reason="Sent back from the wallet",
               reference="tx-back-1", payment=str(payment.pk))
    assert shown[0][0] == SUCCESS
    payment.refresh_from_db()
    assert payment.excess_refund_reference == "tx-back-1" and payment.excess_refunded_at
    assert payment.status == Payment.Status.CONFIRMED  # the order keeps the rest
    assert status(order) == S.DELIVERED
    note = OrderEvent.objects.get(order=order)
    assert note.reason == "Sent back from the wallet"
    assert note.data["excess_refund_reference"] == "tx-back-1"
    assert selectors.problem_queue_counts(undelivered_minutes=10).overpaid == 0
    # A second operator, from a page opened before: refused, nothing recorded twice.
    shown = do(admin_client, order, "refund_excess", reason="Again", reference="tx-back-2",
               payment=str(payment.pk))
    assert shown[0][0] == ERROR
    assert OrderEvent.objects.filter(order=order).count() == 1


# --- Resolving an unknown outcome by lookup ------------------------------------------------


def test_lookup_applies_what_the_supplier_has(admin_client, make_order, supplier, supplier_client):
    order = make_order(S.UNKNOWN, paid_at=timezone.now())
    # Our request reached the supplier but its answer was lost.
    supplier_client.place_topup(user_id=order.recipient_user_id, stars=order.stars,
                                idempotency_key=order.idempotency_key)
    shown = do(admin_client, order, "resolve", reason="Buyer says the Stars arrived")
    assert shown[0][0] == SUCCESS and "is now Delivered" in shown[0][1]
    assert status(order) == S.DELIVERED
    assert supplier.topup_calls(order.idempotency_key) == 1  # nothing placed again
    note, delivered = OrderEvent.objects.filter(order=order).order_by("id")
    assert note.reason == "Buyer says the Stars arrived" and note.data["lookup"] == "found"
    assert (delivered.to_status, delivered.actor) == (S.DELIVERED, "admin:admin")
    assert logged(order) == ["Look up at the supplier: Buyer says the Stars arrived"]
    assert Order.objects.get(pk=order.pk).lease_owner == ""  # the lease is given back


def test_lookup_that_finds_nothing_never_places_a_top_up(admin_client, make_order, supplier):
    # Long past the grace period: a worker would now place it again; the lookup must not.
    order = make_order(S.UNKNOWN, paid_at=timezone.now())
    Order.objects.filter(pk=order.pk).update(status_changed_at=timezone.now() - timedelta(hours=1))
    shown = do(admin_client, order, "resolve", reason="Checking")
    assert shown[0][0] == SUCCESS and "nothing was placed" in shown[0][1]
    assert status(order) == S.UNKNOWN
    assert supplier.topup_calls(order.idempotency_key) == 0
    assert not SupplierAttempt.objects.filter(order=order).exists()
    assert OrderEvent.objects.get(order=order).data == {"lookup": "not found"}


def test_lookup_waits_for_a_worker_holding_the_order(admin_client, make_order, supplier):
    order = make_order(S.UNKNOWN, paid_at=timezone.now())
    Order.objects.filter(pk=order.pk).update(lease_owner="worker-1",
                                             lease_until=timezone.now() + timedelta(seconds=30))
    shown = do(admin_client, order, "resolve", reason="Checking")
    assert shown[0][0] == ERROR and "A worker is working on order" in shown[0][1]
    assert status(order) == S.UNKNOWN and not OrderEvent.objects.filter(order=order).exists()
    assert not logged(order)


def test_lookup_when_the_supplier_is_down(admin_client, make_order, supplier):
    order = make_order(S.UNKNOWN, paid_at=timezone.now())
    supplier.stop()
    shown = do(admin_client, order, "resolve", reason="Checking")
    assert shown[0][0] == SUCCESS and "lookup of" in shown[0][1] and "failed" in shown[0][1]
    assert status(order) == S.UNKNOWN
    assert OrderEvent.objects.get(order=order).data["lookup"] == "failed"


# --- Where the order is and why --------------------------------------------------------------


def test_the_page_says_where_the_order_is_and_why(admin_client, make_order):
    order = make_order(S.ON_HOLD, status_reason=selectors.HOLD_REASON_BALANCE, channel="bot",
                       buyer_telegram_id=300000001, recipient_username="@sandbox_ok",
                       recipient_user_id="100000001", paid_at=timezone.now(),
                       payment_fee=Decimal("0.17"))
    TelegramUser.objects.create(telegram_id=300000001, username="buyer_bob")
    event = PaymentEvent.objects.create(provider="stripe", event_key="evt_1", kind="paid",
                                        order=order, body='{"id": "evt_1", "secret_field": 1}')
    Payment.objects.create(order=order, event=event, provider="stripe", provider_reference="cs_1",
                           amount=Decimal("8.50"), currency="USD", raw={"payment_intent": "pi_1"})
    SupplierAttempt.objects.create(order=order, number=1, supplier_code="sandbox",
                                   idempotency_key=order.idempotency_key,
                                   request={"stars": 500}, response_body='{"error": "balance"}')
    body = admin_client.get(page(order)).content.decode()
    summary = body[body.index('id="order-summary"'):]
    assert "On hold" in summary[:400] and selectors.HOLD_REASON_BALANCE in summary[:600]
    assert "supplier balance of at least 8.25 USD" in body  # the amount it waits for
    assert "Telegram user 300000001 @buyer_bob" in body
    assert "@sandbox_ok (ID 100000001)" in body
    assert "0.08 USD" in body  # margin: 8.50 - 8.25 - 0.17
    for raw in ("evt_1", "pi_1", "balance"):
        assert re.search(rf"<details><summary>[^<]+</summary><pre>[^<]*{raw}", body.replace(
            "&quot;", '"')), raw


def test_held_balance_text_only_for_a_balance_hold(make_order):
    from orders.admin import held_balance_text

    assert "8.25 USD" in held_balance_text(make_order(
        S.ON_HOLD, status_reason=selectors.HOLD_REASON_BALANCE))
    assert held_balance_text(make_order(
        S.ON_HOLD, status_reason=selectors.HOLD_REASON_CREDENTIALS)) == ""
    assert held_balance_text(make_order(S.PAID, status_reason=selectors.HOLD_REASON_BALANCE)) == ""


def test_held_balance_text_shows_the_last_balance_and_says_when_it_covers_the_order(make_order):
    from decimal import Decimal

    from orders.admin import held_balance_text
    from stock.models import BalanceReading

    held = make_order(S.ON_HOLD, status_reason=selectors.HOLD_REASON_BALANCE)
    assert "has not been read yet" in held_balance_text(held)
    BalanceReading.objects.create(supplier_code=held.supplier_code, amount=Decimal("5.00"),
                                  currency="USD")
    short = held_balance_text(held)
    assert "Supplier balance: 5.00 USD" in short and "check the account" not in short
    BalanceReading.objects.create(supplier_code=held.supplier_code, amount=Decimal("100.00"),
                                  currency="USD")
    covered = held_balance_text(held)
    assert "Supplier balance: 100.00 USD" in covered and "check the account at the supplier" in covered


# --- Who may act ---------------------------------------------------------------------------


@pytest.fixture
def staff(client, django_user_model):
    """Log in a staff user in the named group, or with only these permissions."""

    def login(group: str = "", permissions: tuple[str, ...] = ()):
        user = django_user_model.objects.create_user(username=group.lower() or "viewer",
                                                     is_staff=True)
        if group:
            user.groups.add(Group.objects.get(name=group))
        for codename in permissions:
            user.user_permissions.add(Permission.objects.get(codename=codename))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def one_of_each(make_order):
    """An order for every action, each in a status the action applies to."""
    orders = {
        "retry": make_order(S.ON_HOLD), "resolve": make_order(S.UNKNOWN),
        "refund": make_order(S.REVIEW), "cancel": make_order(S.AWAITING_PAYMENT),
        "mark_refunded": make_order(S.REFUND_PENDING),
        "resend_notice": make_order(S.DELIVERED, buyer_email="buyer@example.com"),
        "refund_excess": make_order(S.DELIVERED),
    }
    Payment.objects.create(order=orders["refund_excess"], provider="ton", provider_reference="t",
                           amount=Decimal("5"), currency="TON", excess_minor=1)
    assert set(orders) == set(console.ACTIONS)
    return orders


def test_view_only_staff_see_no_actions_and_get_403_on_each(staff, one_of_each, jobs):
    client = staff(permissions=("view_order",))
    for name, order in one_of_each.items():
        response = client.get(page(order))
        assert response.status_code == 200
        assert "/console/" not in response.content.decode(), name
        assert client.get(action_url(order, name)).status_code == 403, name
        response = client.post(action_url(order, name), {
            "reason": "x", "seen_status": order.status, "reference": "r"})
        assert response.status_code == 403, name
        assert status(order) == order.status
    assert not OrderEvent.objects.exists() and jobs == [] and not LogEntry.objects.exists()
    # Nor can they run the list's actions.
    changelist = client.get(reverse("admin:orders_order_changelist")).content.decode()
    assert "resume_fulfilment" not in changelist
    held = one_of_each["retry"]
    client.post(reverse("admin:orders_order_changelist"), {
        "action": "resume_fulfilment", "_selected_action": [held.pk], "confirm": "yes",
        "reason": "x"})
    assert status(held) == S.ON_HOLD


def test_staff_without_order_access_get_403(staff, one_of_each):
    client = staff()
    order = one_of_each["retry"]
    assert client.get(action_url(order, "retry")).status_code == 403
    assert client.post(action_url(order, "retry"), {"reason": "x",
                                                    "seen_status": S.ON_HOLD}).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login(client, make_order):
    order = make_order(S.ON_HOLD)
    response = client.post(action_url(order, "retry"), {"reason": "x", "seen_status": S.ON_HOLD})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert status(order) == S.ON_HOLD


@pytest.mark.parametrize("group", ["Operators", "Managers"])
def test_operators_and_managers_act(staff, one_of_each, group, jobs):
    client = staff(group)
    held = one_of_each["retry"]
    assert offered(client, held) == {"retry", "refund"}
    assert client.get(action_url(held, "retry")).status_code == 200
    do(client, held, "retry", reason="Balance is back")
    assert status(held) == S.PAID
    assert OrderEvent.objects.get(order=held).actor == f"admin:{group.lower()}"


def test_resend_a_bot_notice_enqueues_it_with_the_note(admin_client, make_order, settings, jobs,
                                                       django_capture_on_commit_callbacks):
    settings.ORDER_NOTICE_TASKS = {**settings.ORDER_NOTICE_TASKS, "bot": "bots.tasks.order_notify"}
    order = make_order(S.REFUNDED, channel="bot", buyer_telegram_id=300000001)
    assert "resend_notice" in offered(admin_client, order)
    with django_capture_on_commit_callbacks(execute=True):
        do(admin_client, order, "resend_notice", reason="Buyer asked where the money is")
    note = OrderEvent.objects.get(order=order, actor="admin:admin")
    assert jobs == [("resend", order.pk, S.REFUNDED, note.pk)]
    assert status(order) == S.REFUNDED
