"""The client side of the wire contract, as a browser would speak it: a tiny HTTP/1.1
client (visitor sessions, the agents' login form) and WebSocket peers that hand each
frame to a hot-path handler or keep it for a waiting setup step.
"""

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FRAME_TIMEOUT = 30.0


class WireError(RuntimeError):
    """The server answered something the contract does not allow here."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def cookies(self) -> dict[str, str]:
        jar = {}
        for name, value in self.headers:
            if name == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                jar[key.strip()] = val.strip()
        return jar


async def http(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 30.0,
) -> Response:
    """One request on its own connection to 127.0.0.1:`port` (Connection: close)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            lines = [
                f"{method} {path} HTTP/1.1",
                f"Host: 127.0.0.1:{port}",
                "Connection: close",
                f"Content-Length: {len(body)}",
            ]
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = []
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed.append((name.strip().lower(), value.strip()))
    if dict(parsed).get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return Response(int(status_line.split()[1]), parsed, payload)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


async def login(port: int, username: str, password: str) -> str:
    """Sign in through the real form at /accounts/login/; returns the Cookie header."""
    page = await http(port, "GET", "/accounts/login/")
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    cookies = page.cookies()
    if match is None or "csrftoken" not in cookies:
        raise WireError(f"no CSRF token on the login page (status {page.status})")
    form = urlencode(
        {
            "csrfmiddlewaretoken": match.group(1).decode(),
            "username": username,
            "password": password,
            "next": "/agent/",
        }
    ).encode()
    answer = await http(
        port,
        "POST",
        "/accounts/login/",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken']}",
            "Referer": f"http://127.0.0.1:{port}/accounts/login/",
        },
        body=form,
    )
    cookies.update(answer.cookies())
    if answer.status != 302 or "sessionid" not in cookies:
        raise WireError(f"{username} could not sign in (status {answer.status})")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


async def visitor_session(port: int, site_key: str, origin: str) -> str:
    """POST /api/v1/visitor-sessions from the site's origin; returns the visitor token."""
    answer = await http(
        port,
        "POST",
        "/api/v1/visitor-sessions",
        headers={"Content-Type": "application/json", "Origin": origin},
        body=json.dumps({"site_key": site_key}).encode(),
    )
    if answer.status != 201:
        raise WireError(f"POST /api/v1/visitor-sessions answered {answer.status}")
    return json.loads(answer.body)["visitor_token"]


@dataclass
class Peer:
    """One WebSocket client. Frames whose type has a handler in `hot` go to it at once
    (the measured path); every other frame is kept until a setup step takes it."""

    name: str
    ws: ClientConnection
    hot: dict[str, Callable[["Peer", dict], None]] = field(default_factory=dict)
    kept: list[dict] = field(default_factory=list)
    close_code: int | None = None
    conversations: list[int] = field(default_factory=list)
    _waiters: list = field(default_factory=list)
    _reader: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                handler = self.hot.get(frame.get("type"))
                if handler is not None:
                    handler(self, frame)
                    continue
                self.kept.append(frame)
                for waiter in list(self._waiters):
                    if not waiter.done():
                        waiter.set_result(None)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else 1006
        except Exception:
            self.close_code = 1006
            raise
        finally:
            if self.close_code is None:
                self.close_code = self.ws.close_code or 1000
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    def take(self, types: tuple[str, ...], where: Callable[[dict], bool] | None = None):
        for index, frame in enumerate(self.kept):
            if frame.get("type") in types and (where is None or where(frame)):
                return self.kept.pop(index)
        return None

    async def expect(
        self,
        types: str | tuple[str, ...],
        *,
        where: Callable[[dict], bool] | None = None,
        timeout: float = FRAME_TIMEOUT,
    ) -> dict:
        """The first kept frame of `types` (matching `where`); waits for it."""
        types = (types,) if isinstance(types, str) else types
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = self.take(types, where)
            if frame is not None:
                return frame
            if self.close_code is not None:
                raise WireError(f"{self.name}: closed ({self.close_code}) before {types}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [
                    f"{f.get('type')}:{f['code']}" if f.get("type") == "error" else f.get("type")
                    for f in self.kept
                ][-10:]
                raise WireError(f"{self.name}: no {types} within {timeout}s (kept: {seen})")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                self._waiters.remove(waiter)

    async def close(self, timeout: float = 5.0) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), timeout)
        except (TimeoutError, OSError):
            self.ws.transport.abort()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, timeout)


async def open_socket(url: str, *, origin: str, cookie: str | None = None) -> ClientConnection:
    return await connect(
        url,
        origin=origin,
        additional_headers={"Cookie": cookie} if cookie else None,
        proxy=None,
        compression=None,
        open_timeout=30,
        ping_interval=None,
        close_timeout=5,
        max_size=2**20,
    )
