"""The progress bar, and running many setup steps with a bound on how many are in flight."""

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tqdm import tqdm


def bar(description: str, total: float, unit: str = "it") -> tqdm:
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.5,
        disable=None,  # no bar when stderr is not a terminal (CI logs)
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} {unit} "
        "[{elapsed}<{remaining}{postfix}]",
    )


def note(text: str) -> None:
    """A line above the bars."""
    tqdm.write(text, file=sys.stderr)


async def bounded(
    items: Iterable[Any],
    step: Callable[[Any], Awaitable[Any]],
    *,
    limit: int,
    description: str,
    unit: str = "it",
) -> list[Any]:
    """`step(item)` for each item, at most `limit` at a time, in order of the results.
    The first failure cancels the rest and is raised."""
    items = list(items)
    semaphore = asyncio.Semaphore(limit)
    progress = bar(description, len(items), unit)

    async def one(item: Any) -> Any:
        async with semaphore:
            result = await step(item)
            progress.update(1)
            return result

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except ExceptionGroup as errors:
        raise errors.exceptions[0] from None
    finally:
        progress.close()
    return [task.result() for task in tasks]


async def timed_bar(description: str, seconds: float, status: Callable[[], str]) -> None:
    """A bar that fills over `seconds` of wall time, showing `status()`; cancel to stop."""
    progress = bar(description, seconds, "s")
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        while True:
            await asyncio.sleep(0.5)
            progress.n = min(seconds, loop.time() - start)
            progress.set_postfix_str(status(), refresh=False)
            progress.refresh()
    finally:
        progress.close()
