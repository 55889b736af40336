"""A real `manage.py qcluster` in a subprocess, for the cluster and recovery tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from orders import services
from orders.models import Order
from shop.demo import demo_catalog_load

ROOT = Path(settings.BASE_DIR)


def database_env() -> dict[str, str]:
    """The environment that points a subprocess at this test database."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return {"SQLITE_PATH": str(db["NAME"]), "DATABASE_URL": ""}
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or "5432"
    return {"DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"}


def cluster_env(supplier_url: str, supplier_api_key: str, **overrides: str) -> dict[str, str]:
    """The environment of a cluster subprocess: this test database, the given sandbox supplier.

    Settings not overridden come from os.environ and, failing that, reseller/settings.py.
    """
    return {
        **os.environ,
        **database_env(),
        "SUPPLIER_BASE_URL": supplier_url,
        "SUPPLIER_API_KEY": supplier_api_key,
        "Q_WORKERS": "2",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


def cluster_test_env(sandbox_supplier, settings, **overrides: str) -> dict[str, str]:
    """This test process and its cluster subprocesses on one sandbox supplier, catalogue and
    schedules, with timings short enough for tests; `overrides` add to the cluster's env."""
    settings.SUPPLIER_BASE_URL = sandbox_supplier.url
    settings.SUPPLIER_API_KEY = sandbox_supplier.api_key
    demo_catalog_load()
    from orders.schedules import schedules_ensure

    schedules_ensure()
    return cluster_env(
        sandbox_supplier.url, sandbox_supplier.api_key,
        SUPPLIER_TIMEOUT="5", FULFILMENT_UNKNOWN_GRACE_SECONDS="1",
        FULFILMENT_POLL_FIRST_DELAY="0.2", Q_TIMEOUT="60", Q_RETRY="90", **overrides,
    )


class Cluster:
    """A `manage.py qcluster` process group we can start, kill -9, stop and start again."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"qcluster-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole group: main process, sentinel and workers die mid-whatever."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the main process only (as a service manager should), KILL what is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers a stop left behind, if any
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:]
                         for p in sorted(self.log_dir.glob("qcluster-*.log")))


def paid_order(recipient: str) -> Order:
    """A Standard 500 order for `recipient`, paid in test mode: its fulfilment is enqueued."""
    product = demo_catalog_load()
    _, info = services.recipient_validate(raw=recipient)
    order = services.order_create(
        channel="web", product=product, recipient_input=recipient, recipient=info,
        payment_method="sandbox", package_id=product.packages.get(quantity=500).pk,
    )
    return services.order_pay_sandbox(order=order)  # enqueues on commit: autocommit here
