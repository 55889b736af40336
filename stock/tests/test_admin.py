"""The console's money-and-stock pages for each role: the home's balance block, "check now",
thresholds (Managers only), and the reconciliation queue (Operators resolve)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone

from stock.models import BalanceReading, BalanceThreshold, ReconciliationMismatch

pytestmark = pytest.mark.django_db

HOME = reverse("admin:index")
CHECK = reverse("admin:stock_balancereading_check")

OPERATOR = {"stock.view_balancereading", "stock.view_balancethreshold", "stock.view_balancealert",
            "stock.view_reconciliationmismatch", "stock.change_reconciliationmismatch"}
MANAGER = OPERATOR | {"stock.add_balancethreshold", "stock.change_balancethreshold"}


@pytest.fixture
def member(client, django_user_model):
    """Log in a staff user who is in the named group."""

    def login(group: str):
        user = django_user_model.objects.create_user(username=group.lower(), is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return user

    return login


@pytest.fixture
def mismatch() -> ReconciliationMismatch:
    return ReconciliationMismatch.objects.create(
        supplier_code="sandbox", day=timezone.localdate() - timedelta(days=1),
        kind=ReconciliationMismatch.Kind.DELIVERED_THERE, reference="ref-1",
        supplier_order_id="SUP-000001", theirs={"status": "completed", "stars": 500})


def stock_codenames(group: str) -> set[str]:
    return {f"stock.{codename}" for codename in Permission.objects.filter(
        group__name=group, content_type__app_label="stock").values_list("codename", flat=True)}


def test_the_migration_gave_each_role_its_permissions():
    assert stock_codenames("Operators") == OPERATOR
    assert stock_codenames("Managers") == MANAGER


# --- the admin home ------------------------------------------------------------------------


def test_the_home_shows_a_low_balance_warning_to_an_operator(client, member, mismatch):
    member("Operators")
    checked = timezone.now() - timedelta(minutes=3)
    BalanceReading.objects.create(supplier_code="sandbox", checked_at=checked, amount=Decimal("12.00"),
                                  currency="USD", spent_in_window=Decimal("24.00"))
    body = client.get(HOME).content.decode()
    warning = re.search(r'<ul class="messagelist" id="low-balance-warning">(.*?)</ul>', body, re.S)
    assert warning is not None
    text = " ".join(warning.group(1).split())
    assert "Supplier sandbox balance is low: 12.00 USD, under the threshold of 50.00 USD." in text
    assert "About 12.0 hours of sales left." in text
    assert f"Checked at {timezone.localtime(checked):%Y-%m-%d %H:%M:%S} UTC." in text
    block = body[body.index('id="supplier-balance"'):]
    assert "<strong>12.00 USD</strong>" in block
    assert re.search(r'class="balance-threshold">50.00 USD<', block)
    assert re.search(r'Reconciliation mismatches \(open\)</a></th>\s*<td class="queue-count">'
                     r"<strong>1</strong>", block)
    assert f'action="{CHECK}"' in block


def test_no_warning_while_the_balance_is_above_the_threshold(client, member):
    member("Operators")
    BalanceReading.objects.create(supplier_code="sandbox", amount=Decimal("500.00"), currency="USD")
    body = client.get(HOME).content.decode()
    assert "low-balance-warning" not in body
    assert "no sales in the window" in body


def test_a_failed_check_is_shown_with_the_last_good_balance(client, member):
    member("Operators")
    BalanceReading.objects.create(supplier_code="sandbox", amount=Decimal("500.00"), currency="USD",
                                  checked_at=timezone.now() - timedelta(minutes=10))
    BalanceReading.objects.create(supplier_code="sandbox", ok=False, error_code="connect_failed")
    body = client.get(HOME).content.decode()
    assert re.search(r'class="balance-error"><strong>connect_failed</strong> \(balance above as of ', body)
    assert "<strong>500.00 USD</strong>" in body


def test_before_any_reading_the_home_says_so(client, member):
    member("Managers")
    assert "The supplier balance has not been read yet." in client.get(HOME).content.decode()


def test_staff_without_stock_access_see_no_balance(client, django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk", is_staff=True)
    client.force_login(clerk)
    BalanceReading.objects.create(supplier_code="sandbox", amount=Decimal("1.00"), currency="USD")
    body = client.get(HOME).content.decode()
    assert "supplier-balance" not in body and "low-balance-warning" not in body


# --- check now -----------------------------------------------------------------------------


def test_an_operator_checks_the_balance_now(client, member, supplier):
    member("Operators")
    response = client.post(CHECK, {"next": "/admin/orders/order/?status__exact=on_hold"})
    assert response.status_code == 302
    assert response.url == "/admin/orders/order/?status__exact=on_hold"
    assert BalanceReading.objects.get().amount == Decimal("1000.00")
    follow = client.get(HOME)
    assert "Supplier balance: 1000.00 USD." in follow.content.decode()


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/", ""])
def test_check_now_goes_back_to_this_site_only(client, member, supplier, next_url):
    member("Operators")
    assert client.post(CHECK, {"next": next_url}).url == HOME


def test_check_now_is_post_only_and_for_staff_with_access(client, member, django_user_model, supplier):
    member("Operators")
    assert client.get(CHECK).status_code == 405
    clerk = django_user_model.objects.create_user(username="clerk", is_staff=True)
    client.force_login(clerk)
    assert client.post(CHECK).status_code == 403
    client.logout()
    assert client.post(CHECK).status_code == 302  # to the login page
    assert not BalanceReading.objects.exists()


def test_check_now_reports_a_supplier_error(client, member, supplier, settings):
    member("Operators")
    settings.SUPPLIER_API_KEY = "wrong"
    client.post(CHECK)
    assert "could not be read: unauthorized" in client.get(HOME).content.decode()


# --- thresholds ----------------------------------------------------------------------------


def threshold_form(amount: str) -> dict[str, str]:
    return {"supplier_code": "sandbox", "amount": amount, "currency": "USD"}


def test_an_operator_sees_but_cannot_set_thresholds(client, member):
    member("Operators")
    threshold = BalanceThreshold.objects.create(supplier_code="sandbox", amount=Decimal("50.00"))
    url = reverse("admin:stock_balancethreshold_change", args=[threshold.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, threshold_form("1.00")).status_code == 403
    assert client.get(reverse("admin:stock_balancethreshold_add")).status_code == 403
    threshold.refresh_from_db()
    assert threshold.amount == Decimal("50.00")


def test_a_manager_sets_a_threshold_and_the_alert_state_stays(client, member):
    member("Managers")
    threshold = BalanceThreshold.objects.create(supplier_code="sandbox", amount=Decimal("50.00"),
                                                is_low=True, crossed_at=timezone.now())
    url = reverse("admin:stock_balancethreshold_change", args=[threshold.pk])
    response = client.post(url, {**threshold_form("75.50"), "supplier_code": "changed"})
    assert response.status_code == 302, response.content.decode()[:2000]
    threshold.refresh_from_db()
    assert threshold.amount == Decimal("75.50")
    assert threshold.supplier_code == "sandbox"  # read-only once added
    assert threshold.is_low and threshold.crossed_at is not None
    assert LogEntry.objects.filter(object_id=str(threshold.pk)).exists()
    added = client.post(reverse("admin:stock_balancethreshold_add"),
                        {**threshold_form("10.00"), "supplier_code": "second"})
    assert added.status_code == 302
    assert BalanceThreshold.objects.get(supplier_code="second").amount == Decimal("10.00")


# --- the reconciliation queue ---------------------------------------------------------------


def test_an_operator_resolves_a_mismatch_with_a_note(client, member, mismatch):
    operator = member("Operators")
    changelist = client.get(reverse("admin:stock_reconciliationmismatch_changelist"),
                            {"resolved__exact": "0"})
    assert changelist.status_code == 200 and "ref-1" in changelist.content.decode()
    url = reverse("admin:stock_reconciliationmismatch_change", args=[mismatch.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"resolved": "on", "note": "Delivered by hand", "reference": "forged",
                                 "kind": "unknown_there"})
    assert response.status_code == 302
    mismatch.refresh_from_db()
    assert mismatch.resolved and mismatch.note == "Delivered by hand"
    assert mismatch.resolved_by == operator and mismatch.resolved_at is not None
    assert (mismatch.reference, mismatch.kind) == ("ref-1", "delivered_there")  # read-only
    assert LogEntry.objects.filter(object_id=str(mismatch.pk), user=operator).exists()


def test_the_bulk_action_resolves_the_open_ones_and_says_so(client, member, mismatch):
    operator = member("Operators")
    done = ReconciliationMismatch.objects.create(
        supplier_code="sandbox", day=mismatch.day, kind=mismatch.kind, reference="ref-2",
        resolved=True)
    response = client.post(reverse("admin:stock_reconciliationmismatch_changelist"), {
        "action": "mark_resolved", "_selected_action": [mismatch.pk, done.pk]}, follow=True)
    body = response.content.decode()
    assert "1 mismatch marked resolved." in body and "1 was resolved already." in body
    mismatch.refresh_from_db()
    assert mismatch.resolved and mismatch.resolved_by == operator
    assert LogEntry.objects.filter(object_id=str(mismatch.pk), change_message="Marked resolved").exists()


def test_nobody_adds_or_deletes_mismatches_or_readings(admin_client, mismatch):
    reading = BalanceReading.objects.create(supplier_code="sandbox", amount=Decimal("1.00"),
                                            currency="USD")
    assert admin_client.get(reverse("admin:stock_reconciliationmismatch_add")).status_code == 403
    assert admin_client.post(reverse("admin:stock_reconciliationmismatch_delete",
                                     args=[mismatch.pk]), {"post": "yes"}).status_code == 403
    assert admin_client.get(reverse("admin:stock_balancereading_add")).status_code == 403
    assert admin_client.post(reverse("admin:stock_balancereading_change", args=[reading.pk]),
                             {"amount": "1000000"}).status_code == 403
    reading.refresh_from_db()
    assert reading.amount == Decimal("1.00")
    assert admin_client.get(reverse("admin:stock_balancealert_changelist")).status_code == 200
