"""channels-redis' pub/sub channel layer, told when its subscription to Redis broke.

channels-redis re-subscribes by itself once Redis answers again, but whatever was
published meanwhile is gone and nobody hears of it. This layer reports each
re-subscription, shard by shard (REDIS_CHANNEL_URLS; a Sentinel failover is one too), to
`subscription_restored()` (below), so the sockets with a group on that shard resume from
the database (by seq) instead of silently missing events. It also keeps the
layer's own bookkeeping from growing while Redis refuses subscribes and unsubscribes,
gives a consumer's own channel no Redis subscription (`new_channel`: it hears its
groups), and lets a consumer drop its channel when it ends (`forget_channel`).

Built on channels-redis 4.3 internals (pinned in requirements.txt):
`RedisPubSubLoopLayer`, `RedisSingleShardConnection` and its redis-py `PubSub`.
"""

import asyncio
import logging
import uuid
import weakref
from typing import Protocol

import redis.exceptions
from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)
from channels_redis.utils import _wrap_close

logger = logging.getLogger(__name__)


class _Shard(RedisSingleShardConnection):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Publishes waiting for the next pipeline, and the task that sends them.
        self._outgoing: list[tuple[str, bytes, asyncio.Future]] = []
        self._sender: asyncio.Task | None = None
        # True while the subscription connection is being (re)connected (see `subscribe`).
        self._connecting = False
        # The connection the publishes go out on, the pool it was made from, and the
        # socket timeout it was configured with (see `_publish`).
        self._publishing = None
        self._publishing_pool = None
        self._publish_timeout: float | None = None

    async def publish(self, channel: str, message: bytes) -> None:
        await self.queue_publish(channel, message)

    def queue_publish(self, channel: str, message: bytes) -> asyncio.Future:
        """Queue one PUBLISH; the future is done once Redis has taken it.

        channels-redis publishes one message per round trip, each under the shard's
        lock, so a busy worker's publishes queued behind each other, one round trip
        apiece. Here every publish queued while one pipeline is on its way goes out in
        the next one: one round trip for all of them, in the order they were queued
        (which keeps each sender's messages in order). Measured in docs/performance.md,
        change 7.
        """
        future = asyncio.get_running_loop().create_future()
        self._outgoing.append((channel, message, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_outgoing())
        return future

    async def _send_outgoing(self) -> None:
        while self._outgoing:
            batch, self._outgoing = self._outgoing, []
            try:
                async with self._lock:
                    self._ensure_redis()
                    await self._publish(batch)
            except asyncio.CancelledError:
                for *_item, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                for *_item, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for *_item, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _publish(self, batch: list[tuple[str, bytes, asyncio.Future]]) -> None:
        """PUBLISH each message of `batch` in one write, then read their replies.

        What redis-py's pipeline did, without what it cost per batch: borrowing a
        connection from the pool (a lock, a readiness check, its metrics), a task
        (`asyncio.wait_for`) to bound the write and a timer per reply
        (docs/performance.md, change 33). The shard keeps one connection for its
        publishes and bounds the batch as a whole by the configured socket timeout;
        retried as redis-py retries a pipeline (the connection's `retry`)."""
        conn = self._publisher()
        commands = conn.pack_commands([("PUBLISH", channel, data) for channel, data, _ in batch])

        async def attempt() -> None:
            try:
                async with asyncio.timeout(self._publish_timeout):
                    if not conn.is_connected:
                        # `connect`, not the send's own reconnect: only it asks a
                        # Sentinel pool for the master (the send's goes to the last
                        # address, a master that failed over).
                        await conn.connect()
                    await conn.send_packed_command(commands, check_health=False)
                    for _ in batch:
                        await conn.read_response()
            except BaseException:
                # Replies may be left unread: the next attempt connects afresh.
                await conn.disconnect(nowait=True)
                raise

        async def disconnected(_error: Exception) -> None:
            """Between attempts: `attempt` has already closed the connection."""

        await conn.retry.call_with_retry(attempt, disconnected)

    def _publisher(self):
        """The shard's publishing connection, made by its pool (a Sentinel pool's asks
        for the master at each connect) without a socket timeout of its own."""
        pool = self._redis.connection_pool
        if self._publishing is None or self._publishing_pool is not pool:
            conn = pool.make_connection()
            self._publish_timeout, conn.socket_timeout = conn.socket_timeout, None
            self._publishing, self._publishing_pool = conn, pool
        return self._publishing

    async def flush(self) -> None:
        await super().flush()
        # Not one of the pool's connections: the pool's disconnect does not close it.
        conn, self._publishing = self._publishing, None
        if conn is not None:
            await conn.disconnect()

    async def subscribe(self, channel: str) -> None:
        async with self._lock:
            if channel in self._subscribed_to and self._pubsub is not None:
                # A group this worker already hears needs no SUBSCRIBE; but while the
                # subscription is down a socket joining it would hear nothing and not be
                # told (the resync is for the sockets open when it broke): refused as a
                # new subscription is, so the socket closes with 4503 and comes back.
                self._refuse_while_reconnecting()
            if channel not in self._subscribed_to:
                self._ensure_redis()
                self._ensure_receiver()
                self._refuse_while_reconnecting()
                await self._pubsub.subscribe(channel)
                self._guard_connects()
                self._subscribed_to.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if channel in self._subscribed_to:
                self._ensure_redis()
                self._ensure_receiver()
                self._refuse_while_reconnecting()
                await self._pubsub.unsubscribe(channel)
                self._subscribed_to.remove(channel)

    def _refuse_while_reconnecting(self) -> None:
        """Race: when the subscription connection breaks, the receive loop reconnects
        it (its `get_message` does) while a socket's subscribe would connect it too. Two
        coroutines connecting one connection read each other's handshake replies; the
        one robbed waits out the socket timeout holding the shard's lock, and every
        socket of the worker stalls with it (seen after a Sentinel failover: 15 s). So
        while the receive loop owns the reconnect (the connection is down or connecting
        and has subscriptions to restore), a subscribe or unsubscribe is refused at
        once: the socket closes with 4503 and comes back, or leaves its name for
        `_drop_stale_subscriptions`. With nothing subscribed, no loop reads, and the
        subscribe itself connects."""
        connection = self._pubsub.connection
        if connection is None:
            return
        if self._connecting or (self._pubsub.subscribed and not connection.is_connected):
            raise redis.exceptions.ConnectionError("re-connecting to Redis: try again")

    def _guard_connects(self) -> None:
        """Mark the subscription connection as connecting for as long as any
        (re)connect of it runs (redis-py reconnects it from several places)."""
        connection = self._pubsub.connection
        if connection is None or getattr(connection, "_supportdesk_guarded", False):
            return
        connect = connection.connect

        async def guarded_connect():
            self._connecting = True
            try:
                return await connect()
            finally:
                self._connecting = False

        connection.connect = guarded_connect
        connection._supportdesk_guarded = True

    def _ensure_redis(self) -> None:
        fresh = self._redis is None
        super()._ensure_redis()
        if fresh:
            # redis-py runs the PubSub's `on_connect` each time its connection is
            # re-established (not on the first connect): that is the moment events
            # may have been lost. An instance attribute shadows the method; redis-py
            # keeps a weak reference to it, which this shard's lifetime covers.
            self._pubsub.on_connect = self._reconnected

    async def _reconnected(self, connection) -> None:
        await type(self._pubsub).on_connect(self._pubsub, connection)
        await self._drop_stale_subscriptions()
        logger.warning("re-subscribed (%r); events published while away are lost", connection)
        subscription_restored(self)

    def _receive_message(self, message) -> None:
        """channels-redis' delivery of one message from Redis to this worker's queues,
        except that a group event meant for every member but `skip_channel` (the socket
        that caused it: groups.frame_event) is not queued for that one. A message goes
        to the sender's own group too (its other tabs), so without this the sender's
        worker woke the sender's consumer for every message it sent, only for the
        consumer to drop it (docs/performance.md, change 22)."""
        if message is None:
            return
        name, data = message["channel"], message["data"]
        if isinstance(name, bytes):
            name = name.decode()
        layer = self.channel_layer
        queue = layer.channels.get(name)
        if queue is not None:
            queue.put_nowait(data)
            return
        members = layer.groups.get(name)
        if not members:
            return
        skip = None
        for channel in members:
            # A channel name (random hex) in the bytes: only then is it worth decoding
            # the event to see whether it is the one to skip.
            if channel.encode() in data:
                skip = layer.channel_layer.deserialize(data).get("skip_channel")
                break
        for channel in members:
            if channel != skip:
                queue = layer.channels.get(channel)
                if queue is not None:
                    queue.put_nowait(data)

    def carries(self, group: str) -> bool:
        """Whether `group` hashes to this shard (channels-redis' hash)."""
        layer = self.channel_layer
        return layer._get_shard(layer._get_group_channel_name(group)) is self

    async def _drop_stale_subscriptions(self) -> None:
        # Unsubscribes refused while Redis was down left names that no socket of this
        # worker listens to any more; redis-py has just subscribed to them again.
        # (Runs inside the reconnect, which may hold `_lock`: it must not take it.)
        layer = self.channel_layer
        stale = {name for name in self._subscribed_to if name not in layer.channels}
        stale -= set(layer.groups)
        if stale:
            await self._pubsub.unsubscribe(*stale)
            self._subscribed_to -= stale


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]

    async def group_send_many(self, events: list[tuple[str, dict]]) -> list:
        """`group_send` each (group, message), queued at once so that they share a
        pipeline; returns None or the exception for each, in order."""
        futures = []
        # A conversation's event goes to its visitor's group and its agent's as one dict
        # (outbox.send): serialized once, by identity (the dicts are not changed after).
        serialized: dict[int, bytes] = {}
        for group, message in events:
            channel = self._get_group_channel_name(group)
            data = serialized.get(id(message))
            if data is None:
                data = serialized[id(message)] = self.channel_layer.serialize(message)
            futures.append(self._get_shard(channel).queue_publish(channel, data))
        return await asyncio.gather(*futures, return_exceptions=True)

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A consumer's own channel, with its queue in this worker and no Redis
        subscription of its own.

        channels-redis subscribes every consumer's channel in Redis, for a `send` to it
        from another process. Nothing here sends to one: the outbox sends to groups
        only, and a frame meant for one socket names it (`only_channel`) inside a group's
        event. Every socket hears its groups, which this worker subscribes and fans out
        to the channels' queues. So that subscription was one SUBSCRIBE when a socket
        opened and one UNSUBSCRIBE when it closed, and a Redis subscription per open
        socket, for nothing: a third of the Redis work of a reconnect storm
        (docs/performance.md, change 23). A `send` from another process to such a
        channel would be lost: send to a group.
        """
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        self.channels[channel] = asyncio.Queue()
        return channel

    def deliver_into(self, channel: str, queue: asyncio.Queue) -> None:
        """Queue `channel`'s events, as their bytes, in `queue` (the one its consumer
        reads its client's messages from: chat/transport/socket.py, `serve`) instead of
        a queue of their own. Called before the consumer joins any group, so nothing
        was queued for it yet."""
        self.channels[channel] = queue

    async def forget_channel(self, channel: str) -> None:
        """Unsubscribe a consumer's own channel once the consumer has ended.

        channels-redis does it only when a pending `receive` is cancelled. A consumer
        that stops just as a message reached its `receive` (Channels' dispatch loop then
        cancels a task that has already finished) would stay subscribed for good: one
        leaked Redis subscription and queue per such socket, seen under churn.
        """
        self.channels.pop(channel, None)
        await self._get_shard(channel).unsubscribe(channel)

    async def _subscribe_to_channel(self, channel: str) -> None:
        try:
            await super()._subscribe_to_channel(channel)
        except BaseException:
            # Redis refused: no consumer will ever read this queue or unsubscribe it.
            self.channels.pop(channel, None)
            raise


class PubSubChannelLayer(RedisPubSubChannelLayer):
    """`RedisPubSubChannelLayer` that reports re-subscriptions (see the module doc)."""

    def _get_layer(self) -> _LoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer

    async def group_send_many(self, events: list[tuple[str, dict]]) -> list:
        return await self._get_layer().group_send_many(events)

    def deliver_into(self, channel: str, queue: asyncio.Queue) -> None:
        self._get_layer().deliver_into(channel, queue)


# --- when the doorbell itself fails ----------------------------------------------

# What a channel layer raises while Redis cannot be reached.
LAYER_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class Resyncable(Protocol):
    joined: set[str]  # the groups the socket joined

    def events_may_be_lost(self, groups: set[str] | None = None) -> None: ...


class Shard(Protocol):
    def carries(self, group: str) -> bool: ...


# Sockets of this worker that joined groups. If the worker's subscription to Redis
# breaks, whatever was published until it is back is lost for all of them, silently:
# Redis pub/sub keeps nothing for an absent subscriber.
_subscribed_sockets: weakref.WeakSet = weakref.WeakSet()


def watch_subscription(socket: Resyncable) -> None:
    _subscribed_sockets.add(socket)


def unwatch_subscription(socket: Resyncable) -> None:
    _subscribed_sockets.discard(socket)


def subscription_restored(shard: Shard | None = None) -> None:
    """Called once the layer has subscribed again to `shard` (None: every shard) after
    losing it: every socket that joined a group on it may have missed that group's
    events, and only the database can tell which, so each is told which groups
    (`events_may_be_lost`; None: all of them).

    Sockets whose groups all live on other shards missed nothing and are not told: a
    socket hears everything through its groups (the outbox only ever sends to groups,
    never to a socket's own channel), so the shard of its own channel does not matter."""
    told = []
    for socket in list(_subscribed_sockets):
        lost = None if shard is None else {g for g in socket.joined if shard.carries(g)}
        if lost is None or lost:
            told.append((socket, lost))
    if told:
        logger.warning("channel layer subscription restored: %d sockets must resync", len(told))
    for socket, lost in told:
        socket.events_may_be_lost(lost)
