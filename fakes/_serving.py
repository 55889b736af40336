"""What every local fake shares: a threaded HTTP server, running it in a background thread,
and keeping its state in a file across restarts."""

from __future__ import annotations

import json
import os
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Generic, TypeVar


class FakeHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server whose handler threads never keep the process alive."""

    daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def before_stop(self) -> None:
        """Called before shutdown; a fake with sleeping handlers wakes them here."""


ServerT = TypeVar("ServerT", bound=FakeHTTPServer)


class ServingThread(Generic[ServerT]):
    """A fake serving from a daemon thread until stop()."""

    def __init__(self, server: ServerT, *, name: str) -> None:
        self.server = server
        self.url = server.url
        # A short poll interval keeps stop() quick, which matters with one server per test.
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"{name}-{server.server_address[1]}", daemon=True)
        self.thread.start()
        self._stopped = False

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.server.before_stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> ServingThread[ServerT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class StateFile:
    """A fake's state as one JSON file: read once at start, replaced whole after every change.

    Without a path it does nothing and the fake lives in memory only. Each fake says what its
    state is (a JSON object) and calls save() under its own lock, so snapshots never interleave.
    The file is written beside itself and then renamed over, so a fake killed mid-write leaves
    the previous snapshot, never half of one.
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, kind: str) -> None:
        self.path = Path(path) if path else None
        # Which fake the file belongs to, so one fake never starts on another's file.
        self.kind = kind

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is no path or no file yet."""
        if self.path is None or not self.path.exists():
            return None
        saved = json.loads(self.path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict) or saved.get("kind") != self.kind:
            raise ValueError(f"{self.path} does not hold the state of a fake {self.kind}")
        state: dict[str, Any] = saved["state"]
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` atomically; call it with the fake's lock held."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.tmp")
        temporary.write_text(json.dumps({"kind": self.kind, "state": state}), encoding="utf-8")
        os.replace(temporary, self.path)
