"""The WebSocket client of the e2e, chaos and browser tests and of the bench: `Peer`,
one socket speaking the JSON frame protocol, opened by `connect_agent` (dashboard,
session cookie) or `connect_visitor` (widget, `hello`); and `BlockingPeer`, the same
for code that cannot await.

A task reads each socket all the time, so the server never waits for a test to read
and a close is seen when it happens. A frame whose type has a handler in `hot` goes to
it at once (the bench's measured path, the chaos clients' ledger); every other frame
is kept in `frames`, where the waits find it. Each kept frame is handed out once.
"""

import asyncio
import contextlib
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from .waiting import Signal, StackError, run_blocking

if TYPE_CHECKING:
    from .app import Site
    from .processes import Server

FRAME_TIMEOUT = 5.0
CLOSE_TIMEOUT = 5.0
REPORT_FRAMES = 40
# Loopback to a server of our own: no ambient proxy, no compression, and no keepalive
# pings of the client's own (a busy machine would turn a late pong into a close).
LOOPBACK = {
    "proxy": None,
    "compression": None,
    "ping_interval": None,
    "close_timeout": CLOSE_TIMEOUT,
}

Handler = Callable[["Peer", dict], None]


class Peer:
    """One WebSocket client of the app (see the module doc). `hot` maps frame types to
    handlers; a handler under the key None takes every type without one of its own."""

    def __init__(
        self,
        name: str,
        ws: ClientConnection,
        *,
        hot: dict[str | None, Handler] | None = None,
        frame_timeout: float = FRAME_TIMEOUT,
    ) -> None:
        self.name = name
        self.ws = ws
        self.hot = hot if hot is not None else {}
        self.frame_timeout = frame_timeout
        self.frames: list[dict] = []
        self.taken: set[int] = set()
        # Just after the last frame handed out: `since=peer.cursor` waits for newer ones.
        self.cursor = 0
        self.close_code: int | None = None
        self.changed = Signal()  # a frame arrived, or the socket closed
        self._failure: BaseException | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"read {name}")

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                handler = self.hot.get(frame.get("type")) or self.hot.get(None)
                if handler is None:
                    self.frames.append(frame)
                else:
                    handler(self, frame)
                self.changed.notify()
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else 1006
        except Exception as exc:  # a handler's: shown by the next wait, not lost
            self._failure = exc
            self.close_code = 1006
            self.ws.transport.abort()
        finally:
            if self.close_code is None:
                self.close_code = self.ws.close_code or 1000
            self.changed.notify()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    def mark(self) -> int:
        """A position in `frames`, to wait only for frames that arrive after it."""
        return len(self.frames)

    def of_type(self, *types: str) -> list[dict]:
        return [f for f in self.frames if f.get("type") in types]

    def take(
        self,
        types: str | tuple[str, ...],
        *,
        where: Callable[[dict], bool] | None = None,
        since: int = 0,
        **fields: Any,
    ) -> dict | None:
        """The first frame of `types` not yet handed out, at or after `since`, matching
        `where` and equal to `fields` (`from_` for `from`); None if there is none yet."""
        index = self._find(_types(types), where, _fields(fields), since)
        return None if index is None else self.frames[index]

    def _find(self, types: tuple, where, fields: dict, since: int) -> int | None:
        for index in range(since, len(self.frames)):
            frame = self.frames[index]
            if (
                index not in self.taken
                and frame.get("type") in types
                and all(frame.get(k) == v for k, v in fields.items())
                and (where is None or where(frame))
            ):
                self.taken.add(index)
                self.cursor = max(self.cursor, index + 1)
                return index
        return None

    async def recv_until(
        self,
        types: str | tuple[str, ...],
        timeout: float | None = None,
        *,
        where: Callable[[dict], bool] | None = None,
        since: int = 0,
        **fields: Any,
    ) -> dict:
        """Like `take`, waiting up to `timeout` seconds (the peer's `frame_timeout` if
        None) for the frame; raises StackError showing the frames seen if none comes
        or the socket closes first."""
        __tracebackhide__ = True
        types, fields = _types(types), _fields(fields)
        start, found = since, []

        def arrived() -> bool:
            nonlocal start
            index = self._find(types, where, fields, start)
            if index is not None:
                found.append(index)
                return True
            start = max(start, len(self.frames))  # none of those matched: not again
            return self.close_code is not None

        timeout = self.frame_timeout if timeout is None else timeout
        await self.changed.wait_for(arrived, timeout)
        if not found:
            matching = f" with {fields}" if fields else ""
            self._fail(f"no {'/'.join(types)} frame{matching}", timeout)
        return self.frames[found[0]]

    async def wait_for(
        self, condition: Callable[[list[dict]], bool], what: str, timeout: float | None = None
    ) -> None:
        """Wait until `condition(frames)` holds; raise showing the frames seen if not."""
        __tracebackhide__ = True
        timeout = self.frame_timeout if timeout is None else timeout
        held = await self.changed.wait_for(
            lambda: condition(self.frames) or self.close_code is not None, timeout
        )
        if not held or not condition(self.frames):
            self._fail(what, timeout)

    async def round_trip(self, timeout: float | None = None) -> None:
        """Send a ping and wait for its pong: everything the worker had sent this socket
        before answering is in `frames` now."""
        mark = self.mark()
        await self.send({"type": "ping"})
        await self.recv_until("pong", timeout, since=mark)

    async def wait_closed(self, timeout: float | None = None) -> int:
        """The close code, once the socket is closed (`math.inf`: however long that
        takes); raises what a hot handler raised, if one did."""
        __tracebackhide__ = True
        timeout = self.frame_timeout if timeout is None else timeout
        deadline = None if math.isinf(timeout) else timeout
        if not await self.changed.wait_for(lambda: self.close_code is not None, deadline):
            self._fail("the socket to close", timeout)
        if self._failure is not None:
            raise self._failure
        return self.close_code

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Close (abort if the closing handshake takes longer than `timeout`) and wait
        for the reader to finish."""
        try:
            await asyncio.wait_for(self.ws.close(), timeout)
        except (TimeoutError, OSError):
            self.ws.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, timeout)

    def _fail(self, what: str, timeout: float | None) -> None:
        __tracebackhide__ = True
        if self._failure is not None:
            raise StackError(f"{self.name}: a frame handler failed") from self._failure
        closed = "" if self.close_code is None else f" (socket closed, code {self.close_code})"
        shown = self.frames[-REPORT_FRAMES:]
        earlier = len(self.frames) - len(shown)
        seen = "\n  ".join(json.dumps(f)[:400] for f in shown) or "(none)"
        more = f" ({earlier} earlier not shown)" if earlier else ""
        raise StackError(
            f"{self.name}: {what} within {timeout}s{closed}; frames seen{more}:\n  {seen}"
        )


def _types(types: str | tuple[str, ...]) -> tuple[str, ...]:
    return (types,) if isinstance(types, str) else types


def _fields(fields: dict[str, Any]) -> dict[str, Any]:
    # `from` is a keyword in Python: callers write `from_`.
    return {key.rstrip("_"): value for key, value in fields.items()}


async def connect(
    url: str,
    *,
    name: str,
    origin: str,
    cookie: str | None = None,
    hot: dict[str | None, Handler] | None = None,
    frame_timeout: float = FRAME_TIMEOUT,
    open_timeout: float = 10.0,
    max_size: int | None = 2**20,
) -> Peer:
    """Open a socket to `url` from `origin`, signed in by `cookie` if given."""
    ws = await ws_connect(
        url,
        origin=origin,
        additional_headers={"Cookie": cookie} if cookie else None,
        open_timeout=open_timeout,
        max_size=max_size,
        **LOOPBACK,
    )
    return Peer(name, ws, hot=hot, frame_timeout=frame_timeout)


async def connect_agent(
    server: "Server", cookie: str, name: str, **options: Any
) -> tuple[Peer, dict]:
    """A dashboard socket on `server`, from that server's own origin, signed in by
    `cookie`; the peer and its `ready` frame."""
    peer = await connect(
        server.ws_url("/ws/agent/"),
        name=f"{name}@{server.name}",
        origin=server.origin,
        cookie=cookie,
        **options,
    )
    return peer, await peer.recv_until("ready")


async def connect_visitor(
    server: "Server",
    site: "Site",
    token: str,
    name: str,
    *,
    last_seq: int = 0,
    page: dict | None = None,
    timezone: str | None = None,
    **options: Any,
) -> tuple[Peer, dict]:
    """A widget socket on `server` from the site's origin, after `hello`; the peer and
    its `ready` frame. `page` and `timezone` go in the `hello` as the widget sends them
    (chat.js: the embedding page, the browser's time zone), when given."""
    peer = await connect(
        server.ws_url("/ws/visitor/"), name=f"{name}@{server.name}", origin=site.origin, **options
    )
    hello = {"type": "hello", "site_key": site.key, "visitor_token": token, "last_seq": last_seq}
    if page is not None:
        hello["page"] = page
    if timezone is not None:
        hello["timezone"] = timezone
    await peer.send(hello)
    return peer, await peer.recv_until("ready")


async def set_presence(agent: Peer, status: str = "available") -> None:
    """Switch an agent's presence; wait until the server confirms it."""
    mark = agent.mark()
    await agent.send({"type": "presence", "status": status})
    await agent.recv_until("presence", since=mark, status=status)


class BlockingPeer:
    """A `Peer` for code that cannot await (the browser tests, under sync Playwright):
    its socket lives on the stack's own event loop (`run_blocking`), read all the time
    there. `expect` reads on from the last frame it returned, as a test script does."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    @property
    def frames(self) -> list[dict]:
        return self.peer.frames

    def send(self, frame: dict) -> None:
        run_blocking(self.peer.send(frame))

    def expect(self, frame_type: str, timeout: float | None = None, **fields: Any) -> dict:
        """The next frame of this type, after the last one returned, whose fields match
        (`from_` for `from`); raises showing the frames seen if none comes in time."""
        __tracebackhide__ = True
        peer = self.peer
        return run_blocking(peer.recv_until(frame_type, timeout, since=peer.cursor, **fields))

    def received(self, frame_type: str, **fields: Any) -> list[dict]:
        """Every frame of this type received so far whose fields match."""
        fields = _fields(fields)
        return [
            f
            for f in self.frames
            if f.get("type") == frame_type and all(f.get(k) == v for k, v in fields.items())
        ]

    def close(self) -> None:
        run_blocking(self.peer.close())
