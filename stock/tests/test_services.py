"""stock.services: balance readings, the low-balance alert once per crossing, held orders resumed."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from orders.models import Order, OrderEvent
from orders.models import OrderStatus as S
from stock import services
from stock.models import BalanceAlert, BalanceReading, BalanceThreshold
from stock.tests.conftest import OPERATORS_CHAT

pytestmark = pytest.mark.django_db(transaction=True)


def alerts_sent(fake) -> list[str]:
    return [message.text or "" for message in fake.bot_messages(OPERATORS_CHAT)]


# --- readings ------------------------------------------------------------------------------


def test_a_reading_records_the_balance_and_the_recent_spending(supplier, make_order, settings):
    supplier.set_balance("100.00")
    now = timezone.now()
    for hours_ago in (1, 5, 23):
        make_order(S.DELIVERED, delivered_at=now - timedelta(hours=hours_ago))  # cost 8.25 each
    make_order(S.DELIVERED, delivered_at=now - timedelta(hours=25))  # outside the window
    make_order(S.PROCESSING)  # not delivered
    for other in ({"cost_currency": "EUR"}, {"supplier_code": "other"}):
        order = make_order(S.DELIVERED, delivered_at=now - timedelta(hours=1))
        Order.objects.filter(pk=order.pk).update(**other)

    reading = services.balance_check()

    assert reading.ok and reading.supplier_code == "sandbox"
    assert (reading.amount, reading.currency) == (Decimal("100.00"), "USD")
    assert (reading.spent_in_window, reading.window_hours) == (Decimal("24.75"), 24)
    threshold = BalanceThreshold.objects.get()
    assert (threshold.amount, threshold.currency, threshold.is_low) == (Decimal("50.00"), "USD", False)


def test_a_supplier_error_is_recorded_and_not_raised(supplier, settings):
    settings.SUPPLIER_API_KEY = "wrong"
    reading = services.balance_check()
    assert not reading.ok
    assert reading.amount is None
    assert reading.error_code == "unauthorized"
    supplier.stop()
    reading = services.balance_check()
    assert (reading.ok, reading.error_code) == (False, "connect_failed")
    assert BalanceReading.objects.count() == 2
    assert not BalanceThreshold.objects.exists()  # nothing to judge without an amount
    assert not BalanceAlert.objects.exists()


def test_old_readings_are_pruned_but_the_last_good_one_is_kept(supplier, settings):
    settings.SUPPLIER_BALANCE_HISTORY_DAYS = 7
    old = timezone.now() - timedelta(days=8)
    good = BalanceReading.objects.create(supplier_code="sandbox", checked_at=old,
                                         amount=Decimal("5.00"), currency="USD")
    BalanceReading.objects.create(supplier_code="sandbox", checked_at=old - timedelta(days=1),
                                  amount=Decimal("6.00"), currency="USD")
    BalanceReading.objects.create(supplier_code="other", checked_at=old,
                                  amount=Decimal("7.00"), currency="USD")
    settings.SUPPLIER_API_KEY = "wrong"
    services.balance_check()  # fails: the old good reading is still the last good one
    assert set(BalanceReading.objects.filter(supplier_code="sandbox", ok=True)
               .values_list("pk", flat=True)) == {good.pk}
    settings.SUPPLIER_API_KEY = supplier.api_key
    fresh = services.balance_check()
    assert set(BalanceReading.objects.filter(supplier_code="sandbox", ok=True)
               .values_list("pk", flat=True)) == {fresh.pk}
    assert BalanceReading.objects.filter(supplier_code="other").count() == 1  # not ours to prune


# --- the low-balance alert -----------------------------------------------------------------


def test_the_alert_fires_once_per_crossing_across_repeated_checks(supplier, operators_chat):
    supplier.set_balance("80.00")
    services.balance_check()
    assert alerts_sent(operators_chat) == []

    supplier.set_balance("49.99")
    for _ in range(3):
        services.balance_check()
    sent = alerts_sent(operators_chat)
    assert len(sent) == 1
    assert "balance is low: 49.99 USD, under the threshold of 50.00 USD" in sent[0]
    threshold = BalanceThreshold.objects.get()
    assert threshold.is_low and threshold.crossed_at is not None

    # Back over the threshold but not over the re-arm level (50 + 10 %): still the same crossing.
    supplier.set_balance("54.00")
    services.balance_check()
    supplier.set_balance("45.00")
    services.balance_check()
    assert len(alerts_sent(operators_chat)) == 1

    supplier.set_balance("55.00")  # the re-arm level: restored, once
    services.balance_check()
    services.balance_check()
    sent = alerts_sent(operators_chat)
    assert len(sent) == 2 and "balance restored: 55.00 USD" in sent[1]

    supplier.set_balance("10.00")  # a new crossing: a new alert
    services.balance_check()
    assert len(alerts_sent(operators_chat)) == 3
    assert list(BalanceAlert.objects.order_by("id").values_list("kind", "outcome")) == [
        ("low", "sent"), ("restored", "sent"), ("low", "sent")]
    first = BalanceAlert.objects.order_by("id").first()
    assert first is not None and first.chat_id == str(OPERATORS_CHAT) and first.message_id


def test_concurrent_checks_alert_once(supplier, operators_chat):
    supplier.set_balance("20.00")
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def check() -> None:
        try:
            start.wait()
            services.balance_check()
        except BaseException as exc:  # reported below, with the thread's own error
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert BalanceReading.objects.count() == 6
    assert BalanceAlert.objects.count() == 1
    assert len(alerts_sent(operators_chat)) == 1


def test_an_older_reading_judged_late_does_not_overrule_a_newer_one(supplier, operators_chat):
    supplier.set_balance("200.00")
    newer = services.balance_check()
    older = BalanceReading.objects.create(
        supplier_code="sandbox", checked_at=newer.checked_at - timedelta(seconds=30),
        amount=Decimal("10.00"), currency="USD")
    assert services.balance_threshold_judge(reading=older) is None
    assert not BalanceThreshold.objects.get().is_low
    assert alerts_sent(operators_chat) == []


def test_the_threshold_a_manager_set_is_the_one_used(supplier, operators_chat):
    BalanceThreshold.objects.create(supplier_code="sandbox", amount=Decimal("500.00"), currency="USD")
    supplier.set_balance("400.00")
    services.balance_check()
    assert "under the threshold of 500.00 USD" in alerts_sent(operators_chat)[0]


def test_a_threshold_in_another_currency_is_not_compared(supplier, operators_chat):
    BalanceThreshold.objects.create(supplier_code="sandbox", amount=Decimal("50.00"), currency="EUR")
    supplier.set_balance("1.00")
    services.balance_check()
    assert not BalanceThreshold.objects.get().is_low
    assert alerts_sent(operators_chat) == []


def test_without_an_operators_chat_the_alert_is_recorded_not_sent(supplier, operators_chat, settings):
    settings.OPERATORS_CHAT_ID = ""
    supplier.set_balance("1.00")
    services.balance_check()
    alert = BalanceAlert.objects.get()
    assert (alert.kind, alert.outcome) == ("low", "skipped")
    assert operators_chat.calls("sendMessage") == []
    assert BalanceThreshold.objects.get().is_low  # the admin home still shows it


def test_saving_a_threshold_keeps_the_alert_state(supplier):
    supplier.set_balance("1.00")
    services.balance_check()
    stale = BalanceThreshold.objects.get()
    BalanceThreshold.objects.filter(pk=stale.pk).update(is_low=False)  # moved on meanwhile
    stale.amount = Decimal("20.005")
    services.balance_threshold_set(threshold=stale)
    fresh = BalanceThreshold.objects.get()
    assert fresh.amount == Decimal("20.01") and not fresh.is_low


# --- held orders ---------------------------------------------------------------------------


def test_a_covering_reading_resumes_held_orders_at_once(supplier, make_order, fulfilment_jobs):
    later = timezone.now() + timedelta(minutes=5)
    first = make_order(S.ON_HOLD, status_reason="Supplier balance too low", next_action_at=later,
                       paid_at=timezone.now() - timedelta(minutes=3))
    second = make_order(S.ON_HOLD, status_reason="Supplier balance too low", next_action_at=later,
                        paid_at=timezone.now() - timedelta(minutes=2))
    reviewed = make_order(S.REVIEW)
    supplier.set_balance("10.00")  # covers one order of 8.25, not two

    services.balance_check()

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == S.PAID and fulfilment_jobs == [first.pk]
    assert second.status == S.ON_HOLD and second.next_action_at > timezone.now()
    event = first.events.last()
    assert event is not None and event.actor == "balance-check"
    assert event.reason == "Supplier reachable, balance 10.00 USD"
    assert Order.objects.get(pk=reviewed.pk).status == S.REVIEW

    supplier.set_balance("100.00")
    services.balance_check()
    services.balance_check()  # nothing left on hold: nothing resumed twice
    assert fulfilment_jobs == [first.pk, second.pk]
    assert OrderEvent.objects.filter(order=second, to_status=S.PAID).count() == 1


def test_held_orders_stay_held_when_the_supplier_cannot_be_read(supplier, make_order,
                                                                fulfilment_jobs, settings):
    held = make_order(S.ON_HOLD, status_reason="Supplier balance too low")
    settings.SUPPLIER_API_KEY = "wrong"
    services.balance_check()
    assert Order.objects.get(pk=held.pk).status == S.ON_HOLD
    assert fulfilment_jobs == []


def test_a_held_order_resumes_once_when_the_check_and_the_sweeper_race(supplier, make_order,
                                                                       fulfilment_jobs):
    from orders import services as order_services

    held = [make_order(S.ON_HOLD, status_reason="Supplier balance too low",
                       next_action_at=timezone.now() - timedelta(seconds=1)) for _ in range(3)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def run(job) -> None:
        try:
            start.wait()
            job()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    jobs = [services.balance_check, order_services.orders_sweep] * 2
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(fulfilment_jobs) == sorted(order.pk for order in held)
    for order in held:
        assert OrderEvent.objects.filter(order=order, to_status=S.PAID).count() == 1


def test_the_hold_recheck_is_a_setting(supplier, make_order, fulfilment_jobs, settings):
    from orders import services as order_services

    settings.SUPPLIER_HOLD_RECHECK_SECONDS = 42
    supplier.set_balance("1.00")
    held = make_order(S.ON_HOLD, status_reason="Supplier balance too low",
                      next_action_at=timezone.now() - timedelta(seconds=1))
    before = timezone.now()
    order_services.orders_sweep()
    held.refresh_from_db()
    assert held.status == S.ON_HOLD
    assert timedelta(seconds=41) < held.next_action_at - before < timedelta(seconds=44)


def test_the_demo_story_held_for_balance_topped_up_at_the_supplier_then_delivered(
    supplier, operators_chat, catalog, fulfilment_jobs, settings
):
    """An order held for the supplier's balance, the operators alerted, a top-up on the
    supplier's own dashboard, and the next check resumes it; it delivers, and "restored"."""
    import requests

    from orders import services as order_services

    supplier.set_balance("30.00")
    _, info = order_services.recipient_validate(raw="@sandbox_broke")
    order = order_services.order_create(
        channel="web", product=catalog, recipient_input="@sandbox_broke", recipient=info,
        payment_method="sandbox", package_id=catalog.packages.get(quantity=500).pk)
    order = order_services.order_pay_sandbox(order=order)
    assert order_services.order_fulfil(order_id=order.pk).status == S.ON_HOLD

    assert fulfilment_jobs == [order.pk]  # paid
    services.balance_check()  # 30.00 covers 8.25 (and is under the threshold of 50.00)
    assert fulfilment_jobs == [order.pk] * 2  # resumed
    # The wallet reads full enough, but @sandbox_broke is refused until a top-up: held again.
    assert order_services.order_fulfil(order_id=order.pk).status == S.ON_HOLD
    assert len(alerts_sent(operators_chat)) == 1

    answer = requests.post(f"{supplier.url}/_sandbox/", data={"amount": "100.00"}, timeout=5)
    assert answer.status_code == 200 and ">130.00<" in answer.text
    services.balance_check()
    order.refresh_from_db()
    assert order.status == S.PAID and fulfilment_jobs == [order.pk] * 3
    assert order_services.order_fulfil(order_id=order.pk).status == S.DELIVERED
    sent = alerts_sent(operators_chat)
    assert len(sent) == 2 and "balance restored: 130.00 USD" in sent[1]
