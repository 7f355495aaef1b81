"""Queue readings asked for by the sockets' services are made on the worker's event loop
afterwards (chat/conversations/queue.py `QueueReadings`): one at a time per site, and the
requests that come while one waits share it."""

import asyncio

import pytest

from chat.conversations import queue
from chat.transport import broadcasting
from tests import ws
from tests.test_consumers_agent import set_away
from tests.test_consumers_visitor import send, visitor_socket

pytestmark = pytest.mark.django_db(transaction=True)


class HeldReadings:
    """`queue.read_queue`, recording each reading and holding the first until
    `release()`."""

    def __init__(self, monkeypatch) -> None:
        self.made: list[tuple[int, set[int] | None]] = []
        self.first_started = asyncio.Event()
        self.released = asyncio.Event()
        real = queue.read_queue
        loop = asyncio.get_running_loop()

        def read_queue(site_id, starts):
            self.made.append((site_id, None if starts is None else set(starts)))
            if len(self.made) == 1:
                loop.call_soon_threadsafe(self.first_started.set)
                asyncio.run_coroutine_threadsafe(self.released.wait(), loop).result(ws.TIMEOUT)
            real(site_id, starts)

        monkeypatch.setattr(queue, "read_queue", read_queue)


async def test_requests_while_a_reading_runs_share_the_next_one(monkeypatch):
    held = HeldReadings(monkeypatch)
    readings = broadcasting.queue_readings()

    readings.request({7: {1}})
    await asyncio.wait_for(held.first_started.wait(), ws.TIMEOUT)
    readings.request({7: {2}})
    readings.request({7: {3}, 8: None})
    readings.request({7: None})
    held.released.set()
    await readings.settled()

    assert sorted(held.made, key=str) == sorted([(7, {1}), (7, None), (8, None)], key=str)
    assert held.made[0] == (7, {1})


async def test_queued_visitors_learn_their_positions_from_the_deferred_reading(personas, sockets):
    # Nobody is available: three visitors queue in the order they wrote.
    await set_away(personas.alice)
    await set_away(personas.bob)
    tabs = [
        await visitor_socket(sockets, personas, v) for v in (personas.v1, personas.v2, personas.v3)
    ]
    for n, (tab, _ready) in enumerate(tabs):
        await tab.send_json_to(send("Anyone there?", f"first-{n}"))
        await ws.receive_until(tab, "message.ack")

    await broadcasting.queue_readings().settled()
    positions = []
    for tab, _ready in tabs:
        frames = await ws.frames_before_pong(tab)
        queued = [f for f in frames if f["type"] == "conversation.queued"]
        positions.append(max(queued, key=lambda f: f["queue_version"])["position"])
    assert positions == [1, 2, 3]
