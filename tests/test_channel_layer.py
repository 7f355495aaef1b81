"""The pub/sub channel layer against a real redis-server: publishes queued at once share
a pipeline (chat/realtime/layer.py) without losing, reordering or hanging any of them,
and a socket reads its events from its client's queue (chat/transport/socket.py)."""

import asyncio

import pytest
import redis as sync_redis
import redis.exceptions
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from chat.realtime.groups import frame_event
from chat.realtime.layer import PubSubChannelLayer
from chat.transport.socket import ChatConsumer
from tests.tasks import started_tasks

pytest_plugins = ["tests.e2e"]

RECEIVE_TIMEOUT = 10.0


@pytest.fixture
async def layer(redis_server):
    layer = PubSubChannelLayer(hosts=[redis_server.url])
    yield layer
    await layer.flush()


async def test_many_publishers_at_once_each_reach_the_group_in_their_own_order(layer):
    listener = await layer.new_channel()
    await layer.group_add("room", listener)
    senders, each = 50, 20

    async def sender(name: int) -> None:
        for n in range(each):
            # Half as single sends, half as a batch: both go through the queue.
            if n % 2:
                await layer.group_send("room", {"type": "m", "sender": name, "n": n})
            else:
                await layer.group_send_many([("room", {"type": "m", "sender": name, "n": n})])

    await asyncio.gather(*(sender(name) for name in range(senders)))

    seen: dict[int, list[int]] = {name: [] for name in range(senders)}
    for _ in range(senders * each):
        message = await asyncio.wait_for(layer.receive(listener), RECEIVE_TIMEOUT)
        seen[message["sender"]].append(message["n"])
    assert all(numbers == list(range(each)) for numbers in seen.values())


async def test_one_batch_reaches_every_group_it_names(layer):
    alice, bob = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("visitor.1", alice)
    await layer.group_add("agent.2", bob)

    outcomes = await layer.group_send_many(
        [("visitor.1", {"type": "m", "to": "visitor"}), ("agent.2", {"type": "m", "to": "agent"})]
    )

    assert outcomes == [None, None]
    assert (await asyncio.wait_for(layer.receive(alice), RECEIVE_TIMEOUT))["to"] == "visitor"
    assert (await asyncio.wait_for(layer.receive(bob), RECEIVE_TIMEOUT))["to"] == "agent"


async def test_a_batch_of_publishes_starts_no_task_but_the_one_sending_it(layer):
    """redis-py's pipeline bounded its write with `asyncio.wait_for`, a task per batch
    on the busiest path; the shard's own connection writes the batch in its sender."""
    listener = await layer.new_channel()
    await layer.group_add("room", listener)
    await layer.group_send("room", {"type": "m", "n": 0})
    assert (await asyncio.wait_for(layer.receive(listener), RECEIVE_TIMEOUT))["n"] == 0
    with started_tasks() as started:
        outcomes = await layer.group_send_many(
            [("room", {"type": "m", "n": 1}), ("room", {"type": "m", "n": 2})]
        )

    assert outcomes == [None, None]
    assert started == ["_Shard._send_outgoing"]
    for n in (1, 2):
        assert (await asyncio.wait_for(layer.receive(listener), RECEIVE_TIMEOUT))["n"] == n


async def test_publishes_to_a_stopped_redis_fail_for_their_callers_instead_of_hanging(
    layer, redis_server
):
    listener = await layer.new_channel()
    await layer.group_add("room", listener)
    redis_server.process.terminate()
    redis_server.process.wait()

    outcomes = await asyncio.wait_for(
        layer.group_send_many([("room", {"type": "m"}), ("room", {"type": "m"})]),
        RECEIVE_TIMEOUT,
    )

    assert all(isinstance(outcome, redis.exceptions.ConnectionError) for outcome in outcomes)
    with pytest.raises(redis.exceptions.ConnectionError):
        await asyncio.wait_for(layer.group_send("room", {"type": "m"}), RECEIVE_TIMEOUT)


async def test_a_frame_is_not_queued_for_the_socket_it_skips_and_is_for_the_others(layer):
    # The sender's tab and another tab of the same visitor on this worker.
    sender, other_tab = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("visitor.1", sender)
    await layer.group_add("visitor.1", other_tab)

    await layer.group_send_many(
        [("visitor.1", frame_event({"type": "message", "seq": 1}, skip_channel=sender))]
    )
    await layer.group_send_many([("visitor.1", frame_event({"type": "message", "seq": 2}))])

    for seq in (1, 2):
        event = await asyncio.wait_for(layer.receive(other_tab), RECEIVE_TIMEOUT)
        assert event["frame"]["seq"] == seq
    # Nothing was queued for the sender before the event it does not skip.
    event = await asyncio.wait_for(layer.receive(sender), RECEIVE_TIMEOUT)
    assert event["frame"]["seq"] == 2
    assert layer._get_layer().channels[sender].empty()


async def test_a_consumers_channel_hears_its_groups_without_a_redis_subscription_of_its_own(
    layer, redis_server
):
    listener = await layer.new_channel()
    await layer.group_add("visitor.7", listener)
    await layer.group_send("visitor.7", {"type": "m", "n": 1})

    assert (await asyncio.wait_for(layer.receive(listener), RECEIVE_TIMEOUT))["n"] == 1
    client = sync_redis.Redis.from_url(redis_server.url)
    try:
        subscribed = {name.decode() for name in client.pubsub_channels()}
    finally:
        client.close()
    assert listener not in subscribed
    assert len(subscribed) == 1  # the group's channel alone


class RoomSocket(ChatConsumer):
    """A socket of the chat transport that hears the group "room"."""

    async def connect(self) -> None:
        await self.accept()
        await self.join("room")


# Channels closes stale database connections when a socket disconnects.
@pytest.mark.django_db
async def test_a_sockets_events_reach_it_in_order_with_no_task_started_per_event(
    redis_server, settings
):
    """The consumer reads its channel's events from the queue its client's messages come
    in by (ChatConsumer.serve): Channels' dispatch started two tasks and an
    `asyncio.wait` for each of them, the busiest path of a worker."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.realtime.layer.PubSubChannelLayer",
            "CONFIG": {"hosts": [redis_server.url]},
        }
    }
    socket = WebsocketCommunicator(RoomSocket.as_asgi(), "/ws/room/")
    assert (await socket.connect())[0]
    layer = get_channel_layer()
    await layer.group_send("room", frame_event({"type": "message", "seq": 0}))
    assert (await socket.receive_json_from(RECEIVE_TIMEOUT))["seq"] == 0

    with started_tasks() as started:
        # Published straight to Redis as another worker does, from a synchronous
        # client: no task of this test's own.
        client = sync_redis.Redis.from_url(redis_server.url)
        channel = layer._get_layer()._get_group_channel_name("room")
        for seq in range(1, 6):
            event = frame_event({"type": "message", "seq": seq})
            client.publish(channel, layer.serialize(event))
        client.close()
        frames = [await socket.receive_json_from(RECEIVE_TIMEOUT) for _ in range(5)]

    assert [frame["seq"] for frame in frames] == [1, 2, 3, 4, 5]
    assert started == []
    await socket.disconnect()
    await layer.flush()
