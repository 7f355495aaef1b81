"""The processes a bench run owns: a private redis-server, a throwaway database, daphne
workers and floor relays, plus what /proc says about them (RSS, CPU time).

Every process is started here with a log file in the run's work directory and stopped
by `Stack.close()`; only loopback addresses are used.
"""

import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from supportdesk.serve import worker_command

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
STARTUP_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(RuntimeError):
    """Something the bench needs did not work; the message says what."""


def raise_open_files_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit, for this process and every child it
    starts (the workers inherit it). Returns (soft, hard) in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, *, timeout: float, what: str) -> None:
    """Poll a condition no event announces (a port answering), with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path.name}: no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- /proc ------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time one process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_backend_pids(database: str) -> list[int]:
    """PostgreSQL backends serving `database` (their title names it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                title = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and f" {database} " in title:
            pids.append(int(entry))
    return pids


# --- redis ------------------------------------------------------------------------


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

    def version(self) -> str:
        done = subprocess.run(
            [shutil.which("redis-server") or "redis-server", "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    @classmethod
    def start(cls, workdir: Path) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        log = workdir / "redis.log"
        # No persistence; room for as many clients as the idle scenario opens.
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--maxclients", "20000"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = cls(port=port, process=process, log=log)
        wait_until(
            lambda: process.poll() is None and server.answers_ping(),
            timeout=STARTUP_TIMEOUT,
            what=f"redis-server on port {port}\n{tail(log)}",
        )
        return server


# --- database ---------------------------------------------------------------------


@dataclass
class Database:
    """The database of one bench run: a throwaway PostgreSQL database, a SQLite file,
    or the operator's DATABASE_URL (kept afterwards)."""

    backend: str  # "PostgreSQL" or "SQLite"
    url: str
    name: str
    admin_url: str | None = None  # set when we created it and must drop it
    version: str = ""

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """One statement; write `%s` placeholders for either backend."""
        if self.backend == "PostgreSQL":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=20)
        try:
            rows = conn.execute(sql.replace("%s", "?"), params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def backend_pids(self) -> list[int]:
        return postgres_backend_pids(self.name) if self.backend == "PostgreSQL" else []

    def drop(self) -> None:
        if self.admin_url is None:
            return
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    @classmethod
    def create(cls, choice: str, workdir: Path) -> "Database":
        """`choice`: "auto" (DATABASE_URL, else PostgreSQL on 127.0.0.1:5432 when it
        answers, else SQLite), "postgres", "sqlite", or a database URL."""
        url = os.environ.get("DATABASE_URL", "") if choice == "auto" else ""
        if choice not in ("auto", "postgres", "sqlite"):
            url = choice
        if url:
            backend = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
            name = url.rsplit("/", 1)[-1].split("?")[0]
            return cls(backend, url, name, version=_version(backend, url))
        if choice in ("auto", "postgres"):
            admin_url = _postgres_admin_url()
            if admin_url is not None:
                import psycopg

                name = f"supportdesk_bench_{secrets.token_hex(4)}"
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                url = admin_url.rsplit("/", 1)[0] + f"/{name}"
                return cls("PostgreSQL", url, name, admin_url, _version("PostgreSQL", url))
            if choice == "postgres":
                raise BenchError("PostgreSQL does not answer on 127.0.0.1:5432")
        path = workdir / "bench.sqlite3"
        url = f"sqlite:///{path}"
        return cls("SQLite", url, path.name, version=_version("SQLite", url))


def _postgres_admin_url() -> str | None:
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


def _version(backend: str, url: str) -> str:
    if backend == "SQLite":
        return sqlite3.sqlite_version
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


# --- manage.py --------------------------------------------------------------------


def server_env(database: Database, redis: RedisServer, **settings: str) -> dict[str, str]:
    """Production settings (DEBUG=0) on plain loopback HTTP; everything else default."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SUPPORTDESK_", "DJANGO_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "LOG_LEVEL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="supportdesk.settings",
        DATABASE_URL=database.url,
        REDIS_URL=redis.url,
        DEBUG="0",
        SECURE_COOKIES="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECRET_KEY="bench-" + secrets.token_urlsafe(48),
        PYTHONUNBUFFERED="1",
        # Every bench client comes from 127.0.0.1, which a real site never sees: the
        # per-address limits are raised out of reach, but still counted (their Redis
        # round trips are part of a message's cost). Per-visitor limits stay as shipped.
        SUPPORTDESK_LIMIT_IP_MESSAGES="1000000 per 10 seconds",
        SUPPORTDESK_LIMIT_IP_CONVERSATIONS="1000000 per minute",
        SUPPORTDESK_LIMIT_IP_SESSIONS="1000000 per minute",
    )
    env.update(settings)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py` like an operator would; its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


async def python_async(env: dict[str, str], *args: str) -> str:
    """`python ARGS` in the repository, without blocking the event loop; its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    if process.returncode != 0:
        raise BenchError(f"python {' '.join(args[:2])} exited {process.returncode}:\n{err}")
    return out.decode()


# --- servers ----------------------------------------------------------------------


@dataclass
class Server:
    """One listening process: a daphne worker or a floor relay."""

    name: str
    port: int
    process: subprocess.Popen = field(repr=False)
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def healthy(self) -> bool:
        try:
            with _http.open(f"{self.origin}/healthz", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


def start_servers(
    argv_for_port, env: dict[str, str], workdir: Path, name: str, count: int
) -> list[Server]:
    """Start `count` processes (argv from a free port), wait for each /healthz."""
    servers = []
    for index in range(count):
        port = free_port()
        log = workdir / f"{name}{index}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv_for_port(port), cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        servers.append(Server(f"{name}{index}", port, process, log))
    try:
        for server in servers:
            wait_until(
                lambda s=server: s.process.poll() is None and s.healthy(),
                timeout=STARTUP_TIMEOUT,
                what=f"{server.name} to answer /healthz\n{tail(server.log)}",
            )
    except BaseException:
        for server in servers:
            stop_process(server.process)
        raise
    return servers


def daphne_argv(port: int) -> list[str]:
    return worker_command("127.0.0.1", port)


@dataclass
class Stack:
    """Redis + database + the supportdesk workers (restartable with other settings)."""

    workdir: Path
    redis: RedisServer
    database: Database
    env: dict[str, str]
    workers: list[Server] = field(default_factory=list)
    floor: list[Server] = field(default_factory=list)
    variant: str = ""

    def start_workers(self, variant: str, settings: dict[str, str], count: int = 2) -> None:
        """(Re)start the workers with `settings` on top of the stack's environment."""
        self.stop_workers()
        env = {**self.env, **settings}
        self.workers = start_servers(daphne_argv, env, self.workdir, f"daphne-{variant}-", count)
        self.variant = variant

    def stop_workers(self) -> None:
        for worker in self.workers:
            stop_process(worker.process)
        self.workers = []

    def start_floor(self, count: int = 2) -> None:
        self.stop_floor()

        def argv(port: int) -> list[str]:
            return [sys.executable, "-m", "bench.floor", "--port", str(port)]

        env = {
            **self.env,
            "FLOOR_REDIS_URL": self.redis.url,
            "FLOOR_DATABASE_URL": self.database.url,
        }
        self.floor = start_servers(argv, env, self.workdir, "floor", count)

    def stop_floor(self) -> None:
        for relay in self.floor:
            stop_process(relay.process)
        self.floor = []

    def close(self) -> None:
        self.stop_floor()
        self.stop_workers()
        stop_process(self.redis.process)
        with contextlib.suppress(Exception):
            self.database.drop()
