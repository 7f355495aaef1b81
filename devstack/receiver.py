"""An HTTP receiver of webhooks on a free loopback port: it records every request (its
headers, body and arrival time) and answers what its `answer` says, so a test can play a
CRM that is up, down, or down only for first attempts.

Runs on a thread of the caller's process (the test's), so the workers it hears from are
separate processes, as in production.
"""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .waiting import StackError


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    status: int  # what the receiver answered

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """`answer(request, earlier)` says the status for each request (`earlier`: the
    requests that came before it); 204 for every one unless told otherwise."""

    answer: Callable[["Received", list["Received"]], int] = lambda request, earlier: 204
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._record(headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads `received`, not a log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks"

    def _record(self, headers: dict[str, str], body: bytes) -> int:
        with self._changed:
            earlier = list(self.received)
            pending = Received(headers, body, time.monotonic(), 0)
            status = self.answer(pending, earlier)
            self.received.append(Received(pending.headers, pending.body, pending.at, status))
            self._changed.notify_all()
            return status

    def wait_for(self, condition: Callable[[list[Received]], bool], timeout: float) -> None:
        """Until `condition(received)` holds; StackError with what arrived after `timeout`."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(list(self.received)), timeout):
                seen = [(r.event.get("type"), r.webhook_id, r.status) for r in self.received]
                raise StackError(f"the receiver did not get what was awaited; it got {seen}")

    def delivered(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self._changed:
            return [r for r in self.received if 200 <= r.status < 300]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
