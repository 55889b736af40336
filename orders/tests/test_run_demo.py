"""`make run`'s runner stops everything it started on Ctrl-C, in under 5 s (issue #7).

Ctrl-C in a terminal sends SIGINT to the foreground process group: bin/run-demo alone, since
it starts each of its processes in a group of its own. Before the fix it sent TERM to the
cluster's whole group, the sentinel started new workers, and the stop took the 10 s KILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings

pytestmark = pytest.mark.cluster

ROOT = Path(settings.BASE_DIR)
DEMO_PORTS = (8000, 8001, 8002, 8003, 8004)


def _port_busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _marked_pids(marker: str) -> list[int]:
    """Every live process whose environment carries our marker: the demo and all it started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"RUN_DEMO_TEST={marker}".encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_ctrl_c_stops_the_whole_demo_in_under_5_seconds(tmp_path):
    busy = [port for port in DEMO_PORTS if _port_busy(port)]
    if busy:
        if os.environ.get("CI") == "true":
            pytest.fail(f"ports {busy} are taken: the demo cannot start")
        pytest.skip(f"ports {busy} are taken (is `make run` running?)")
    marker = uuid.uuid4().hex
    env = {**os.environ, "RUN_DEMO_TEST": marker, "DATABASE_URL": "", "REDIS_URL": "",
           "SQLITE_PATH": str(tmp_path / "demo.sqlite3"), "TELEGRAM_BOT_TOKEN": "",
           "PY": sys.executable}
    subprocess.run([env["PY"], "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    log = open(tmp_path / "run-demo.log", "wb")
    demo = subprocess.Popen(["bash", "bin/run-demo"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get("http://127.0.0.1:8000/terms/", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or demo.poll() is not None:
                pytest.fail("the demo did not come up:\n"
                            + (tmp_path / "run-demo.log").read_text(errors="replace"))
            time.sleep(0.2)
        while b"running." not in (tmp_path / "run-demo.log").read_bytes():  # the cluster is up
            if time.monotonic() > deadline:
                pytest.fail("the cluster did not start")
            time.sleep(0.2)
        started = len(_marked_pids(marker))
        assert started >= 8  # runner, supplier, 3 payment fakes, web, cluster and its workers

        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        stopping = time.monotonic()
        while _marked_pids(marker) and time.monotonic() - stopping < 15:
            time.sleep(0.05)
        took = time.monotonic() - stopping
        left = _marked_pids(marker)
    finally:
        for pid in _marked_pids(marker):
            os.kill(pid, signal.SIGKILL)
    assert left == []
    assert took < 5, f"stopping took {took:.1f}s"
