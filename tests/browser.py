"""Browser-test harness: Debian's Chromium driven by sync Playwright, one real daphne per
test against a fresh SQLite file, a shop on another origin that embeds the widget, an
origin the site does not allow, and a scripted agent (and visitor) on real sockets.

A test module loads the fixtures with `pytest_plugins = ["tests.browser"]` and imports
the helpers it calls (`AgentSocket`, `VisitorSocket`, `record_dialogs`, ...). Mark the
tests `@pytest.mark.browser`: conftest runs them last.

The app's process, its database and the scripted clients are devstack's (`Server`,
`Database`, `BlockingPeer`). Waiting is for an event with a deadline: Playwright's
auto-waiting `expect(...)`, a frame on a socket, `/healthz` answering. Nothing sleeps.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin.
"""

import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack import (
    BlockingPeer,
    Database,
    Server,
    Site,
    app_env,
    connect_agent,
    connect_visitor,
    create_agent,
    create_site,
    login,
    manage,
    run_blocking,
    set_presence,
    visitor_session,
)
from supportdesk.management.commands.serve_demo import PageServer, serve_shop

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AGENT_USERNAME = "alice"
AGENT_PASSWORD = "alice-pass"
AGENT_CAPACITY = 2
FRAME_TIMEOUT = 10.0
# Playwright's auto-waiting `expect` gives up after this long (ms).
EXPECT_TIMEOUT = 10_000


# --- the browser ----------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium (never a downloaded build), one per test session."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    # Sync Playwright runs an event loop in this thread; Django's async-safety guard
    # would otherwise refuse any ORM use in the same process.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_context(chromium) -> Iterator[Callable[..., Any]]:
    """`new_context(**options)`: a fresh browser context (its own storage, like another
    browser), closed after the test."""
    contexts = []

    def make(**options):
        context = chromium.new_context(**{"viewport": {"width": 1280, "height": 800}, **options})
        context.set_default_timeout(EXPECT_TIMEOUT)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def record_dialogs(page) -> list[str]:
    """Every alert/confirm/prompt the page (or any of its frames) opens, dismissed."""
    seen: list[str] = []

    def on_dialog(dialog) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return seen


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """Where a screenshot goes: $SCREENSHOTS_DIR (`make screenshots`) or the test's tmp."""
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


# --- the app --------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    """The environment of every app process: devstack's (production settings on plain
    loopback HTTP), quieter logs, plus `extra`."""
    return app_env(**{"LOG_LEVEL": "WARNING", **extra})


@pytest.fixture(scope="session")
def app_static(tmp_path_factory) -> Path:
    """collectstatic once: with DEBUG=0 whitenoise serves only from STATIC_ROOT."""
    root = tmp_path_factory.mktemp("static")
    manage(base_env(STATIC_ROOT=str(root)), "collectstatic", "--noinput")
    return root


# The shop's origin is only known once its server has a port: the template's site
# starts with this one, and each test's copy is pointed at its own shop.
TEMPLATE_ORIGIN = "https://shop.invalid"


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> tuple[Database, Site]:
    """A migrated SQLite file with the site and agent alice made by the operator
    commands, copied for each test: one Django start-up per command for the whole run
    instead of three per test."""
    template = Database.create(tmp_path_factory.mktemp("db-template"), "template", "sqlite")
    env = base_env(DATABASE_URL=template.url)
    manage(env, "migrate", "--noinput")
    site = create_site(env, "Kettle & Crane", TEMPLATE_ORIGIN)
    create_agent(env, AGENT_USERNAME, password=AGENT_PASSWORD, capacity=AGENT_CAPACITY)
    return template, site


@dataclass
class LiveApp:
    server: Server  # one daphne; `start()` and `stop()` it, `env` is its environment
    database: Database
    site_key: str
    shop_url: str  # the page on another origin that embeds the widget
    shop_origin: str
    agent_username: str = AGENT_USERNAME
    agent_password: str = AGENT_PASSWORD
    sockets: list = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT, the app's own origin."""
        return self.server.origin

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    def frame_url(self, site_key: str | None = None) -> str:
        return f"{self.url}/widget/frame/{site_key or self.site_key}/"

    def manage(self, *args: str) -> str:
        """A management command against this app's database (e.g. another create_agent)."""
        return manage(self.env, *args)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """One statement straight on the app's SQLite file."""
        return self.database.query(sql, params)

    def start(self) -> None:
        """Start daphne (again: same port, same database) and wait until it answers."""
        self.server.start()

    def stop(self) -> None:
        """Stop daphne; every socket to it drops."""
        self.server.stop()


@pytest.fixture
def shop() -> Iterator[PageServer]:
    """The customer's shop: its own origin (another port), pages set by `live_app`."""
    server = PageServer().start()
    yield server
    server.stop()


@pytest.fixture
def live_app(
    tmp_path: Path, shop: PageServer, app_static: Path, migrated_db: tuple[Database, Site]
):
    """One daphne process on a free port with a fresh database holding a site that the
    shop's origin may embed, and agent alice (capacity 2, away until she says otherwise)."""
    template, site = migrated_db
    database = template.clone(tmp_path, "app")
    # The copy's site is this test's shop's (before the app starts, so nothing caches it).
    database.query(
        "UPDATE chat_site SET allowed_origins = %s WHERE key = %s",
        (json.dumps([shop.origin]), site.key),
    )
    env = base_env(DATABASE_URL=database.url, STATIC_ROOT=str(app_static))
    server = Server.worker("daphne", env, tmp_path)
    serve_shop(shop, app_url=server.origin, site_key=site.key)
    app = LiveApp(server, database, site.key, shop.origin + "/", shop.origin)
    try:
        app.start()
        yield app
    finally:
        for sock in app.sockets:
            sock.close()
        app.stop()
        # Shown with a failing test's report ("Captured stdout teardown").
        print(f"--- daphne log ({server.log}) ---\n{server.log_tail()}")


EVIL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not the shop</title></head>
<body><h1>A page the site does not allow</h1>
<iframe id="stolen" title="stolen chat" src="{frame_url}" width="380" height="600"></iframe>
<script src="{app_url}/widget.js" data-site="{site_key}" async></script>
</body></html>
"""


@pytest.fixture
def evil(live_app: LiveApp) -> Iterator[PageServer]:
    """Another origin, not among the site's allowed origins, that copied the embed tag
    and also frames the chat page directly."""
    server = PageServer()
    server.page(
        "/",
        EVIL_PAGE.format(
            frame_url=live_app.frame_url(), app_url=live_app.url, site_key=live_app.site_key
        ),
    )
    server.start()
    yield server
    server.stop()


# --- scripted participants on real sockets --------------------------------------


class AgentSocket(BlockingPeer):
    """An agent signed in through the login form, on /ws/agent/ with the app's Origin."""

    def __init__(
        self, app: LiveApp, username: str = AGENT_USERNAME, password: str = AGENT_PASSWORD
    ):
        cookie = run_blocking(login(app.server, username, password))
        peer, self.ready = run_blocking(
            connect_agent(app.server, cookie, username, frame_timeout=FRAME_TIMEOUT)
        )
        super().__init__(peer)
        app.sockets.append(self)  # closed before the app stops

    def presence(self, status: str) -> None:
        run_blocking(set_presence(self.peer, status))

    def reply(self, conversation: int, body: str) -> dict:
        """Send a message into a conversation; its ack."""
        client_msg_id = secrets.token_hex(8)
        self.send(
            {
                "type": "message.send",
                "conversation": conversation,
                "client_msg_id": client_msg_id,
                "body": body,
            }
        )
        return self.expect("message.ack", client_msg_id=client_msg_id)


class VisitorSocket(BlockingPeer):
    """A visitor without a browser (another shopper, or another tab of a visitor when
    given its `token`), from a given page origin."""

    def __init__(self, app: LiveApp, origin: str, token: str | None = None, **options: Any):
        site = Site(app.site_key, origin)
        self.token = token or run_blocking(visitor_session(app.server, site))
        options.setdefault("frame_timeout", FRAME_TIMEOUT)
        peer, self.ready = run_blocking(
            connect_visitor(app.server, site, self.token, "visitor", **options)
        )
        super().__init__(peer)
        app.sockets.append(self)  # closed before the app stops

    def say(self, body: str, client_msg_id: str | None = None) -> dict:
        client_msg_id = client_msg_id or secrets.token_hex(8)
        self.send({"type": "message.send", "client_msg_id": client_msg_id, "body": body})
        return self.expect("message.ack", client_msg_id=client_msg_id)
