"""The admin home's problem queues: counts from one selector, each linking to exactly its orders."""

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from orders import selectors
from orders.models import Order, Payment
from orders.models import OrderStatus as S
from orders.tests.conftest import catalog, make_order  # noqa: F401  (fixtures)
from reseller.admin_site import problem_queues

pytestmark = pytest.mark.django_db

HOME = reverse("admin:index")


@pytest.fixture
def queued_orders(make_order):
    """Orders in every status, plus the cases that tell the queues apart."""
    now = timezone.now()
    long_ago, just_now = now - timedelta(minutes=30), now - timedelta(minutes=2)
    for status in S.values:
        make_order(status)  # one of each, no reason and never paid
    make_order(S.ON_HOLD, status_reason=selectors.HOLD_REASON_BALANCE)
    make_order(S.ON_HOLD, status_reason=selectors.HOLD_REASON_BALANCE)
    make_order(S.ON_HOLD, status_reason=selectors.HOLD_REASON_CREDENTIALS)
    make_order(S.REVIEW, status_reason="Payment received after the order was expired")
    make_order(S.REVIEW, status_reason="Payment received after the order was cancelled; Underpaid")
    make_order(S.REVIEW, status_reason="Underpaid: received 1 USD, due 8.50 USD")
    make_order(S.PAID, paid_at=long_ago)
    make_order(S.SUBMITTING, paid_at=long_ago)
    make_order(S.PROCESSING, paid_at=long_ago)
    make_order(S.PAID, paid_at=just_now)  # still within the minutes allowed
    make_order(S.UNKNOWN, paid_at=long_ago)  # its own queue, not counted as undelivered
    make_order(S.DELIVERED, paid_at=long_ago)
    paid = make_order(S.DELIVERED, paid_at=long_ago)
    refunded = make_order(S.REFUNDED, paid_at=long_ago)
    excess_returned = make_order(S.DELIVERED, paid_at=long_ago)
    for order, excess, status in [(paid, 150, Payment.Status.CONFIRMED),
                                  (paid, 0, Payment.Status.CONFIRMED),
                                  (paid, 40, Payment.Status.CONFIRMED),  # same order: counted once
                                  (refunded, 90, Payment.Status.REFUNDED),
                                  (excess_returned, 70, Payment.Status.CONFIRMED)]:
        Payment.objects.create(order=order, provider="sandbox", provider_reference=uuid.uuid4().hex,
                               amount=Decimal("9.00"), currency="USD", excess_minor=excess,
                               status=status)
    # Its excess went back on its own (Payment.excess_refunded_at): nothing owed any more.
    Payment.objects.filter(order=excess_returned).update(excess_refunded_at=now,
                                                         excess_refund_reference="by hand 1")


# By hand from the fixture above: one of each status plus the extra rows.
EXPECTED = {
    "on_hold": 1 + 3, "on_hold_balance": 2, "on_hold_credentials": 1, "on_hold_other": 1,
    "unknown": 1 + 1, "review": 1 + 3, "late_payments": 2, "failed_awaiting_refund": 2,
    "paid_undelivered": 3, "overpaid": 1,
}


def counts_dict(counts: selectors.ProblemQueueCounts) -> dict[str, int]:
    return {name: getattr(counts, name) for name in EXPECTED}


def test_counts_match_a_hand_count(queued_orders):
    assert Order.objects.count() == len(S.values) + 15
    assert counts_dict(selectors.problem_queue_counts(undelivered_minutes=10)) == EXPECTED


def test_counts_take_one_query_however_many_orders(queued_orders, django_assert_num_queries):
    with django_assert_num_queries(1):
        selectors.problem_queue_counts(undelivered_minutes=10)


def test_the_undelivered_queue_follows_the_minutes(queued_orders):
    assert selectors.problem_queue_counts(undelivered_minutes=1).paid_undelivered == 4
    assert selectors.problem_queue_counts(undelivered_minutes=60).paid_undelivered == 0


def test_each_link_lists_exactly_the_counted_rows(queued_orders, admin_client):
    queues = problem_queues(selectors.problem_queue_counts(undelivered_minutes=10),
                            undelivered_minutes=10)
    assert len(queues) == len(EXPECTED)
    for queue in queues:
        response = admin_client.get(queue.url)
        assert response.status_code == 200, queue.label
        assert response.context["cl"].result_count == queue.count, queue.label


def test_the_home_shows_the_queues_to_an_operator(queued_orders, client, django_user_model):
    operator = django_user_model.objects.create_user(username="olga", is_staff=True)
    operator.groups.add(Group.objects.get(name="Operators"))
    client.force_login(operator)
    body = client.get(HOME).content.decode()
    assert "Problem queues" in body
    rows = dict(re.findall(r'<a href="[^"]*">([^<]+)</a></th>\s*<td class="queue-count">'
                           r'(?:<strong>)?(\d+)', body))
    assert rows["On hold: supplier balance too low"] == "2"
    assert rows["On hold: supplier rejected our credentials"] == "1"
    assert rows["Late payments (in review)"] == "2"
    assert rows["Paid, not delivered after 10 minutes"] == "3"
    assert rows["On hold: other reasons"] == "1"
    assert rows["Overpaid: excess to refund"] == "1"
    assert "?queue=on_hold_balance" in body


def test_the_minutes_come_from_the_setting(queued_orders, admin_client, settings):
    settings.CONSOLE_UNDELIVERED_MINUTES = 1
    body = admin_client.get(HOME).content.decode()
    assert re.search(r"Paid, not delivered after 1 minutes</a></th>\s*<td class=\"queue-count\">"
                     r"<strong>4<", body)


def test_staff_without_order_access_see_no_queues(client, django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk", is_staff=True)
    client.force_login(clerk)
    response = client.get(HOME)
    assert response.status_code == 200
    assert "Problem queues" not in response.content.decode()


def test_the_home_template_has_no_inline_script_or_style():
    text = (django_settings.BASE_DIR / "templates" / "admin" / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", text)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", text)
