"""The operator's console: the problem queues' names and the actions an operator takes on orders.

Each action says which orders it is for, what it will do (shown on its confirmation page) and
which service does it; orders/admin.py offers it on the order page and, for the actions that
move a status, on the order list. The services record the operator and their reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy as _

from orders import services
from orders.exceptions import ActionNotApplicable
from orders.models import Order, Payment
from orders.models import OrderStatus as S
from orders.payments import services as payment_services
from orders.transitions import can_transition

# The admin home's and the order list's labels of the problem queues (orders.selectors.QUEUE_NAMES).
QUEUE_LABELS: dict[str, Promise] = {
    "on_hold": _("On hold"),
    "on_hold_balance": _("On hold: supplier balance too low"),
    "on_hold_credentials": _("On hold: supplier rejected our credentials"),
    "on_hold_other": _("On hold: other reasons"),
    "unknown": _("Outcome unknown"),
    "review": _("Needs review"),
    "late_payments": _("Late payments (in review)"),
    "failed_awaiting_refund": _("Failed, awaiting refund"),
    "paid_undelivered": _("Paid, not delivered after %(minutes)s minutes"),
    "overpaid": _("Overpaid: excess to refund"),
}


def queue_label(name: str, *, undelivered_minutes: int) -> str:
    """A queue's label as the operator reads it, with the minutes where it has them."""
    label = str(QUEUE_LABELS[name])
    return label % {"minutes": undelivered_minutes} if "%(minutes)" in label else label


@dataclass(frozen=True)
class ActionInput:
    """What the operator gave on the confirmation page."""

    actor: str
    reason: str
    expected_status: str
    reference: str = ""
    payment: Payment | None = None


@dataclass(frozen=True)
class OrderAction:
    """One thing an operator can do to an order.

    `statuses` are the ones it is offered for (None: it does not depend on the status alone,
    `refusal` decides); `to_status` is where it moves the order (None: it stays).
    """

    name: str
    label: Promise
    explanation: Promise
    perform: Callable[[Order, ActionInput], str]
    statuses: frozenset[str] | None = None
    to_status: str | None = None
    asks_reference: bool = False
    bulk: bool = False
    extra_refusal: Callable[[Order], str] | None = None

    def refusal(self, order: Order) -> str:
        """Why this action does not apply to the order as it is now, or "" when it does."""
        if self.statuses is not None:
            # Both: the state machine also declares moves no operator may make from this
            # button (awaiting payment -> paid is a payment's move, not a "retry").
            allowed = order.status in self.statuses and (
                self.to_status is None or can_transition(order.status, self.to_status))
            if not allowed:
                return gettext("%(order)s is %(status)s: %(action)s applies only to %(allowed)s "
                               "orders.") % {
                    "order": order, "status": order.get_status_display(),
                    "action": self.label, "allowed": statuses_text(self.statuses)}
        return self.extra_refusal(order) if self.extra_refusal else ""

    def applies_to(self, order: Order) -> bool:
        return not self.refusal(order)


def statuses_text(statuses: frozenset[str]) -> str:
    return gettext(" or ").join(sorted(str(S(status).label) for status in statuses))


def owed_excess_payments(order: Order) -> list[Payment]:
    """The order's payments whose excess is still owed back (from a prefetch when there is one)."""
    return [payment for payment in order.payments.all()
            if payment_services.payment_excess_owed(payment)]


# --- What each action does -----------------------------------------------------------------


def _retry(order: Order, given: ActionInput) -> str:
    services.order_resume(order=order, actor=given.actor, reason=given.reason,
                          expected_status=given.expected_status)
    return gettext("%(order)s is back in fulfilment (Paid); a worker places the top-up now.") % {
        "order": order}


def _resolve(order: Order, given: ActionInput) -> str:
    lookup = services.order_unknown_resolve(order=order, actor=given.actor, reason=given.reason)
    if lookup.error:
        return gettext("The supplier lookup of %(order)s failed (%(error)s); the order stays "
                       "Outcome unknown.") % {"order": order, "error": lookup.error}
    if lookup.found is None:
        return gettext("The supplier has no order under %(order)s's key: nothing was placed. The "
                       "order stays Outcome unknown; the worker places it again with the same key "
                       "once it is safe.") % {"order": order}
    return gettext("The supplier has %(order)s as order %(supplier_order)s (%(supplier_status)s); "
                   "the order is now %(status)s.") % {
        "order": order, "supplier_order": lookup.found.order_id,
        "supplier_status": lookup.found.status, "status": lookup.order.get_status_display()}


def _refund(order: Order, given: ActionInput) -> str:
    services.order_refund_start(order=order, actor=given.actor, reason=given.reason,
                                expected_status=given.expected_status)
    return gettext("%(order)s is Refund pending; the refund task returns its payments now.") % {
        "order": order}


def _refund_excess(order: Order, given: ActionInput) -> str:
    if given.payment is None:
        raise ActionNotApplicable(gettext("Choose the payment whose excess went back."))
    payment_services.payment_excess_mark_refunded(
        payment=given.payment, actor=given.actor, reason=given.reason,
        refund_reference=given.reference)
    return gettext("The excess of payment %(payment)s of %(order)s is recorded as refunded "
                   "(%(reference)s).") % {"payment": given.payment, "order": order,
                                          "reference": given.reference}


def _cancel(order: Order, given: ActionInput) -> str:
    services.order_cancel(order=order, actor=given.actor, reason=given.reason)
    return gettext("%(order)s is cancelled.") % {"order": order}


def _mark_refunded(order: Order, given: ActionInput) -> str:
    services.order_mark_refunded(order=order, actor=given.actor, reason=given.reason,
                                 refund_reference=given.reference,
                                 expected_status=given.expected_status)
    return gettext("%(order)s is Refunded (%(reference)s).") % {
        "order": order, "reference": given.reference}


def _resend_notice(order: Order, given: ActionInput) -> str:
    services.order_notice_resend(order=order, actor=given.actor, reason=given.reason,
                                 expected_status=given.expected_status)
    return gettext("The buyer's notice of %(order)s is on its way again.") % {"order": order}


def _excess_refusal(order: Order) -> str:
    if owed_excess_payments(order):
        return ""
    return gettext("%(order)s has no overpayment whose excess is still owed back.") % {
        "order": order}


RETRY = OrderAction(
    "retry", _("Retry fulfilment"),
    _("Send the order back to fulfilment: it moves to Paid and a worker places the top-up "
      "with the supplier, under the order's own idempotency key, so it is never delivered twice."),
    _retry, statuses=frozenset({S.ON_HOLD, S.REVIEW}), to_status=S.PAID, bulk=True)
RESOLVE = OrderAction(
    "resolve", _("Look up at the supplier"),
    _("Ask the supplier now, by the order's idempotency key, what became of it, and apply the "
      "answer (delivered; failed, then refunded; still processing). Nothing new is placed: if "
      "the supplier has no such order, the order stays Outcome unknown."),
    _resolve, statuses=frozenset({S.UNKNOWN}))
REFUND = OrderAction(
    "refund", _("Refund"),
    _("Refund the order: it moves to Refund pending and the refund task returns its payments "
      "through the payment provider. Where the provider cannot refund, the order goes to review "
      "with what to do by hand."),
    _refund, statuses=frozenset({S.ON_HOLD, S.REVIEW, S.FAILED}), to_status=S.REFUND_PENDING,
    bulk=True)
REFUND_EXCESS = OrderAction(
    "refund_excess", _("Refund the overpaid excess"),
    _("Record that the excess of an overpayment went back to the buyer. The order keeps the "
      "rest of the payment and its status."),
    _refund_excess, asks_reference=True, extra_refusal=_excess_refusal)
CANCEL = OrderAction(
    "cancel", _("Cancel"),
    _("Cancel the unpaid order: the buyer can no longer pay it. A payment that still arrives "
      "goes to review."),
    _cancel, statuses=frozenset({S.AWAITING_PAYMENT}), to_status=S.CANCELLED, bulk=True)
MARK_REFUNDED = OrderAction(
    "mark_refunded", _("Mark refunded manually"),
    _("Record that the order was refunded outside the shop (by hand, or in the provider's "
      "dashboard): it moves to Refunded and its payments are marked refunded with your "
      "reference. The shop itself sends no money."),
    _mark_refunded, statuses=frozenset({S.REVIEW, S.REFUND_PENDING}), to_status=S.REFUNDED,
    asks_reference=True, bulk=True, extra_refusal=services.order_mark_refunded_refusal)
RESEND_NOTICE = OrderAction(
    "resend_notice", _("Resend the buyer's notice"),
    _("Send the buyer the notice of the order's status again: the bot's message for a bot "
      "order, the e-mail receipt for a storefront order. It is recorded on the timeline."),
    _resend_notice, statuses=services.NOTICE_RESEND_STATUSES,
    extra_refusal=services.order_notice_refusal)

ACTIONS: dict[str, OrderAction] = {action.name: action for action in (
    RETRY, RESOLVE, REFUND, REFUND_EXCESS, CANCEL, MARK_REFUNDED, RESEND_NOTICE)}


def actions_for(order: Order) -> list[OrderAction]:
    """The actions that apply to the order as it is now: the ones its page offers."""
    return [action for action in ACTIONS.values() if action.applies_to(order)]


# --- The confirmation pages' forms ----------------------------------------------------------


class ActionForm(forms.Form):
    """The operator's reason (and reference, where the action records one) for an action."""

    reason = forms.CharField(
        label=_("Reason"), max_length=255,
        help_text=_("Why: recorded on the order's timeline and in the admin log."),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))
    reference = forms.CharField(
        label=_("Refund reference"), max_length=200, required=False,
        help_text=_("The transfer's or the provider's refund id, as the buyer's money went back."))

    def __init__(self, *args: Any, action: OrderAction, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action = action
        if action.asks_reference:
            self.fields["reference"].required = True
        else:
            del self.fields["reference"]

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(gettext("Say why."))
        return reason


class OrderActionForm(ActionForm):
    """An action on one order: also the status the operator saw, to notice a race."""

    seen_status = forms.ChoiceField(choices=S.choices, widget=forms.HiddenInput)
    payment = forms.TypedChoiceField(label=_("Payment"), coerce=int, required=False)

    def __init__(self, *args: Any, action: OrderAction, payments: Sequence[Payment] = (),
                 **kwargs: Any) -> None:
        super().__init__(*args, action=action, **kwargs)
        if action is REFUND_EXCESS:
            self.payments = {payment.pk: payment for payment in payments}
            payment_field = cast(forms.TypedChoiceField, self.fields["payment"])
            payment_field.required = True
            payment_field.choices = [
                (payment.pk, f"{payment} ({payment.excess_minor} minor units of "
                             f"{payment.currency} over)") for payment in payments]
        else:
            del self.fields["payment"]

    def action_input(self, *, actor: str) -> ActionInput:
        data = self.cleaned_data
        payment_id = data.get("payment")
        return ActionInput(
            actor=actor, reason=data["reason"], expected_status=data["seen_status"],
            reference=data.get("reference", "").strip(),
            payment=self.payments.get(payment_id) if payment_id is not None else None)
