"""Leases: which worker is working on a paid order right now, and until when.

A worker takes an order's lease before it acts on it and renews it every few seconds while it
works (a background thread, see LeaseKeeper), so a worker that is killed or stalls loses the
order within FULFILMENT_LEASE_SECONDS and the recovery sweep hands it to another worker. The
lease is about liveness only: every status move is still a compare-and-set on the status
(orders.transitions), so two workers that both believe they hold an order cannot both move it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from orders.models import Order

logger = logging.getLogger(__name__)

# The owner the recovery sweep writes when it enqueues an order: it keeps the next sweeps from
# enqueueing the order again while its task waits in the queue, and any worker may take it over.
DISPATCHED = "dispatched"


def lease_seconds() -> float:
    return float(settings.FULFILMENT_LEASE_SECONDS)


def lease_owner_new() -> str:
    """A name for one worker's hold on one order: host and pid say who, to operators too."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def lease_free(now: datetime) -> Q:
    """Orders nobody holds at `now`: never leased, released, or the holder stopped renewing."""
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def order_lease_acquire(*, order_id: int, owner: str) -> bool:
    """Take the order's lease unless a live worker holds it; True when `owner` holds it now."""
    now = timezone.now()
    taken = Order.objects.filter(pk=order_id).filter(
        lease_free(now) | Q(lease_owner=owner) | Q(lease_owner=DISPATCHED)
    ).update(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds()))
    return taken == 1


def order_lease_renew(*, order_id: int, owner: str) -> bool:
    """Extend our lease; False when it was lost (expired and taken by another worker)."""
    until = timezone.now() + timedelta(seconds=lease_seconds())
    return Order.objects.filter(pk=order_id, lease_owner=owner).update(lease_until=until) == 1


class LeaseLost(Exception):
    """This worker's lease passed to another worker: it must not act on the order again."""


def order_lease_release(*, order_id: int, owner: str) -> None:
    """Give the order back, so the recovery sweep may hand it out as soon as it is due."""
    Order.objects.filter(pk=order_id, lease_owner=owner).update(lease_owner="", lease_until=None)


def order_lease_dispatch(*, order_id: int, now: datetime) -> bool:
    """Mark a free, due order as handed to the queue; True when this caller should enqueue it."""
    until = now + timedelta(seconds=float(settings.FULFILMENT_DISPATCH_SECONDS))
    marked = Order.objects.filter(pk=order_id).filter(lease_free(now)).update(
        lease_owner=DISPATCHED, lease_until=until)
    return marked == 1


class LeaseKeeper:
    """Keeps one lease renewed for as long as its holder makes progress.

    The holder says, before each step that may block (a supplier call, a sleep), how long the
    step may take (`expect`). Past that, the lease is no longer renewed: a worker stuck in a
    call or stopped by the OS loses the order within one lease, instead of holding it for ever.
    One thread per process renews every started keeper (`_Renewer`), in one UPDATE per tick,
    however many orders the process drives at once.
    """

    # Added to every expected step: scheduling, a slow database write.
    MARGIN_SECONDS = 2.0

    def __init__(self, *, order_id: int, owner: str) -> None:
        self.order_id = order_id
        self.owner = owner
        self.lost = False
        self._progress_deadline = time.monotonic() + lease_seconds()

    def expect(self, seconds: float) -> None:
        """The holder's promise: it checks in again within `seconds` (plus a margin)."""
        self._progress_deadline = time.monotonic() + max(seconds, 0) + self.MARGIN_SECONDS

    def stalled(self) -> bool:
        return time.monotonic() > self._progress_deadline

    def holds(self) -> bool:
        """Whether the lease is still this holder's, renewed now (False once another worker took it)."""
        return not self.lost and order_lease_renew(order_id=self.order_id, owner=self.owner)

    def start(self) -> None:
        if settings.FULFILMENT_LEASE_HEARTBEAT:
            _renewer.add(self)

    def stop(self) -> None:
        _renewer.discard(self)


class _Renewer:
    """The process's lease-renewing thread: started with the first keeper, ends with the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keepers: set[LeaseKeeper] = set()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def add(self, keeper: LeaseKeeper) -> None:
        with self._lock:
            self._keepers.add(keeper)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-renewer",
                                                daemon=True)
                self._thread.start()

    def discard(self, keeper: LeaseKeeper) -> None:
        with self._lock:
            self._keepers.discard(keeper)

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    self._wake.wait(max(lease_seconds() / 3, 0.2))
                    keepers = list(self._keepers)
                    if not keepers:
                        self._thread = None
                        return
                try:
                    self._renew(keepers)
                except Exception:
                    # A database hiccup: the next tick tries again; leases outlive a tick.
                    logger.exception("lease renewal failed")
                    connections.close_all()
        finally:
            # This thread's own database connection; Django opens one per thread.
            connections.close_all()

    def _renew(self, keepers: list[LeaseKeeper]) -> None:
        live = []
        for keeper in keepers:
            if keeper.stalled():
                logger.warning("lease %s on order %s: the worker is stalled; letting the "
                               "lease lapse so another worker takes over",
                               keeper.owner, keeper.order_id)
                self.discard(keeper)
            else:
                live.append(keeper)
        if not live:
            return
        held = Q(pk__in=[])
        for keeper in live:
            held |= Q(pk=keeper.order_id, lease_owner=keeper.owner)
        until = timezone.now() + timedelta(seconds=lease_seconds())
        if Order.objects.filter(held).update(lease_until=until) == len(live):
            return
        still = set(Order.objects.filter(held).values_list("pk", "lease_owner"))
        for keeper in live:
            if (keeper.order_id, keeper.owner) not in still:
                keeper.lost = True
                logger.warning("lease %s on order %s was lost", keeper.owner, keeper.order_id)
                self.discard(keeper)


_renewer = _Renewer()
