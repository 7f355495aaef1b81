"""HTTP as a browser speaks it to a worker on 127.0.0.1: one request per connection
(no ambient proxy, nothing pooled), the agents' login form (session cookie), and
visitor sessions (the widget's token).

Written on asyncio streams rather than urllib in threads, so the bench can open
thousands of sessions at once; sync callers go through `run_blocking`.
"""

import asyncio
import json as jsonlib
import time
from dataclasses import dataclass
from typing import Any

HTTP_TIMEOUT = 30.0


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]  # names in lower case, in the order received
    body: bytes
    seconds: float  # from connecting to the last byte

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers if key == name.lower()), "")

    @property
    def content_type(self) -> str:
        return self.header("content-type")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def cookies(self) -> dict[str, str]:
        jar = {}
        for name, value in self.headers:
            if name == "set-cookie":
                key, _, val = value.split(";", 1)[0].partition("=")
                jar[key.strip()] = val.strip()
        return jar


async def request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    json: Any = None,
    timeout: float = HTTP_TIMEOUT,
) -> Response:
    """One request on its own connection to 127.0.0.1:`port` (Connection: close); any
    status is returned, none raised. `json` is sent as the body, typed as such."""
    headers = dict(headers or {})
    if json is not None:
        body = jsonlib.dumps(json).encode()
        headers.setdefault("Content-Type", "application/json")
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            lines = [
                f"{method} {path} HTTP/1.1",
                f"Host: 127.0.0.1:{port}",
                "Connection: close",
                f"Content-Length: {len(body)}",
            ]
            lines += [f"{name}: {value}" for name, value in headers.items()]
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
    return Response(int(status_line.split()[1]), parsed, payload, time.monotonic() - started)


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
