"""End-to-end harness: a real redis-server, a real database, real daphne workers and
real WebSocket clients, as pytest fixtures and small async helpers.

A test module loads the fixtures with `pytest_plugins = ["tests.e2e"]` and imports
the helpers it calls (`connect_visitor`, `login_agent`, ...).

Everything the processes need comes from the environment, exactly as in production
(`DATABASE_URL`, `REDIS_URL`, ...). Waiting is always for an event with a deadline:
a PING answered, `/healthz` answering, a frame arriving. `E2E_DATABASE=sqlite` skips
PostgreSQL even when it answers.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin, too
late for assertion rewriting, so its checks call `pytest.fail` with their own message.
"""

import asyncio
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from supportdesk.serve import worker_command

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
SITE_ORIGIN = "http://acme.test"
STARTUP_TIMEOUT = 30.0
FRAME_TIMEOUT = 5.0
LOG_TAIL_LINES = 60

# Plain loopback traffic only: never route test requests through an ambient proxy.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str | Callable[[], str]
) -> None:
    """Poll `condition` until true, for conditions no event announces (a port opening).
    `what` may be a function, to describe the state at the time of giving up (a log)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            pytest.fail(f"gave up after {timeout:.0f}s waiting for {described}")
        time.sleep(0.05)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return f"({path.name}: no log)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text)


# --- redis ----------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen = field(repr=False)
    log: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, with no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    log = tmp_path / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = RedisServer(port=port, process=process, log=log)
    try:
        wait_until(
            lambda: process.poll() is None and server.answers_ping(),
            timeout=STARTUP_TIMEOUT,
            what=f"redis-server on port {port} to answer PING\n{tail(log)}",
        )
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- database -------------------------------------------------------------------


@dataclass
class E2EDatabase:
    """The throwaway database the processes share; the test reads it directly."""

    backend: str  # "PostgreSQL" or "SQLite"
    url: str

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one read query; write `%s` placeholders for either backend."""
        if self.backend == "PostgreSQL":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                return conn.execute(sql, params).fetchall()
        conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=20)
        try:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()
        finally:
            conn.close()


@dataclass(frozen=True)
class E2ESite:
    key: str
    origin: str


@dataclass(frozen=True)
class _Template:
    """A database migrated once per session, with site acme, that each test copies."""

    backend: str
    location: str  # PostgreSQL: the template database's name; SQLite: the file
    admin_url: str | None
    site: E2ESite


def _postgres_admin_url() -> str | None:
    """The first admin URL the local PostgreSQL (trust auth) accepts, or None."""
    if os.environ.get("E2E_DATABASE") == "sqlite":
        return None
    try:
        import psycopg
    except ImportError:
        return None
    for url in POSTGRES_ADMIN_URLS:
        try:
            psycopg.connect(url, autocommit=True, connect_timeout=2).close()
            return url
        except psycopg.Error:
            continue
    return None


def _postgres(admin_url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def _e2e_template(tmp_path_factory) -> Iterator[_Template]:
    # `migrate` and `create_site` run once, as subprocesses like an operator would;
    # cloning their result costs a fraction of a second per test instead of seconds.
    admin_url = _postgres_admin_url()
    if admin_url is None:
        path = tmp_path_factory.mktemp("e2e-template") / "template.sqlite3"
        env = process_env(DATABASE_URL=f"sqlite:///{path}")
        site = _migrate_and_create_site(env)
        # Fold the write-ahead log into the file, so a plain copy is complete.
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        yield _Template("SQLite", str(path), None, site)
        return
    name = f"supportdesk_e2e_template_{secrets.token_hex(6)}"
    _postgres(admin_url, f'CREATE DATABASE "{name}"')
    try:
        site = _migrate_and_create_site(process_env(DATABASE_URL=_database_url(admin_url, name)))
        yield _Template("PostgreSQL", name, admin_url, site)
    finally:
        _postgres(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate_and_create_site(env: dict[str, str]) -> E2ESite:
    manage(env, "migrate", "--noinput")
    out = manage(env, "create_site", "--name", "acme", "--origin", SITE_ORIGIN)
    return E2ESite(key=out.strip().splitlines()[-1], origin=SITE_ORIGIN)


@pytest.fixture
def e2e_database(
    _e2e_template: _Template, tmp_path: Path, record_property, capsys
) -> Iterator[E2EDatabase]:
    """A fresh, migrated database holding site acme (`e2e_site`): a PostgreSQL database
    when PostgreSQL answers on 127.0.0.1:5432 (unless E2E_DATABASE=sqlite), else a
    SQLite file; dropped afterwards.

    Which one ran is printed to the terminal and recorded as the `e2e_database`
    property (JUnit XML), so a run can be reported as "PostgreSQL ran" or "SQLite ran".
    """
    template = _e2e_template
    if template.backend == "SQLite":
        path = tmp_path / "e2e.sqlite3"
        shutil.copyfile(template.location, path)
        database = E2EDatabase("SQLite", f"sqlite:///{path}")
        _announce(capsys, record_property, database, str(path))
        yield database
        return
    name = f"supportdesk_e2e_{secrets.token_hex(6)}"
    _postgres(template.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template.location}"')
    database = E2EDatabase("PostgreSQL", _database_url(template.admin_url, name))
    _announce(capsys, record_property, database, name)
    try:
        yield database
    finally:
        _postgres(template.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _announce(capsys, record_property, database: E2EDatabase, detail: str) -> None:
    record_property("e2e_database", database.backend)
    with capsys.disabled():
        print(f"\n[e2e] {database.backend} ran ({detail})", flush=True)


@pytest.fixture
def e2e_site(_e2e_template: _Template, e2e_database: E2EDatabase) -> E2ESite:
    """Site acme, embeddable from http://acme.test, made by `create_site` (its key is
    the command's last line of output)."""
    return _e2e_template.site


# --- the processes' environment and manage.py ------------------------------------


def process_env(**settings: str) -> dict[str, str]:
    """The environment of every app process: production settings (DEBUG=0) on plain
    loopback HTTP, quick sweeps and heartbeats, plus `settings`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SUPPORTDESK_", "DJANGO_")) and key not in _OURS
    }
    env.update(
        DJANGO_SETTINGS_MODULE="supportdesk.settings",
        DEBUG="0",
        SECURE_COOKIES="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECRET_KEY="e2e-" + "k" * 60,
        SUPPORTDESK_SWEEP_INTERVAL="1",
        SUPPORTDESK_HEARTBEAT_INTERVAL="2",
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env


_OURS = {
    "DATABASE_URL",
    "REDIS_URL",
    "DEBUG",
    "SECURE_COOKIES",
    "ALLOWED_HOSTS",
    "SECRET_KEY",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_SSL_REDIRECT",
    "LOG_LEVEL",
}


@pytest.fixture
def e2e_overrides() -> dict[str, str]:
    """Extra environment for the processes; a test changes it by parametrizing this
    name directly, e.g. `@pytest.mark.parametrize("e2e_overrides", [{...}], ids=[...])`."""
    return {}


@pytest.fixture
def e2e_env(
    redis_server: RedisServer, e2e_database: E2EDatabase, e2e_overrides: dict[str, str]
) -> dict[str, str]:
    """The environment every e2e process of this test runs with: its Redis, its
    (migrated) database, and `e2e_overrides`."""
    return process_env(DATABASE_URL=e2e_database.url, REDIS_URL=redis_server.url, **e2e_overrides)


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py` like an operator would; its stdout, or the test fails."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def create_agent(env: dict[str, str], username: str, *, capacity: int) -> str:
    """Create an agent login with `create_agent`; returns its password."""
    password = f"{username}-{secrets.token_urlsafe(12)}"
    manage(env, "create_agent", username, "--password", password, "--capacity", str(capacity))
    return password


# --- daphne workers ---------------------------------------------------------------


@dataclass
class Worker:
    name: str
    port: int
    process: subprocess.Popen = field(repr=False)
    log: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def healthy(self) -> bool:
        try:
            with _http.open(self.url("/healthz"), timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """SIGKILL: no goodbye to sockets, Redis or the database."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def spawn_workers(e2e_env: dict[str, str], tmp_path: Path, request) -> Iterator[Callable]:
    """`spawn_workers(n)` starts n daphne processes sharing one Redis and one database.

    They are stopped at teardown; if the test failed, the tail of each worker's log
    is printed.
    """
    workers: list[Worker] = []
    failed_before = request.session.testsfailed

    def spawn(n: int) -> list[Worker]:
        started = []
        for _ in range(n):
            index = len(workers)
            port = free_port()
            log = tmp_path / f"daphne-{index}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    worker_command("127.0.0.1", port),
                    cwd=REPO_ROOT,
                    env=e2e_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            worker = Worker(name=f"worker{index}", port=port, process=process, log=log)
            workers.append(worker)
            started.append(worker)
        for worker in started:
            wait_until(
                lambda w=worker: w.process.poll() is None and w.healthy(),
                timeout=STARTUP_TIMEOUT,
                what=f"{worker.name} to answer /healthz\n{tail(worker.log)}",
            )
        return started

    yield spawn
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in workers:
        _stop(worker.process)
    if request.session.testsfailed > failed_before:
        for worker in workers:
            print(f"\n----- {worker.name} (port {worker.port}) log tail -----\n{tail(worker.log)}")


@pytest.fixture
def daphne_workers(spawn_workers: Callable) -> list[Worker]:
    """Two daphne workers sharing one Redis and one database."""
    return spawn_workers(2)


# --- HTTP clients ----------------------------------------------------------------


def _login(worker: Worker, username: str, password: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar)
    )
    login_url = worker.url("/accounts/login/")
    with opener.open(login_url, timeout=10) as response:
        page = response.read().decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if match is None:
        pytest.fail(f"no CSRF token in the login form:\n{page[:2000]}")
    form = urlencode(
        {
            "csrfmiddlewaretoken": match.group(1),
            "username": username,
            "password": password,
            "next": "/agent/",
        }
    ).encode()
    request = urllib.request.Request(login_url, data=form, headers={"Referer": login_url})
    with opener.open(request, timeout=10) as response:
        response.read()
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "sessionid" not in cookies:
        pytest.fail(f"{username} could not sign in (cookies: {sorted(cookies)})")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


async def login_agent(worker: Worker, username: str, password: str) -> str:
    """Sign in through the real login form; returns the Cookie header for the socket."""
    return await asyncio.to_thread(_login, worker, username, password)


def _visitor_session(worker: Worker, site: E2ESite, token: str | None) -> str:
    body = {"site_key": site.key}
    if token is not None:
        body["visitor_token"] = token
    request = urllib.request.Request(
        worker.url("/api/v1/visitor-sessions"),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Origin": site.origin},
        method="POST",
    )
    with _http.open(request, timeout=10) as response:
        if response.status != 201:
            pytest.fail(f"POST /api/v1/visitor-sessions answered {response.status}")
        return json.loads(response.read())["visitor_token"]


async def visitor_session(worker: Worker, site: E2ESite, token: str | None = None) -> str:
    """POST /api/v1/visitor-sessions from the site's origin; returns the visitor token."""
    return await asyncio.to_thread(_visitor_session, worker, site, token)


# --- WebSocket clients -----------------------------------------------------------


@dataclass
class Peer:
    """One real WebSocket client. Every frame it receives is kept in `frames`.

    `recv_until` hands out each frame at most once, so a test can wait for "the next
    ack" even when other frames arrived before it; frames of other types stay
    available to later calls.
    """

    name: str
    ws: ClientConnection
    frames: list[dict] = field(default_factory=list)
    taken: set[int] = field(default_factory=set)
    close_code: int | None = None

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    def mark(self) -> int:
        """A position in `frames`, to wait only for frames that arrive after it."""
        return len(self.frames)

    def of_type(self, *types: str) -> list[dict]:
        return [f for f in self.frames if f.get("type") in types]

    async def _read_one(self, deadline: float) -> bool:
        """Read one frame into `frames`; False on timeout or when the socket closed."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0 or self.close_code is not None:
            return False
        try:
            async with asyncio.timeout(remaining):
                text = await self.ws.recv()
        except TimeoutError:
            return False
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else 1006
            return False
        self.frames.append(json.loads(text))
        return True

    async def recv_until(
        self,
        types: str | tuple[str, ...],
        timeout: float = FRAME_TIMEOUT,
        *,
        where: Callable[[dict], bool] | None = None,
        since: int = 0,
    ) -> dict:
        """The first not yet handed out frame of `types` (matching `where`, at or after
        `since`); fails the test, showing every frame seen, if none comes in time."""
        types = (types,) if isinstance(types, str) else types
        deadline = asyncio.get_running_loop().time() + timeout
        scanned = since
        while True:
            for index in range(scanned, len(self.frames)):
                frame = self.frames[index]
                if (
                    index not in self.taken
                    and frame.get("type") in types
                    and (where is None or where(frame))
                ):
                    self.taken.add(index)
                    return frame
            scanned = max(scanned, len(self.frames))
            if not await self._read_one(deadline):
                pytest.fail(self._timeout_report(f"no {'/'.join(types)} frame", timeout))

    async def wait_for(
        self, condition: Callable[[list[dict]], bool], what: str, timeout: float = FRAME_TIMEOUT
    ) -> None:
        """Read frames until `condition(frames)` holds; fail with the frames seen if not."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition(self.frames):
            if not await self._read_one(deadline):
                pytest.fail(self._timeout_report(what, timeout))

    async def round_trip(self, timeout: float = FRAME_TIMEOUT) -> None:
        """Send a ping and read up to its pong: everything the worker had sent this
        socket before answering is in `frames` now."""
        mark = self.mark()
        await self.send({"type": "ping"})
        await self.recv_until("pong", timeout, since=mark)

    async def wait_closed(self, timeout: float = FRAME_TIMEOUT) -> int:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.close_code is None:
            if not await self._read_one(deadline) and self.close_code is None:
                pytest.fail(self._timeout_report("the socket to close", timeout))
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()

    def _timeout_report(self, what: str, timeout: float) -> str:
        closed = "" if self.close_code is None else f" (socket closed, code {self.close_code})"
        seen = "\n  ".join(json.dumps(f)[:400] for f in self.frames) or "(none)"
        return f"{self.name}: {what} within {timeout}s{closed}; frames seen:\n  {seen}"


async def recv_until(
    peer: Peer, types: str | tuple[str, ...], timeout: float = FRAME_TIMEOUT, **kwargs: Any
) -> dict:
    """Module-level spelling of `Peer.recv_until`."""
    return await peer.recv_until(types, timeout, **kwargs)


async def _open(url: str, *, origin: str, headers: dict[str, str] | None = None):
    return await connect(
        url,
        origin=origin,
        additional_headers=headers,
        proxy=None,
        compression=None,
        open_timeout=10,
        max_size=2**20,
    )


async def connect_agent(worker: Worker, cookie: str, name: str) -> tuple[Peer, dict]:
    """An agent dashboard socket on `worker`, from that worker's own origin; returns
    the peer and its `ready` frame."""
    ws = await _open(worker.ws_url("/ws/agent/"), origin=worker.origin, headers={"Cookie": cookie})
    peer = Peer(name=f"{name}@{worker.name}", ws=ws)
    ready = await peer.recv_until("ready")
    return peer, ready


async def connect_visitor(
    worker: Worker, site: E2ESite, token: str, name: str, *, last_seq: int = 0
) -> tuple[Peer, dict]:
    """A widget socket on `worker` from the site's origin, after `hello`; returns the
    peer and its `ready` frame."""
    ws = await _open(worker.ws_url("/ws/visitor/"), origin=site.origin)
    peer = Peer(name=f"{name}@{worker.name}", ws=ws)
    await peer.send(
        {"type": "hello", "site_key": site.key, "visitor_token": token, "last_seq": last_seq}
    )
    ready = await peer.recv_until("ready")
    return peer, ready


async def set_available(agent: Peer) -> None:
    mark = agent.mark()
    await agent.send({"type": "presence", "status": "available"})
    reply = await agent.recv_until("presence", since=mark)
    if reply["status"] != "available":
        pytest.fail(f"{agent.name}: presence answered {reply}")
