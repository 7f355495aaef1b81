"""The tasks a piece of code starts: the busiest paths must start none per message
(each is a few microseconds of the worker's CPU, thousands of times a second)."""

import asyncio
import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def started_tasks() -> Iterator[list[str]]:
    """Inside the block, the running loop records the name of each task's coroutine."""
    loop = asyncio.get_running_loop()
    started: list[str] = []
    previous = loop.get_task_factory()

    def recorded(loop, coro, **kwargs):
        started.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(recorded)
    try:
        yield started
    finally:
        loop.set_task_factory(previous)
