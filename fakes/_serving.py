"""What every local fake shares: a threaded HTTP server and running it in a background thread."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Generic, TypeVar


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
