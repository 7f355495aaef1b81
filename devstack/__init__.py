"""The development stack that the e2e, browser and chaos tests and the bench run
against: a private redis-server, a fresh database (PostgreSQL on 127.0.0.1:5432 when
it answers, else SQLite), the app migrated with its sites and agents made by the
operator commands, daphne workers started as `run_cluster` starts them, and the
clients of the wire contract: logins, visitor sessions and WebSocket peers.

Everything runs on 127.0.0.1 on free ports, each process with a log file; waits have
deadlines and give up with the log or the frames as they were at that moment.

A package of its own beside `bench/` and `tests/` because both import it and neither
should import the other: the bench runs from requirements-bench.txt without pytest,
and the tests must not need the bench's plotting stack. So nothing here imports
pytest; failures raise `StackError`, and the pytest fixtures stay in tests/e2e.py,
tests/browser.py and tests/chaos.py.

    processes   redis-server (a replica too), redis-sentinel and daphne workers:
                start, wait, stop, kill, restart
    database    PostgreSQL or SQLite: create, clone a migrated template, query, drop
    app         the processes' environment, manage.py, create_site, create_agent, the
                login form, visitor sessions
    http        one request per connection
    sockets     Peer (the WebSocket client), connect_agent/visitor, BlockingPeer
    waiting     StackError, wait_until, Signal, run_blocking, log tails
"""

from .app import Site, app_env, create_agent, create_site, login, manage, visitor_session
from .database import Database, postgres_admin_url, postgres_url
from .http import Response, request
from .processes import (
    REPO_ROOT,
    RedisServer,
    SentinelServer,
    Server,
    free_port,
    healthy,
    redis_installed,
    rss_bytes,
    sentinel_installed,
    start_servers,
    start_workers,
    stop_process,
    stop_servers,
)
from .sockets import BlockingPeer, Peer, connect, connect_agent, connect_visitor, set_presence
from .waiting import Signal, StackError, run_blocking, tail, wait_until

__all__ = [
    "REPO_ROOT",
    "BlockingPeer",
    "Database",
    "Peer",
    "RedisServer",
    "Response",
    "SentinelServer",
    "Server",
    "Signal",
    "Site",
    "StackError",
    "app_env",
    "connect",
    "connect_agent",
    "connect_visitor",
    "create_agent",
    "create_site",
    "free_port",
    "healthy",
    "login",
    "manage",
    "postgres_admin_url",
    "postgres_url",
    "redis_installed",
    "request",
    "rss_bytes",
    "run_blocking",
    "sentinel_installed",
    "set_presence",
    "start_servers",
    "start_workers",
    "stop_process",
    "stop_servers",
    "tail",
    "visitor_session",
    "wait_until",
]
