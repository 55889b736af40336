"""bench/soak.py's bookkeeping: roles by process tree across recycling, windows, growth verdict."""

from __future__ import annotations

import os

import pytest

from bench import soak
from bench.soak import Instance, Roles, role_summary, slope_per_minute, windows

GUNICORN, QCLUSTER, RUNBOT, LOADER, SUPPLIER = 100, 200, 300, 400, 500
SENTINEL = 201


def roles_for_tree() -> Roles:
    return Roles(gunicorn=GUNICORN, qcluster=QCLUSTER, runbot=RUNBOT, loader=LOADER,
                 supplier=SUPPLIER, q_workers=2)


def tree(*sentinel_children: int, web: tuple[int, ...] = (101, 102)) -> dict[int, int]:
    parents = {GUNICORN: 1, QCLUSTER: 1, RUNBOT: 1, LOADER: 1, SUPPLIER: 1, SENTINEL: QCLUSTER}
    parents.update({pid: GUNICORN for pid in web})
    parents.update({pid: SENTINEL for pid in sentinel_children})
    return parents


def test_the_sentinels_children_are_workers_then_monitor_then_pusher():
    roles = roles_for_tree()
    assert not roles.sentinel_ready(tree(202, 203))
    assert roles.sentinel_ready(tree(202, 203, 204, 205))
    found = roles.classify(tree(202, 203, 204, 205))
    assert found[GUNICORN] == "gunicorn master" and found[101] == found[102] == "web worker"
    assert found[QCLUSTER] == "qcluster main" and found[SENTINEL] == "qcluster sentinel"
    assert [found[pid] for pid in (202, 203, 204, 205)] == [
        "qcluster worker", "qcluster worker", "qcluster monitor", "qcluster pusher"]
    assert found[RUNBOT] == "runbot" and found[LOADER] == "order loader"


def test_a_new_child_of_the_sentinel_is_a_recycled_worker_or_the_missing_helper(monkeypatch):
    roles = roles_for_tree()
    monkeypatch.setattr(soak, "proc_memory", lambda pid: (50 * 1024, 60 * 1024))
    monkeypatch.setattr(soak, "proc_parents", lambda: tree(202, 203, 204, 205))
    roles.sample(0.0)
    # Worker 202 recycled: 206 replaces it, after the monitor and pusher by pid.
    monkeypatch.setattr(soak, "proc_parents", lambda: tree(203, 204, 205, 206, web=(101, 103)))
    sample = roles.sample(5.0)
    assert roles.instances[206].role == "qcluster worker"
    assert roles.instances[202].gone and roles.instances[102].gone
    assert roles.instances[103].role == "web worker"
    assert sample["roles"]["qcluster worker"]["n"] == 2
    # The monitor died and came back as 207.
    monkeypatch.setattr(soak, "proc_parents", lambda: tree(203, 205, 206, 207, web=(101, 103)))
    roles.sample(10.0)
    assert roles.instances[207].role == "qcluster monitor"
    assert os.getpid() in roles.fixed


def test_windows_of_ten_minutes_and_of_a_short_run():
    assert windows(600) == ((60.0, 120.0), (540.0, 600.0), 120.0)
    assert windows(120) == ((30.0, 60.0), (90.0, 120.0), 60.0)


def test_slope_in_mb_per_minute():
    assert slope_per_minute([(t, 100 + t / 60) for t in range(0, 300, 5)]) == pytest.approx(1.0)
    assert slope_per_minute([(0, 1.0), (5, 1.0)]) is None


def _samples(role: str, rss_at) -> list[dict]:
    return [{"t": t, "load": 0.0, "roles": {role: {"n": 1, "rss_mb": rss_at(t), "rss_max_mb": rss_at(t),
                                            "threads_max": 3, "fds_max": 9}}}
            for t in range(0, 601, 5)]


def test_a_flat_role_does_not_grow_and_a_leaking_one_does():
    flat = Instance(pid=1, role="runbot", first=0, last=600, hwm_mb=101.0)
    flat.samples = [(t, 100.0 + (t % 10) / 10) for t in range(0, 601, 5)]
    summary = role_summary("runbot", _samples("runbot", lambda t: 100.0 + (t % 10) / 10), [flat], 600)
    assert not summary["grows"] and summary["peak_mb"] == 101.0
    assert summary["life_slope_mb_per_min"] == pytest.approx(0.0)

    leak = Instance(pid=2, role="runbot", first=0, last=600, hwm_mb=120.0)
    leak.samples = [(t, 100.0 + t / 30) for t in range(0, 601, 5)]
    summary = role_summary("runbot", _samples("runbot", lambda t: 100.0 + t / 30), [leak], 600)
    assert summary["grows"] and summary["slope_mb_per_min"] == pytest.approx(2.0)
    assert summary["growth_mb"] == pytest.approx(16.0, abs=0.2)
