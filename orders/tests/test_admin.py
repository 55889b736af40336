"""The operator's console: pages render, orders are read-only, actions go through services."""

import pytest
from django.urls import reverse

from orders.models import Order, OrderEvent
from orders.models import OrderStatus as S


@pytest.fixture
def jobs(monkeypatch):
    recorded: list[tuple[str, int]] = []
    monkeypatch.setattr("orders.queue.enqueue_fulfilment", lambda pk: recorded.append(("fulfil", pk)))
    monkeypatch.setattr("orders.queue.enqueue_refund", lambda pk: recorded.append(("refund", pk)))
    return recorded


def test_order_pages_render_with_timeline(admin_client, make_order):
    order = make_order(S.PAID)
    OrderEvent.objects.create(order=order, from_status=S.AWAITING_PAYMENT, to_status=S.PAID,
                              actor="payment:sandbox", reason="Payment confirmed by sandbox")
    changelist = admin_client.get(reverse("admin:orders_order_changelist"))
    assert changelist.status_code == 200 and order.reference in changelist.content.decode()
    change = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))
    body = change.content.decode()
    assert change.status_code == 200
    assert "Payment confirmed by sandbox" in body
    assert 'name="status"' not in body  # status is read-only: only services move it


@pytest.mark.parametrize("query", ["ORD-", "100000001", "sandbox_ok"])
def test_order_search(admin_client, make_order, query):
    order = make_order(S.DELIVERED)
    term = order.reference if query == "ORD-" else query
    response = admin_client.get(reverse("admin:orders_order_changelist"), {"q": term})
    assert order.reference in response.content.decode()


def test_order_filters(admin_client, make_order):
    delivered, held = make_order(S.DELIVERED), make_order(S.ON_HOLD)
    response = admin_client.get(reverse("admin:orders_order_changelist"),
                                {"status__exact": S.ON_HOLD, "channel__exact": "web"})
    body = response.content.decode()
    assert held.reference in body and delivered.reference not in body


def test_orders_cannot_be_added_or_deleted(admin_client, make_order):
    order = make_order(S.PAID)
    assert admin_client.get(reverse("admin:orders_order_add")).status_code == 403
    assert admin_client.get(reverse("admin:orders_order_delete", args=[order.pk])).status_code == 403


def test_resume_action_uses_the_service(admin_client, make_order, jobs, django_capture_on_commit_callbacks):
    held, delivered = make_order(S.ON_HOLD), make_order(S.DELIVERED)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
        reverse("admin:orders_order_changelist"),
            {"action": "resume_fulfilment", "_selected_action": [held.pk, delivered.pk]},
            follow=True,
        )
    assert response.status_code == 200
    held.refresh_from_db()
    delivered.refresh_from_db()
    assert held.status == S.PAID and delivered.status == S.DELIVERED
    event = OrderEvent.objects.get(order=held)
    assert event.actor == "admin:admin" and event.to_status == S.PAID
    assert jobs == [("fulfil", held.pk)]


def test_refund_action(admin_client, make_order, jobs, django_capture_on_commit_callbacks):
    review = make_order(S.REVIEW)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:orders_order_changelist"),
                          {"action": "start_refund", "_selected_action": [review.pk]})
    review.refresh_from_db()
    assert review.status == S.REFUND_PENDING
    assert jobs == [("refund", review.pk)]


def test_cancel_action_only_touches_unpaid(admin_client, make_order, jobs):
    unpaid, paid = make_order(S.AWAITING_PAYMENT), make_order(S.PAID)
    admin_client.post(reverse("admin:orders_order_changelist"),
                      {"action": "cancel_unpaid", "_selected_action": [unpaid.pk, paid.pk]})
    assert Order.objects.get(pk=unpaid.pk).status == S.CANCELLED
    assert Order.objects.get(pk=paid.pk).status == S.PAID


def test_catalog_admin_pages(admin_client, catalog):
    for name in ("admin:shop_product_changelist", "admin:shop_package_changelist",
                 "admin:shop_supplier_changelist", "admin:orders_supplierattempt_changelist",
                 "admin:orders_payment_changelist", "admin:orders_paymentevent_changelist",
                 "admin:orders_paymentinvoice_changelist"):
        assert admin_client.get(reverse(name)).status_code == 200
    assert admin_client.get(reverse("admin:shop_product_change", args=[catalog.pk])).status_code == 200
