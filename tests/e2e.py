"""End-to-end fixtures: a real redis-server, a real database and real daphne workers
(devstack), one set per test. A test module loads them with
`pytest_plugins = ["tests.e2e"]` and takes its clients and helpers from `devstack`
(`connect_visitor`, `login`, ...).

Everything the processes need comes from the environment, exactly as in production
(`DATABASE_URL`, `REDIS_URL`, ...). `E2E_DATABASE=sqlite` skips PostgreSQL even when it
answers.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack import (
    Database,
    RedisServer,
    Server,
    Site,
    app_env,
    create_site,
    manage,
    redis_installed,
    start_workers,
    stop_servers,
)

SITE_ORIGIN = "http://acme.test"


def process_env(**settings: str) -> dict[str, str]:
    """The environment of every e2e app process: devstack's (production settings on
    loopback HTTP) with quick sweeps and heartbeats, plus `settings`."""
    quick = {"SUPPORTDESK_SWEEP_INTERVAL": "1", "SUPPORTDESK_HEARTBEAT_INTERVAL": "2"}
    return app_env(**{**quick, **settings})


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, with no persistence."""
    if not redis_installed():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer.start_new(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _e2e_template(tmp_path_factory) -> Iterator[tuple[Database, Site]]:
    # `migrate` and `create_site` run once, as subprocesses like an operator would;
    # cloning their result costs a fraction of a second per test instead of seconds.
    backend = "sqlite" if os.environ.get("E2E_DATABASE") == "sqlite" else "auto"
    template = Database.create(tmp_path_factory.mktemp("e2e-template"), "e2e_template", backend)
    try:
        env = process_env(DATABASE_URL=template.url)
        manage(env, "migrate", "--noinput")
        yield template, create_site(env, "acme", SITE_ORIGIN)
    finally:
        template.drop()


@pytest.fixture
def e2e_database(
    _e2e_template: tuple[Database, Site], tmp_path: Path, record_property, capsys
) -> Iterator[Database]:
    """A fresh, migrated database holding site acme (`e2e_site`): a PostgreSQL database
    when PostgreSQL answers on 127.0.0.1:5432 (unless E2E_DATABASE=sqlite), else a
    SQLite file; dropped afterwards.

    Which one ran is printed to the terminal and recorded as the `e2e_database`
    property (JUnit XML), so a run can be reported as "PostgreSQL ran" or "SQLite ran".
    """
    database = _e2e_template[0].clone(tmp_path, "e2e")
    record_property("e2e_database", database.backend)
    with capsys.disabled():
        print(f"\n[e2e] {database.backend} ran ({database.name})", flush=True)
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture
def e2e_site(_e2e_template: tuple[Database, Site], e2e_database: Database) -> Site:
    """Site acme, embeddable from http://acme.test, made by `create_site`."""
    return _e2e_template[1]


@pytest.fixture
def e2e_overrides() -> dict[str, str]:
    """Extra environment for the processes; a test changes it by parametrizing this
    name directly, e.g. `@pytest.mark.parametrize("e2e_overrides", [{...}], ids=[...])`."""
    return {}


@pytest.fixture
def e2e_env(
    redis_server: RedisServer, e2e_database: Database, e2e_overrides: dict[str, str]
) -> dict[str, str]:
    """The environment every e2e process of this test runs with: its Redis, its
    (migrated) database, and `e2e_overrides`."""
    return process_env(DATABASE_URL=e2e_database.url, REDIS_URL=redis_server.url, **e2e_overrides)


@pytest.fixture
def spawn_workers(e2e_env: dict[str, str], tmp_path: Path, request) -> Iterator[Callable]:
    """`spawn_workers(n)` starts n daphne processes sharing one Redis and one database.

    They are stopped at teardown; if the test failed, the tail of each worker's log
    is printed.
    """
    workers: list[Server] = []
    failed_before = request.session.testsfailed

    def spawn(n: int) -> list[Server]:
        started = start_workers(n, e2e_env, tmp_path, first=len(workers))
        workers.extend(started)
        return started

    yield spawn
    stop_servers(workers)
    if request.session.testsfailed > failed_before:
        for worker in workers:
            print(f"\n----- {worker.name} (port {worker.port}) log tail -----\n{worker.log_tail()}")


@pytest.fixture
def daphne_workers(spawn_workers: Callable) -> list[Server]:
    """Two daphne workers sharing one Redis and one database."""
    return spawn_workers(2)
