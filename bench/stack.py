"""What a bench run owns beyond devstack's processes: the stack it measures (Redis, the
database, the supportdesk workers restartable with other settings, the floor relays),
the settings the workers run with, and what /proc says about CPU time.

Redis, the database and every server come from devstack (tests/e2e.py starts its own
the same way); only loopback addresses are used, and `Stack.close()` stops them all.
"""

import contextlib
import os
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devstack import (
    Database,
    RedisServer,
    Server,
    StackError,
    app_env,
    free_port,
    start_servers,
    start_workers,
    stop_servers,
)

STARTUP_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Room for as many clients as the idle scenario opens.
REDIS_MAX_CLIENTS = 20_000


class BenchError(StackError):
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


def open_database(choice: str, workdir: Path) -> Database:
    """`choice`: "auto" (DATABASE_URL, else PostgreSQL on 127.0.0.1:5432 when it
    answers, else SQLite), "postgres", "sqlite", or a database URL (kept afterwards)."""
    url = os.environ.get("DATABASE_URL", "") if choice == "auto" else ""
    if choice not in ("auto", "postgres", "sqlite"):
        url = choice
    if url:
        return Database.at(url)
    return Database.create(workdir, "bench", choice)


def server_env(database: Database, redis: RedisServer) -> dict[str, str]:
    """devstack's production settings on loopback HTTP, with this run's database and
    Redis, and the shared per-address limits out of reach."""
    return app_env(
        DATABASE_URL=database.url,
        REDIS_URL=redis.url,
        # Every bench client comes from 127.0.0.1, which a real site never sees: the
        # per-address limits are raised out of reach, but still counted (their Redis
        # round trips are part of a message's cost). Per-visitor limits stay as shipped.
        SUPPORTDESK_LIMIT_IP_MESSAGES="1000000 per 10 seconds",
        SUPPORTDESK_LIMIT_IP_CONVERSATIONS="1000000 per minute",
        SUPPORTDESK_LIMIT_IP_SESSIONS="1000000 per minute",
    )


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
    settings: dict[str, str] = field(default_factory=dict)  # the variant's own

    def database_pids(self) -> list[int]:
        if self.database.backend != "PostgreSQL":
            return []
        return postgres_backend_pids(self.database.name)

    def start_workers(self, variant: str, settings: dict[str, str], count: int = 2) -> None:
        """(Re)start the workers with `settings` on top of the stack's environment."""
        self.stop_workers()
        env = {**self.env, **settings}
        self.workers = start_workers(
            count, env, self.workdir, prefix=f"daphne-{variant}-", timeout=STARTUP_TIMEOUT
        )
        self.variant = variant
        self.settings = settings

    def stop_workers(self) -> None:
        stop_servers(self.workers)
        self.workers = []

    def start_floor(self, count: int = 2) -> None:
        self.stop_floor()
        env = {
            **self.env,
            "FLOOR_REDIS_URL": self.redis.url,
            "FLOOR_DATABASE_URL": self.database.url,
        }
        relays = []
        for index in range(count):
            port = free_port()
            command = [sys.executable, "-m", "bench.floor", "--port", str(port)]
            log = self.workdir / f"floor{index}.log"
            relays.append(Server(f"floor{index}", port, command, env, log))
        self.floor = start_servers(relays, STARTUP_TIMEOUT)

    def stop_floor(self) -> None:
        stop_servers(self.floor)
        self.floor = []

    def close(self) -> None:
        self.stop_floor()
        self.stop_workers()
        self.redis.stop()
        with contextlib.suppress(Exception):
            self.database.drop()
