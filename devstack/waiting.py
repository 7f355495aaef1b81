"""Waiting with a deadline, and what is said on giving up.

`wait_until` polls what no event announces to an outsider (a port answering, a process
exiting); `Signal` wakes coroutines when something that may have changed their
condition happened (a frame arrived, a socket closed); `run_blocking` lets code that
cannot await (the browser tests under sync Playwright, health checks) wait for a
coroutine. Giving up raises `StackError` with the state at that moment (a log tail,
the frames seen), never a bare timeout.
"""

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 60


class StackError(RuntimeError):
    """Something the stack needs did not happen in time or did not work; the message
    says what, with the state at the moment of giving up."""


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str | Callable[[], str]
) -> None:
    """Poll `condition` until it holds. `what` may be a function: it is called on giving
    up, so a log it shows is the log as it was then."""
    __tracebackhide__ = True  # pytest: the failure is the caller's line
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise StackError(f"gave up after {timeout:.0f}s waiting for {described}")
        time.sleep(POLL_INTERVAL)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, read now."""
    if not path.exists():
        return f"({path.name}: no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Signal:
    """Wakes every coroutine waiting on it whenever `notify()` is called (from the same
    event loop); each re-checks its own condition."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future] = set()

    def notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait_for(self, condition: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until `condition()` holds (True), or until `timeout` seconds passed
        (False); None waits as long as it takes."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not condition():
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            waiter = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait([waiter], timeout=remaining)
            finally:
                self._waiters.discard(waiter)
        return True


@functools.cache
def _background_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="devstack loop", daemon=True).start()
    return loop


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the stack's own event loop (a daemon thread, started once) and
    wait for its result here. For callers that cannot await: sync tests, whose thread
    may even be running another loop (sync Playwright's). Whatever the coroutine opens
    (a socket and its reader) stays on that loop and keeps being served between calls.
    """
    return asyncio.run_coroutine_threadsafe(coroutine, _background_loop()).result()
