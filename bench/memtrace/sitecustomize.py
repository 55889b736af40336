"""tracemalloc snapshots of every Python process started with this directory on PYTHONPATH.

bench/soak.py --tracemalloc puts it there for the shop's processes: each one (and each child
it forks: gunicorn's and django-q2's workers) writes a snapshot to $MEMTRACE_DIR/<pid>-<n>.pickle
every $MEMTRACE_SECONDS, so a growing role's first and last snapshots can be diffed
(``tracemalloc.Snapshot.compare_to``). Tracing starts $MEMTRACE_DELAY seconds after the process
(or fork) starts: imports traced would slow start-up past gunicorn's and the soak's timeouts,
and what grows under load is allocated later anyway. Never on in the shop itself: it costs
CPU and memory.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc

_DIRECTORY = os.environ.get("MEMTRACE_DIR", "")
_SECONDS = float(os.environ.get("MEMTRACE_SECONDS", "60"))
_FRAMES = int(os.environ.get("MEMTRACE_FRAMES", "8"))
_DELAY = float(os.environ.get("MEMTRACE_DELAY", "45"))
# Instead of snapshots: a full garbage collection this often, to tell garbage in reference
# cycles that the collector has not reached yet from memory that is really kept.
_GC_SECONDS = float(os.environ.get("MEMTRACE_GC_SECONDS", "0") or 0)


def _dump_forever() -> None:
    pid, count = os.getpid(), 0
    time.sleep(_DELAY)
    if not tracemalloc.is_tracing():
        tracemalloc.start(_FRAMES)
    while True:
        time.sleep(_SECONDS)
        if os.getpid() != pid:  # a forked child whose thread was not restarted
            return
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (tracemalloc.Filter(False, tracemalloc.__file__),
             tracemalloc.Filter(False, "<frozen importlib._bootstrap>")))
        path = os.path.join(_DIRECTORY, f"{pid}-{count:03d}.pickle")
        snapshot.dump(path + ".part")
        os.replace(path + ".part", path)
        count += 1


def _collect_forever() -> None:
    pid = os.getpid()
    while os.getpid() == pid:
        time.sleep(_GC_SECONDS)
        gc.collect()


def _start() -> None:
    target = _dump_forever if _DIRECTORY else _collect_forever
    threading.Thread(target=target, name="memtrace", daemon=True).start()


if _DIRECTORY or _GC_SECONDS:
    _start()
    # Threads do not survive fork: every forked worker starts its own dumper.
    os.register_at_fork(after_in_child=_start)
