"""The floor: the least a chat relay must do for the steady scenario, with no Django.

`python -m bench.floor --port P` (FLOOR_REDIS_URL, FLOOR_DATABASE_URL from the
environment) serves WebSockets with the `websockets` library; per message it does one
INSERT (autocommit), one Redis PUBLISH to the other side's channel, and an ack to the
sender. Each process has one Redis pub/sub connection for its sockets' channels and a
few database connections (FLOOR_DB_CONNECTIONS, default 4). No auth, no routing, no
seq allocation, no validation beyond the frame type: whatever supportdesk spends above
this is the price of its features and of its framework.

Paths: /ws/agent/?agent=K subscribes `floor:agent:K`; /ws/visitor/?conversation=C&agent=K
subscribes `floor:visitor:C` and sends to `floor:agent:K`; an agent's message.send names
its `conversation` and goes to `floor:visitor:C`. GET /healthz answers 200.
"""

import argparse
import asyncio
import concurrent.futures
import json
import os
import signal
import sqlite3
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from redis import asyncio as aioredis
from websockets.asyncio.server import ServerConnection, serve

TABLE = "bench_floor_message"
INSERT = (
    f"INSERT INTO {TABLE} (conversation, sender, body, client_msg_id) VALUES (%s, %s, %s, %s)"
    " RETURNING id"
)


def create_table_sql(backend: str) -> str:
    key = "BIGSERIAL PRIMARY KEY" if backend == "PostgreSQL" else "INTEGER PRIMARY KEY"
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id {key}, conversation BIGINT NOT NULL,"
        " sender VARCHAR(10) NOT NULL, body TEXT NOT NULL, client_msg_id VARCHAR(64),"
        " created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
    )


class PostgresStore:
    """A few async psycopg connections in autocommit (an INSERT is its own transaction),
    so commits waiting for the disk overlap, as PostgreSQL's group commit allows."""

    async def open(self, url: str, size: int) -> None:
        import psycopg

        self.idle: asyncio.Queue = asyncio.Queue()
        for _ in range(size):
            self.idle.put_nowait(await psycopg.AsyncConnection.connect(url, autocommit=True))

    async def insert(self, conversation: int, sender: str, body: str, msg_id: str) -> int:
        conn = await self.idle.get()
        try:
            cursor = await conn.execute(INSERT, (conversation, sender, body, msg_id))
            return (await cursor.fetchone())[0]
        finally:
            self.idle.put_nowait(conn)


class SqliteStore:
    """One connection on one thread (SQLite has one writer at a time anyway), WAL,
    busy timeout."""

    async def open(self, url: str, size: int) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        path = url.removeprefix("sqlite:///")
        self.conn = await self._run(self._connect, path)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=20, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _insert(self, params: tuple) -> int:
        return self.conn.execute(INSERT.replace("%s", "?"), params).fetchone()[0]

    async def insert(self, conversation: int, sender: str, body: str, msg_id: str) -> int:
        return await self._run(self._insert, (conversation, sender, body, msg_id))


class Relay:
    def __init__(self, redis_url: str, store) -> None:
        self.redis = aioredis.Redis.from_url(redis_url, max_connections=1000)
        self.pubsub = self.redis.pubsub()
        self.store = store
        # Redis channel -> this process's sockets listening on it.
        self.local: dict[str, set[ServerConnection]] = {}

    async def start(self) -> None:
        await self.pubsub.subscribe("floor:control")
        self.listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] != "message":
                continue
            channel = message["channel"].decode()
            for ws in tuple(self.local.get(channel, ())):
                try:
                    await ws.send(message["data"].decode())
                except Exception:
                    continue  # a socket closing right now just misses it

    async def _join(self, channel: str, ws: ServerConnection) -> None:
        sockets = self.local.setdefault(channel, set())
        sockets.add(ws)
        if len(sockets) == 1:
            await self.pubsub.subscribe(channel)

    async def _leave(self, channel: str, ws: ServerConnection) -> None:
        sockets = self.local.get(channel, set())
        sockets.discard(ws)
        if not sockets:
            self.local.pop(channel, None)
            await self.pubsub.unsubscribe(channel)

    async def handle(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        agent = int(query.get("agent", 0))
        if url.path == "/ws/agent/":
            role, own = "agent", f"floor:agent:{agent}"
            visitor_conversation = None
        else:
            visitor_conversation = int(query.get("conversation", 0))
            role, own = "visitor", f"floor:visitor:{visitor_conversation}"
        await self._join(own, ws)
        try:
            await ws.send(json.dumps({"type": "ready"}))
            async for text in ws:
                frame = json.loads(text)
                if frame.get("type") != "message.send":
                    await ws.send(json.dumps({"type": "error", "code": "bad_frame"}))
                    continue
                if role == "agent":
                    conversation = int(frame["conversation"])
                    target = f"floor:visitor:{conversation}"
                else:
                    conversation = visitor_conversation
                    target = f"floor:agent:{agent}"
                msg_id, body = frame["client_msg_id"], frame["body"]
                seq = await self.store.insert(conversation, role, body, msg_id)
                message = {
                    "type": "message",
                    "conversation": conversation,
                    "seq": seq,
                    "sender": role,
                    "body": body,
                    "client_msg_id": msg_id,
                }
                await self.redis.publish(target, json.dumps(message))
                ack = {
                    "type": "message.ack",
                    "client_msg_id": msg_id,
                    "conversation": conversation,
                    "seq": seq,
                }
                await ws.send(json.dumps(ack))
        finally:
            await self._leave(own, ws)


def health(connection: ServerConnection, request):
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None


async def main(port: int) -> None:
    db_url = os.environ["FLOOR_DATABASE_URL"]
    store = SqliteStore() if db_url.startswith("sqlite") else PostgresStore()
    await store.open(db_url, int(os.environ.get("FLOOR_DB_CONNECTIONS", "4")))
    relay = Relay(os.environ["FLOOR_REDIS_URL"], store)
    await relay.start()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        relay.handle,
        "127.0.0.1",
        port,
        process_request=health,
        compression=None,
        max_size=2**17,
        backlog=1024,
    ):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
