"""Per-worker background loops (the sweeper, a capability's outbox sender): one task per
event loop and name, started once, started again if it ended.

Tests run one event loop per test, so a task is kept per loop: a task of a loop that
has gone is never taken for this loop's.
"""

import asyncio
from collections.abc import Callable, Coroutine

_tasks: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task] = {}


def start_once(name: str, run: Callable[[], Coroutine]) -> None:
    """Start `run()` on the running loop unless a task of that name runs there already."""
    loop = asyncio.get_running_loop()
    task = _tasks.get((loop, name))
    if task is None or task.done():
        _tasks[(loop, name)] = loop.create_task(run(), name=name)
