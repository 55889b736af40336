"""Order services against the real sandbox supplier over HTTP: placing, paying, fulfilling.

The fulfilment job is driven by calling the service the way the django-q2 task does; the
real cluster runs in test_cluster.py.
"""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from orders import services
from orders.exceptions import InvalidRecipient, PaymentMethodUnavailable, PaymentMismatch
from orders.models import Order, OrderEvent, Payment, SupplierAttempt
from orders.models import OrderStatus as S
from orders.suppliers.base import RecipientInfo
from shop.exceptions import ProductUnavailable, PromoCodeUsedUp, QuantityOutOfRange
from shop.models import PromoCode


@pytest.fixture
def enqueued(monkeypatch):
    """Record jobs instead of sending them to a broker; tests run them by hand."""
    jobs: dict[str, list[int]] = {"fulfil": [], "refund": []}
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", lambda pk: jobs["fulfil"].append(pk))
    monkeypatch.setattr("orders.queue.enqueue_refund", lambda pk: jobs["refund"].append(pk))
    return jobs


def place(catalog, recipient: str, *, package_quantity: int = 500) -> Order:
    normalised, info = services.recipient_validate(raw=recipient)
    package = catalog.packages.get(quantity=package_quantity)
    return services.order_create(
        channel="web", product=catalog, recipient_input=recipient, recipient=info,
        payment_method="sandbox", package_id=package.pk,
    )


def pay(order: Order, django_capture_on_commit_callbacks) -> Order:
    with django_capture_on_commit_callbacks(execute=True):
        return services.order_pay_sandbox(order=order)


def statuses(order: Order) -> list[str]:
    return list(OrderEvent.objects.filter(order=order).values_list("to_status", flat=True))


# --- placing --------------------------------------------------------------------------------


def test_order_create_copies_catalog_price_and_cost(catalog, supplier):
    order = place(catalog, "@sandbox_ok")
    assert order.reference == f"ORD-{order.pk:06d}"
    assert (order.stars, order.price, order.cost, order.currency) == (500, Decimal("8.50"), Decimal("8.25"), "USD")
    assert order.recipient_user_id == "100000001" and order.recipient_username == "@sandbox_ok"
    assert order.status == S.AWAITING_PAYMENT
    assert order.expires_at > timezone.now() + timedelta(minutes=29)
    assert statuses(order) == [S.AWAITING_PAYMENT]


def test_custom_quantity_priced_per_unit(catalog, supplier):
    info = RecipientInfo(user_id="100000001", username="@sandbox_ok")
    order = services.order_create(channel="web", product=catalog, recipient_input="@sandbox_ok", recipient=info,
                                  payment_method="sandbox", quantity=777)
    assert order.price == Decimal("13.99")  # 777 × 0.018 = 13.986
    assert order.cost == Decimal("12.82")  # 777 × 0.0165 = 12.8205


@pytest.mark.parametrize("quantity", [0, 49, 10_001, -5, 10**30])
def test_custom_quantity_out_of_range(catalog, quantity):
    info = RecipientInfo(user_id="1", username=None)
    with pytest.raises(QuantityOutOfRange):
        services.order_create(channel="web", product=catalog, recipient_input="1", recipient=info,
                              payment_method="sandbox", quantity=quantity)
    assert not Order.objects.exists()


def test_inactive_package_and_unknown_method_refused(catalog):
    info = RecipientInfo(user_id="1", username=None)
    package = catalog.packages.first()
    package.active = False
    package.save()
    with pytest.raises(ProductUnavailable):
        services.order_create(channel="web", product=catalog, recipient_input="1", recipient=info,
                              payment_method="sandbox", package_id=package.pk)
    with pytest.raises(PaymentMethodUnavailable):
        services.order_create(channel="web", product=catalog, recipient_input="1", recipient=info,
                              payment_method="bitcoin-by-mail", quantity=100)
    assert not Order.objects.exists()


def test_recipient_validate_by_id_and_username(supplier, db):
    assert services.recipient_validate(raw=" @sandbox_ok ") == ("@sandbox_ok", RecipientInfo("100000001", "@sandbox_ok"))
    assert services.recipient_validate(raw="100000001")[1].username == "@sandbox_ok"
    with pytest.raises(InvalidRecipient):
        services.recipient_validate(raw="@sandbox_invalid")


# --- paying ---------------------------------------------------------------------------------


def test_payment_marks_paid_and_records_the_job(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = pay(place(catalog, "@sandbox_ok"), django_capture_on_commit_callbacks)
    order.refresh_from_db()
    assert order.status == S.PAID and order.paid_at and order.next_action_at
    assert enqueued["fulfil"] == [order.pk]
    assert Payment.objects.get(order=order).amount == Decimal("8.50")


def test_duplicate_confirmations_apply_once(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = place(catalog, "@sandbox_ok")
    for _ in range(5):
        pay(Order.objects.get(pk=order.pk), django_capture_on_commit_callbacks)
    assert Payment.objects.filter(order=order).count() == 1
    assert statuses(order).count(S.PAID) == 1
    assert enqueued["fulfil"] == [order.pk]


def test_underpayment_goes_to_review(catalog, supplier, enqueued):
    order = place(catalog, "@sandbox_ok")
    services.order_mark_paid(order=order, provider="sandbox", provider_reference="p1",
                             amount=Decimal("8.49"), currency="USD", actor="t")
    order.refresh_from_db()
    assert order.status == S.REVIEW and "Underpaid" in order.status_reason
    assert enqueued["fulfil"] == []


def test_wrong_currency_goes_to_review(catalog, supplier, enqueued):
    order = place(catalog, "@sandbox_ok")
    services.order_mark_paid(order=order, provider="sandbox", provider_reference="p1",
                             amount=Decimal("850"), currency="RUB", actor="t")
    order.refresh_from_db()
    assert order.status == S.REVIEW


def test_payment_after_expiry_is_kept_for_review(catalog, supplier, enqueued):
    order = place(catalog, "@sandbox_ok")
    assert services.orders_expire(now=order.expires_at + timedelta(seconds=1)) == 1
    services.order_mark_paid(order=Order.objects.get(pk=order.pk), provider="sandbox",
                             provider_reference="late", amount=order.price, currency="USD", actor="t")
    order.refresh_from_db()
    assert order.status == S.REVIEW
    assert Payment.objects.filter(order=order).count() == 1
    assert enqueued["fulfil"] == []


def test_payment_reference_of_another_order_is_refused(catalog, supplier, enqueued):
    first, second = place(catalog, "@sandbox_ok"), place(catalog, "@sandbox_ok")
    services.order_mark_paid(order=first, provider="sandbox", provider_reference="same",
                             amount=first.price, currency="USD", actor="t")
    with pytest.raises(PaymentMismatch):
        services.order_mark_paid(order=second, provider="sandbox", provider_reference="same",
                                 amount=second.price, currency="USD", actor="t")
    second.refresh_from_db()
    assert second.status == S.AWAITING_PAYMENT


def test_expiry_leaves_fresh_and_paid_orders_alone(catalog, supplier, enqueued):
    fresh, paid = place(catalog, "@sandbox_ok"), place(catalog, "@sandbox_ok")
    services.order_pay_sandbox(order=paid)
    assert services.orders_expire() == 0
    assert services.orders_expire(now=timezone.now() + timedelta(hours=1)) == 1
    fresh.refresh_from_db()
    paid.refresh_from_db()
    assert (fresh.status, paid.status) == (S.EXPIRED, S.PAID)


# --- fulfilling -----------------------------------------------------------------------------


def paid_order(catalog, recipient, enqueued, capture) -> Order:
    order = pay(place(catalog, recipient), capture)
    assert order.status == S.PAID
    return order


def test_fulfil_delivers_at_once(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_ok", enqueued, django_capture_on_commit_callbacks)
    order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.DELIVERED and order.delivered_at and order.supplier_order_id
    assert statuses(order) == [S.AWAITING_PAYMENT, S.PAID, S.SUBMITTING, S.DELIVERED]
    attempt = SupplierAttempt.objects.get(order=order)
    assert attempt.outcome == SupplierAttempt.Outcome.ACCEPTED and attempt.response_status == 201
    assert attempt.idempotency_key == order.idempotency_key
    assert supplier.topup_calls(order.idempotency_key) == 1
    # Running the job again (a retried or duplicated task) does nothing.
    services.order_fulfil(order_id=order.pk)
    assert supplier.topup_calls(order.idempotency_key) == 1


def test_fulfil_polls_a_slow_order_to_delivery(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_slow", enqueued, django_capture_on_commit_callbacks)
    order = services.order_fulfil(order_id=order.pk, budget_seconds=15)
    assert order.status == S.DELIVERED
    assert statuses(order)[-2:] == [S.PROCESSING, S.DELIVERED]


def test_poll_budget_hands_over_to_the_sweeper(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_slow", enqueued, django_capture_on_commit_callbacks)
    order = services.order_fulfil(order_id=order.pk, budget_seconds=0)
    assert order.status == S.PROCESSING and order.next_action_at
    result = services.orders_sweep(now=order.next_action_at + timedelta(seconds=1))
    assert order.pk in result.enqueued


def test_supplier_failure_fails_and_refunds(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_fail", enqueued, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        order = services.order_fulfil(order_id=order.pk, budget_seconds=15)
    assert order.status == S.REFUND_PENDING
    assert enqueued["refund"] == [order.pk]
    order = services.order_refund(order_id=order.pk)
    assert order.status == S.REFUNDED
    assert Payment.objects.get(order=order).status == Payment.Status.REFUNDED
    assert S.FAILED in statuses(order)
    assert S.DELIVERED not in statuses(order)


def test_recipient_invalid_at_fulfilment_is_refunded_without_a_topup(
    catalog, supplier, make_order, enqueued, django_capture_on_commit_callbacks
):
    order = make_order(S.PAID, recipient_user_id="100000003", recipient_username="",
                       next_action_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.REFUND_PENDING
    assert supplier.topup_calls(order.idempotency_key) == 0


def test_username_that_changed_owner_goes_to_review(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_renamed", enqueued, django_capture_on_commit_callbacks)
    assert order.recipient_user_id == "100000009"
    order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.REVIEW and "another account" in order.status_reason
    assert supplier.topup_calls(order.idempotency_key) == 0


def test_timeout_after_commit_is_resolved_by_lookup(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_timeout", enqueued, django_capture_on_commit_callbacks)
    order = services.order_fulfil(order_id=order.pk, budget_seconds=15)
    assert order.status == S.DELIVERED
    assert S.UNKNOWN in statuses(order)
    assert supplier.topup_calls(order.idempotency_key) == 1
    assert SupplierAttempt.objects.get(order=order).outcome == SupplierAttempt.Outcome.UNKNOWN


def test_5xx_then_recovery_places_once(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_flaky", enqueued, django_capture_on_commit_callbacks)
    order = services.order_fulfil(order_id=order.pk, budget_seconds=15)
    assert order.status == S.DELIVERED
    # The 500 left the outcome unknown; the lookup found nothing, so it was placed again
    # with the same key — and the supplier holds exactly one order.
    assert supplier.calls(order.idempotency_key)["orders_created"] == 1
    assert [a.outcome for a in SupplierAttempt.objects.filter(order=order)] == ["unknown", "accepted"]


def test_rate_limit_waits_and_retries(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_ratelimit", enqueued, django_capture_on_commit_callbacks)
    order = services.order_fulfil(order_id=order.pk, budget_seconds=15)
    assert order.status == S.DELIVERED
    assert [a.outcome for a in SupplierAttempt.objects.filter(order=order)] == ["rejected", "accepted"]


def test_insufficient_balance_holds_then_resumes(catalog, supplier, enqueued, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_broke", enqueued, django_capture_on_commit_callbacks)
    order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.ON_HOLD and "balance" in order.status_reason
    # Nothing changes before the cause is gone...
    supplier.set_balance("0.00")
    later = order.next_action_at + timedelta(seconds=1)
    assert services.orders_sweep(now=later).resumed == []
    # ...then the operator tops up the supplier wallet and the sweeper resumes the order.
    supplier.set_balance("1000.00")
    with django_capture_on_commit_callbacks(execute=True):
        result = services.orders_sweep(now=later + timedelta(minutes=10))
    assert result.resumed == [order.pk]
    assert services.order_fulfil(order_id=order.pk).status == S.DELIVERED


def test_bad_credentials_hold_the_order(catalog, supplier, enqueued, settings, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_ok", enqueued, django_capture_on_commit_callbacks)
    settings.SUPPLIER_API_KEY = "wrong"
    order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.ON_HOLD and "credentials" in order.status_reason
    assert supplier.topup_calls(order.idempotency_key) == 0


def test_supplier_down_keeps_the_order_paid(catalog, supplier, enqueued, settings, django_capture_on_commit_callbacks):
    order = paid_order(catalog, "@sandbox_ok", enqueued, django_capture_on_commit_callbacks)
    settings.SUPPLIER_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    order = services.order_fulfil(order_id=order.pk, budget_seconds=0)
    assert order.status == S.PAID and order.next_action_at > timezone.now()
    assert SupplierAttempt.objects.filter(order=order).count() == 0  # never claimed
    settings.SUPPLIER_BASE_URL = supplier.url
    assert services.orders_sweep(now=order.next_action_at + timedelta(seconds=1)).enqueued == [order.pk]
    order = services.order_fulfil(order_id=order.pk, budget_seconds=10)
    assert order.status == S.DELIVERED


def test_crash_between_call_and_save_is_resolved_by_lookup(
    catalog, supplier, enqueued, monkeypatch, django_capture_on_commit_callbacks
):
    order = paid_order(catalog, "@sandbox_ok", enqueued, django_capture_on_commit_callbacks)

    class WorkerDied(BaseException):
        pass

    real_record = services._record_attempt

    def die(*args, **kwargs):
        raise WorkerDied  # the supplier answered; we die before saving a thing

    monkeypatch.setattr(services, "_record_attempt", die)
    with pytest.raises(WorkerDied):
        services.order_fulfil(order_id=order.pk)
    monkeypatch.setattr(services, "_record_attempt", real_record)
    order.refresh_from_db()
    assert order.status == S.SUBMITTING
    # A retried task while the dead worker's lease runs leaves it alone (it may be alive).
    assert order.lease_until > timezone.now()
    assert services.order_fulfil(order_id=order.pk, budget_seconds=0).status == S.SUBMITTING
    assert services.orders_sweep(now=timezone.now()).enqueued == []
    # Once the lease lapses the sweeper hands it to a worker, which resolves it by lookup.
    result = services.orders_sweep(now=order.lease_until + timedelta(seconds=1))
    assert result.enqueued == [order.pk]
    Order.objects.filter(pk=order.pk).update(next_action_at=timezone.now(),
                                             lease_until=timezone.now() - timedelta(seconds=1))
    order = services.order_fulfil(order_id=order.pk)
    assert order.status == S.DELIVERED
    assert statuses(order)[-2:] == [S.UNKNOWN, S.DELIVERED]
    assert supplier.topup_calls(order.idempotency_key) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_place_once(catalog, supplier, enqueued):
    order = place(catalog, "@sandbox_ok")
    services.order_pay_sandbox(order=order)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            services.order_fulfil(order_id=order.pk, budget_seconds=5)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    order.refresh_from_db()
    assert order.status == S.DELIVERED
    assert supplier.topup_calls(order.idempotency_key) == 1
    assert SupplierAttempt.objects.filter(order=order).count() == 1


def test_sweeper_picks_only_due_in_flight_orders(make_order, enqueued):
    now = timezone.now()
    due = make_order(S.PAID, next_action_at=now - timedelta(seconds=1))
    not_due = make_order(S.PROCESSING, next_action_at=now + timedelta(minutes=5))
    make_order(S.DELIVERED)
    make_order(S.AWAITING_PAYMENT)
    stalled_refund = make_order(S.REFUND_PENDING)
    result = services.orders_sweep(now=now + timedelta(minutes=3))
    assert result.enqueued == [due.pk]
    assert not_due.pk not in result.enqueued
    assert result.refunds == [stalled_refund.pk]


def test_request_key_makes_order_create_idempotent(catalog, supplier):
    info = RecipientInfo(user_id="100000001", username="@sandbox_ok")
    kwargs = dict(channel="web", product=catalog, recipient_input="@sandbox_ok", recipient=info,
                  payment_method="sandbox", quantity=100, request_key="confirm:abc")
    first = services.order_create(**kwargs)
    again = services.order_create(**kwargs)
    assert again.pk == first.pk
    other_channel = services.order_create(**{**kwargs, "channel": "bot"})
    assert other_channel.pk != first.pk
    assert Order.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_order_create_with_one_request_key(catalog, supplier):
    info = RecipientInfo(user_id="100000001", username="@sandbox_ok")
    barrier = threading.Barrier(4)
    placed: list[int] = []

    def submit():
        try:
            barrier.wait()
            placed.append(services.order_create(
                channel="web", product=catalog, recipient_input="100000001", recipient=info,
                payment_method="sandbox", quantity=100, request_key="confirm:race").pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(placed) == 4 and len(set(placed)) == 1
    assert Order.objects.count() == 1


def storefront_order(catalog, **overrides) -> Order:
    """order_create as the storefront's confirm step calls it (the Large package by default)."""
    kwargs = dict(channel="web", product=catalog, recipient_input="@sandbox_ok",
                  recipient=RecipientInfo(user_id="100000001", username="@sandbox_ok"),
                  payment_method="sandbox", buyer_session_key="session",
                  request_key="confirm:1", buyer_email="buyer@example.com", buyer_language="en")
    return services.order_create(**{**kwargs, **overrides})


@pytest.mark.parametrize("choice", [{}, {"package_id": None, "quantity": 777}])
def test_order_create_query_count_is_fixed(catalog, django_assert_num_queries, choice):
    # The package (none for a custom amount), the supplier with its volume tiers in one
    # query, then in one transaction (a savepoint inside the test's): the order, its
    # reference, its first event. A new order reads nothing else first: its request key is
    # looked up only when the insert or a refusal says it may have been placed before.
    large = catalog.packages.get(quantity=1000)
    with django_assert_num_queries(6 if choice else 7):
        order = storefront_order(catalog, **{"package_id": large.pk, **choice})
    assert order.reference == f"ORD-{order.pk:06d}"
    assert Order.objects.get(pk=order.pk).reference == order.reference
    assert statuses(order) == [S.AWAITING_PAYMENT]
    assert OrderEvent.objects.get(order=order).data["language"] == "en"


def test_a_repeated_request_gets_its_order_even_once_the_catalog_refuses_a_new_one(catalog, settings):
    first = storefront_order(catalog, package_id=catalog.packages.get(quantity=1000).pk)
    catalog.packages.filter(pk=first.package_id).update(active=False)
    assert storefront_order(catalog, package_id=first.package_id).pk == first.pk
    settings.PAYMENT_METHODS = {**settings.PAYMENT_METHODS,
                                "sandbox": {**settings.PAYMENT_METHODS["sandbox"], "enabled": False}}
    assert storefront_order(catalog, quantity=1000).pk == first.pk
    assert storefront_order(catalog, quantity=1000, recipient_input="not a recipient").pk == first.pk
    with pytest.raises(PaymentMethodUnavailable):
        storefront_order(catalog, quantity=1000, request_key="confirm:2")
    assert Order.objects.count() == 1


def test_a_repeated_request_gets_its_order_after_it_used_up_the_promo_code(catalog):
    PromoCode.objects.create(code="ONCE", kind=PromoCode.Kind.PERCENT, value=Decimal("1"),
                             max_uses=1)
    first = storefront_order(catalog, quantity=1000, promo_code="ONCE")
    assert first.price < Decimal("18.00")  # 1,000 × 0.018, less 1%
    assert storefront_order(catalog, quantity=1000, promo_code="ONCE").pk == first.pk
    with pytest.raises(PromoCodeUsedUp):
        storefront_order(catalog, quantity=1000, promo_code="ONCE", request_key="confirm:2")
    assert Order.objects.count() == 1


def test_numeric_id_recipient_is_delivered_whatever_its_username(catalog, supplier, enqueued,
                                                                  django_capture_on_commit_callbacks):
    order = paid_order(catalog, "123456789", enqueued, django_capture_on_commit_callbacks)
    assert order.recipient_input == "123456789"
    assert services.order_fulfil(order_id=order.pk).status == S.DELIVERED


def test_sandbox_payment_refused_when_sandbox_is_off(catalog, supplier, enqueued, settings):
    order = place(catalog, "@sandbox_ok")
    settings.PAYMENT_METHODS = {**settings.PAYMENT_METHODS,
                                "sandbox": {**settings.PAYMENT_METHODS["sandbox"], "enabled": False}}
    with pytest.raises(PaymentMethodUnavailable):
        services.order_pay_sandbox(order=order)
    order.refresh_from_db()
    assert order.status == S.AWAITING_PAYMENT


def test_order_the_supplier_forgot_is_looked_up_again(catalog, supplier, make_order, enqueued):
    order = make_order(S.PROCESSING, supplier_order_id="SUP-999999", paid_at=timezone.now(),
                       next_action_at=timezone.now())
    order = services.order_fulfil(order_id=order.pk, budget_seconds=0)
    # get_order said not_found: the order is unknown, to be settled by a lookup by our key.
    assert order.status == S.UNKNOWN
    assert "lost track" in order.status_reason


@pytest.mark.parametrize("status", [S.PROCESSING, S.UNKNOWN])
def test_unsettled_orders_go_to_review_after_the_give_up_time(make_order, supplier, status, settings):
    long_ago = timezone.now() - timedelta(hours=settings.FULFILMENT_GIVE_UP_HOURS, minutes=1)
    order = make_order(status, paid_at=long_ago, next_action_at=timezone.now())
    order = services.order_fulfil(order_id=order.pk, budget_seconds=0)
    assert order.status == S.REVIEW and "check with the supplier" in order.status_reason
    assert supplier.topup_calls(order.idempotency_key) == 0


@pytest.mark.parametrize("status", [S.UNKNOWN, S.SUBMITTING, S.EXPIRED, S.PROCESSING])
def test_resume_refuses_anything_but_on_hold_and_review(make_order, status):
    """Found by the state-machine property test: resuming an unknown outcome would place a
    second top-up while the first may still be in flight; an expired order was never paid."""
    from orders.exceptions import InvalidTransition

    order = make_order(status)
    with pytest.raises(InvalidTransition):
        services.order_resume(order=order, actor="op")
    order.refresh_from_db()
    assert order.status == status
    assert not order.events.exists()


@pytest.mark.parametrize("status", [S.ON_HOLD, S.REVIEW])
def test_resume_sends_held_and_reviewed_orders_back_to_fulfilment(make_order, status, enqueued):
    order = services.order_resume(order=make_order(status), actor="op")
    assert order.status == S.PAID
