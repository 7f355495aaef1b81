"""Browser-test harness: Debian's Chromium driven by sync Playwright, one real daphne per
test against a fresh SQLite file, a shop on another origin that embeds the widget, an
origin the site does not allow, and a scripted agent (and visitor) on real sockets.

A test module loads the fixtures with `pytest_plugins = ["tests.browser"]` and imports
the helpers it calls (`AgentSocket`, `VisitorSocket`, `record_dialogs`, ...). Mark the
tests `@pytest.mark.browser`: conftest runs them last.

Waiting is for an event with a deadline: Playwright's auto-waiting `expect(...)`, a frame
on a socket, `/healthz` answering. Nothing sleeps.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin.
"""

import http.cookiejar
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from chat.management.commands.serve_demo import PageServer, serve_shop
from supportdesk.serve import worker_command
from tests.e2e import free_port, tail, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
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
STARTUP_TIMEOUT = 30.0
FRAME_TIMEOUT = 10.0
# Playwright's auto-waiting `expect` gives up after this long (ms).
EXPECT_TIMEOUT = 10_000

# Loopback only: never route test requests through an ambient proxy.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
    """The environment of every app process: production settings on plain loopback HTTP."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "STATIC_ROOT"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="supportdesk.settings",
        DEBUG="0",
        SECURE_COOKIES="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECRET_KEY="browser-tests-" + "k" * 50,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py ARGS` in a subprocess; its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="session")
def app_static(tmp_path_factory) -> Path:
    """collectstatic once: with DEBUG=0 whitenoise serves only from STATIC_ROOT."""
    root = tmp_path_factory.mktemp("static")
    manage(base_env(STATIC_ROOT=str(root)), "collectstatic", "--noinput")
    return root


# The shop's origin is only known once its server has a port: the template's site
# starts with this one, and each test's copy is pointed at its own shop.
TEMPLATE_ORIGIN = "https://shop.invalid"


@dataclass(frozen=True)
class TemplateDatabase:
    path: Path
    site_key: str


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> TemplateDatabase:
    """A migrated SQLite file with the site and agent alice made by the operator
    commands, copied for each test: one Django start-up per command for the whole run
    instead of three per test."""
    path = tmp_path_factory.mktemp("db-template") / "template.sqlite3"
    env = base_env(DATABASE_URL=f"sqlite:///{path}")
    manage(env, "migrate", "--noinput")
    site_key = (
        manage(env, "create_site", "--name", "Kettle & Crane", "--origin", TEMPLATE_ORIGIN)
        .strip()
        .splitlines()[-1]
    )
    manage(
        env,
        "create_agent",
        AGENT_USERNAME,
        "--password",
        AGENT_PASSWORD,
        "--capacity",
        str(AGENT_CAPACITY),
    )
    return TemplateDatabase(path=path, site_key=site_key)


@dataclass
class LiveApp:
    url: str  # http://127.0.0.1:PORT, the app's own origin
    site_key: str
    shop_url: str  # the page on another origin that embeds the widget
    shop_origin: str
    db_path: Path
    env: dict[str, str]
    log: Path
    agent_username: str = AGENT_USERNAME
    agent_password: str = AGENT_PASSWORD
    process: subprocess.Popen | None = field(default=None, repr=False)
    sockets: list = field(default_factory=list, repr=False)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def frame_url(self, site_key: str | None = None) -> str:
        return f"{self.url}/widget/frame/{site_key or self.site_key}/"

    def manage(self, *args: str) -> str:
        """A management command against this app's database (e.g. another create_agent)."""
        return manage(self.env, *args)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """One read straight from the app's SQLite file."""
        conn = sqlite3.connect(self.db_path, timeout=20)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def healthy(self) -> bool:
        try:
            with _http.open(self.url + "/healthz", timeout=1) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> None:
        """Start daphne (again: same port, same database) and wait until it answers."""
        port = self.url.rsplit(":", 1)[1]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                worker_command("127.0.0.1", port),
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process = self.process
        wait_until(
            lambda: process.poll() is None and self.healthy(),
            timeout=STARTUP_TIMEOUT,
            what=f"daphne on {self.url} to answer /healthz\n{tail(self.log)}",
        )

    def stop(self) -> None:
        """Stop daphne; every socket to it drops."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def shop() -> Iterator[PageServer]:
    """The customer's shop: its own origin (another port), pages set by `live_app`."""
    server = PageServer().start()
    yield server
    server.stop()


@pytest.fixture
def live_app(tmp_path: Path, shop: PageServer, app_static: Path, migrated_db: TemplateDatabase):
    """One daphne process on a free port with a fresh database holding a site that the
    shop's origin may embed, and agent alice (capacity 2, away until she says otherwise)."""
    db_path = tmp_path / "app.sqlite3"
    shutil.copyfile(migrated_db.path, db_path)
    site_key = migrated_db.site_key
    # The copy's site is this test's shop's (before the app starts, so nothing caches it).
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute(
                "UPDATE chat_site SET allowed_origins = ? WHERE key = ?",
                (json.dumps([shop.origin]), site_key),
            )
    finally:
        conn.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(DATABASE_URL=f"sqlite:///{db_path}", STATIC_ROOT=str(app_static))
    serve_shop(shop, app_url=url, site_key=site_key)
    app = LiveApp(
        url=url,
        site_key=site_key,
        shop_url=shop.origin + "/",
        shop_origin=shop.origin,
        db_path=db_path,
        env=env,
        log=tmp_path / "daphne.log",
    )
    try:
        app.start()
        yield app
    finally:
        for sock in app.sockets:
            sock.close()
        app.stop()
        # Shown with a failing test's report ("Captured stdout teardown").
        print(f"--- daphne log ({app.log}) ---\n{tail(app.log)}")


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


def login_cookie(app: LiveApp, username: str, password: str) -> str:
    """Sign in through the real login form; the `Cookie` header of the signed-in session."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar)
    )
    login_url = app.url + "/accounts/login/"
    html = opener.open(login_url, timeout=10).read().decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    if match is None:
        pytest.fail("the login page has no CSRF token field")
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": match.group(1)}
    ).encode()
    opener.open(urllib.request.Request(login_url, data=form), timeout=10)
    cookies = {c.name: c.value for c in jar}
    if "sessionid" not in cookies:
        pytest.fail(f"logging in as {username} did not start a session")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


class Socket:
    """A JSON-frame WebSocket that remembers every frame it received."""

    ws: ClientConnection

    def __init__(self, app: "LiveApp") -> None:
        self.frames: list[dict] = []
        self._unread: list[dict] = []
        app.sockets.append(self)  # closed before the app stops

    def send(self, frame: dict) -> None:
        self.ws.send(json.dumps(frame))

    def expect(self, frame_type: str, timeout: float = FRAME_TIMEOUT, **fields: Any) -> dict:
        """The next frame of this type whose fields match (frames read past are kept).
        Pass `from` as `from_`."""
        fields = {k.rstrip("_"): v for k, v in fields.items()}

        def matches(frame: dict) -> bool:
            return frame.get("type") == frame_type and all(
                frame.get(k) == v for k, v in fields.items()
            )

        for i, frame in enumerate(self._unread):
            if matches(frame):
                del self._unread[: i + 1]
                return frame
        self._unread.clear()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                frame = json.loads(self.ws.recv(timeout=remaining))
            except (TimeoutError, ConnectionClosed) as exc:
                seen = [f.get("type") for f in self.frames[-15:]]
                pytest.fail(
                    f"no {frame_type} frame matching {fields} within {timeout}s "
                    f"({type(exc).__name__}); last frames: {seen}"
                )
            self.frames.append(frame)
            if matches(frame):
                return frame

    def received(self, frame_type: str, **fields: Any) -> list[dict]:
        """Every frame of this type received so far whose fields match."""
        return [
            f
            for f in self.frames
            if f.get("type") == frame_type and all(f.get(k) == v for k, v in fields.items())
        ]

    def close(self) -> None:
        self.ws.close()


class AgentSocket(Socket):
    """An agent signed in through the login form, on /ws/agent/ with the app's Origin."""

    def __init__(
        self, app: LiveApp, username: str = AGENT_USERNAME, password: str = AGENT_PASSWORD
    ):
        super().__init__(app)
        cookie = login_cookie(app, username, password)
        self.ws = connect(
            app.ws_url + "/ws/agent/",
            origin=app.url,
            additional_headers={"Cookie": cookie},
            open_timeout=FRAME_TIMEOUT,
            legacy=True,
            # Keep reading while the test does not: with a full queue the client stops
            # reading, never sees the server's close frame, and close() waits 10 s.
            max_queue=None,
        )
        self.ready = self.expect("ready")

    def presence(self, status: str) -> None:
        self.send({"type": "presence", "status": status})
        self.expect("presence", status=status)

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


class VisitorSocket(Socket):
    """A visitor without a browser (another shopper), from a given page origin."""

    def __init__(self, app: LiveApp, origin: str):
        super().__init__(app)
        request = urllib.request.Request(
            app.url + "/api/v1/visitor-sessions",
            data=json.dumps({"site_key": app.site_key}).encode(),
            headers={"Content-Type": "application/json", "Origin": origin},
        )
        with _http.open(request, timeout=10) as response:
            self.token = json.loads(response.read())["visitor_token"]
        self.ws = connect(
            app.ws_url + "/ws/visitor/", origin=origin, open_timeout=FRAME_TIMEOUT, legacy=True
        )
        self.send(
            {"type": "hello", "site_key": app.site_key, "visitor_token": self.token, "last_seq": 0}
        )
        self.ready = self.expect("ready")

    def say(self, body: str) -> dict:
        client_msg_id = secrets.token_hex(8)
        self.send({"type": "message.send", "client_msg_id": client_msg_id, "body": body})
        return self.expect("message.ack", client_msg_id=client_msg_id)
