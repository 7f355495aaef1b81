"""Lanes: one socket's frames handled in order per lane, lanes side by side.

Channels hands a consumer one message at a time, its client's frames and its channel's
events alike. An agent with fifty chats sends a message every few tens of milliseconds,
and each waits for the database: handled in line, every `message` meant for that agent
would wait behind the agent's own sends (docs/performance.md, change 10). So an agent's
socket hands each frame about a conversation to that conversation's lane and goes back
to its events. A lane
runs its frames one after another, so frames about one conversation keep their order
(seq order, a close after the sends before it), while frames about different
conversations no longer wait for each other (`AgentConsumer.lane_of`).
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

Job = Callable[[], Awaitable[None]]


class Lanes:
    """The lanes of one socket. `failed` is called with a job's unexpected exception;
    the lane drops the jobs queued behind it (the socket is going down)."""

    def __init__(self, failed: Callable[[BaseException], None]) -> None:
        self.failed = failed
        self.queued: dict[Hashable, deque[Job]] = {}
        self.running: set[asyncio.Task] = set()

    def submit(self, lane: Hashable, job: Job) -> None:
        """Run `job` after the jobs already in `lane`."""
        queue = self.queued.get(lane)
        if queue is not None:
            queue.append(job)
            return
        self.queued[lane] = deque((job,))
        task = asyncio.ensure_future(self._run(lane))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _run(self, lane: Hashable) -> None:
        queue = self.queued[lane]
        try:
            while queue:
                await queue[0]()
                queue.popleft()
        except Exception as exc:
            self.failed(exc)
        finally:
            del self.queued[lane]

    async def join(self) -> None:
        """Wait until every job submitted so far, and any they submit, is done."""
        while self.running:
            await asyncio.wait(tuple(self.running))

    def cancel(self) -> None:
        for task in self.running:
            task.cancel()
