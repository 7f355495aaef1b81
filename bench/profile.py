"""Sampling a worker with py-spy while it serves the steady scenario, and boiling the
samples down to where a message's CPU time goes (by library, by thread, by function).

py-spy reads the worker's memory with ptrace: it needs root or CAP_SYS_PTRACE.
"""

import asyncio
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE = 100  # samples per second

# The innermost frame that belongs to one of these decides where a sample goes.
CATEGORIES = (
    ("database driver (psycopg / sqlite3)", ("/psycopg/", "/psycopg_binary/", "sqlite3/")),
    ("Django ORM and transactions", ("/django/db/",)),
    ("JSON encode/decode", ("/json/",)),
    (
        "channel layer (channels_redis, redis-py, msgpack)",
        ("/channels_redis/", "/redis/", "msgpack"),
    ),
    ("WebSocket protocol (autobahn)", ("/autobahn/",)),
    ("daphne ASGI server", ("/daphne/",)),
    ("Twisted reactor and TCP", ("/twisted/",)),
    ("asgiref thread hops (sync_to_async)", ("/asgiref/",)),
    ("Channels consumer machinery", ("/channels/",)),
    ("supportdesk code (chat/, agents/)", ("/chat/", "/agents/")),
    ("Django (other)", ("/django/",)),
    ("asyncio event loop", ("/asyncio/",)),
    ("logging", ("/logging/",)),
)
# Functions whose inclusive share says what a message costs.
KEY_FUNCTIONS = (
    "receive",
    "receive_frame",
    "handle",
    "call",
    "post_visitor_message",
    "post_agent_message",
    "_append_message",
    "_existing_message",
    "flush",
    "group_send",
    "publish",
    "chat_frame",
    "send_frame",
    "heartbeat",
    "sweep",
    "_do_receiving",
    "dispatch",
    # What a reconnecting socket does (the storm).
    "websocket_connect",
    "hello",
    "identify_visitor",
    "join",
    "group_add",
    "subscribe",
    "_subscribe_to_channel",
    "report_visitor_context",
    "visitor_ready",
    "agent_ready",
)


def available() -> bool:
    return shutil.which("py-spy") is not None or Path(sys.executable).with_name("py-spy").exists()


def _binary() -> str:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else "py-spy"


async def record(pid: int, seconds: float, raw_path: Path) -> subprocess.CompletedProcess:
    """py-spy record for `seconds` against `pid`, collapsed stacks per thread."""
    process = await start(pid, seconds, raw_path)
    out, err = await asyncio.wait_for(process.communicate(), timeout=seconds + 60)
    return subprocess.CompletedProcess([], process.returncode, out, err)


async def until_stopped(pid: int, raw_path: Path) -> "Recording":
    """py-spy record against `pid` until `Recording.stop()` (the storm: its length is
    not known in advance)."""
    return Recording(await start(pid, 3600, raw_path))


class Recording:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.started = asyncio.get_running_loop().time()

    async def stop(self) -> tuple[subprocess.CompletedProcess, float]:
        """Stop sampling (SIGINT: py-spy writes what it has); the result and seconds."""
        seconds = asyncio.get_running_loop().time() - self.started
        self.process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(self.process.communicate(), timeout=60)
        return subprocess.CompletedProcess([], self.process.returncode, out, err), seconds


async def start(pid: int, seconds: float, raw_path: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        _binary(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(RATE),
        "--format",
        "raw",
        "--threads",
        "--full-filenames",
        # Only samples holding the GIL: where the worker's CPU goes. Threads waiting on
        # the database or a queue release the GIL and drop out (py-spy's own idle test
        # counts some of those waits as busy).
        "--gil",
        "--output",
        str(raw_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _frames(stack: str) -> list[tuple[str, str]]:
    """[(function, file), ...] root first; the thread marker stays as the first item."""
    frames = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        frames.append((name, where.rstrip(")").rsplit(":", 1)[0]))
    return frames


def _thread_kind(marker: str) -> str:
    """`thread (123): orm_2` -> "orm" threads; MainThread is the event loop."""
    name = marker.partition("): ")[2] or marker
    if name == "MainThread":
        return "event loop (MainThread)"
    stem = name.rstrip("0123456789").rstrip("_-")
    return {
        "orm": "ORM threads (SUPPORTDESK_DB_THREADS)",
        "asyncio": "asyncio default executor (to_thread: rate-limit counts)",
    }.get(stem, f"{stem} threads")


def summarize(raw_path: Path, seconds: float) -> dict:
    """Shares of the active samples by category, thread and function."""
    by_category: Counter = Counter()
    by_thread: Counter = Counter()
    inclusive: Counter = Counter()
    self_time: Counter = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        marker, _, rest = stack.partition(";")
        if not marker.startswith("thread ("):
            marker, rest = "thread (?): ?", stack
        by_thread[_thread_kind(marker)] += n
        frames = _frames(rest)
        category = "other (stdlib, interpreter)"
        for _name, path in reversed(frames):
            found = next((c for c, marks in CATEGORIES if any(m in path for m in marks)), None)
            if found is not None:
                category = found
                break
        by_category[category] += n
        seen = set()
        for name, path in frames:
            short = f"{name} ({_short(path)})"
            if name in KEY_FUNCTIONS and short not in seen:
                inclusive[short] += n
                seen.add(short)
        if frames:
            name, path = frames[-1]
            self_time[f"{name} ({_short(path)})"] += n

    def share(counter: Counter, limit: int) -> list[list]:
        return [[k, round(100 * v / max(total, 1), 1)] for k, v in counter.most_common(limit)]

    return {
        "samples": total,
        # Share of the window some thread of the worker held the GIL (ran Python).
        "gil_held_percent": round(100 * total / (RATE * seconds), 1),
        "by_category": share(by_category, 20),
        "by_thread": share(by_thread, 5),
        "inclusive_key_functions": share(inclusive, 20),
        "top_self": share(self_time, 15),
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "/main/", "/lib/python3."):
        if marker in path:
            return path.split(marker, 1)[1]
    return path
