"""The app as an operator sets it up: the environment of its processes (production
settings on plain loopback HTTP) and the management commands that migrate, create
sites and create agents, run as subprocesses exactly as an operator runs them.
"""

import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlencode

from .http import request
from .processes import REPO_ROOT, Server
from .waiting import StackError

MANAGE_TIMEOUT = 300.0

# Settings an app process must get from us, never from whoever runs the stack.
_APP_SETTINGS = {
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_CHANNEL_URLS",
    "DEBUG",
    "SECURE_COOKIES",
    "ALLOWED_HOSTS",
    "SECRET_KEY",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_SSL_REDIRECT",
    "LOG_LEVEL",
    "STATIC_ROOT",
}


def app_env(**settings: str) -> dict[str, str]:
    """The environment of an app process (a worker, a management command): production
    settings (DEBUG=0) on plain loopback HTTP, no SUPPORTDESK_*, DJANGO_* or other app
    setting inherited from the caller, a SECRET_KEY of its own; then `settings`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SUPPORTDESK_", "DJANGO_")) and key not in _APP_SETTINGS
    }
    env.update(
        DJANGO_SETTINGS_MODULE="supportdesk.settings",
        DEBUG="0",
        SECURE_COOKIES="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECRET_KEY="devstack-" + secrets.token_urlsafe(48),
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = MANAGE_TIMEOUT) -> str:
    """Run `manage.py ARGS` like an operator would; its stdout."""
    __tracebackhide__ = True
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise StackError(
            f"manage.py {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-2000:]}{done.stderr}"
        )
    return done.stdout


@dataclass(frozen=True)
class Site:
    """A site the widget may be embedded in, from `origin`."""

    key: str
    origin: str


def create_site(env: dict[str, str], name: str, origin: str) -> Site:
    """`create_site`: its key is the command's last line of output."""
    out = manage(env, "create_site", "--name", name, "--origin", origin)
    return Site(out.strip().splitlines()[-1], origin)


def create_agent(
    env: dict[str, str],
    username: str,
    *,
    capacity: int,
    password: str | None = None,
    sites: tuple[str, ...] = (),
) -> str:
    """`create_agent` (serving `sites`, or every site); returns the password."""
    # Never starting with "-", which would read as an option.
    password = password or f"{username}-{secrets.token_urlsafe(12)}"
    args = ["create_agent", username, "--password", password, "--capacity", str(capacity)]
    for key in sites:
        args += ["--site", key]
    manage(env, *args)
    return password


async def login(server: Server, username: str, password: str) -> str:
    """Sign in through the real form at /accounts/login/ (csrftoken, then the POST);
    returns the Cookie header of the signed-in session."""
    page = await request(server.port, "GET", "/accounts/login/")
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    cookies = page.cookies()
    if match is None or "csrftoken" not in cookies:
        raise StackError(f"no CSRF token on the login page (status {page.status})")
    form = {
        "csrfmiddlewaretoken": match.group(1).decode(),
        "username": username,
        "password": password,
        "next": "/agent/",
    }
    answer = await request(
        server.port,
        "POST",
        "/accounts/login/",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken']}",
            "Referer": server.url("/accounts/login/"),
        },
        body=urlencode(form).encode(),
    )
    cookies.update(answer.cookies())
    if answer.status != 302 or "sessionid" not in cookies:
        raise StackError(f"{username} could not sign in (status {answer.status})")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


async def visitor_session(server: Server, site: Site, token: str | None = None) -> str:
    """POST /api/v1/visitor-sessions from the site's origin (resuming `token` if given);
    returns the visitor token."""
    body = {"site_key": site.key}
    if token is not None:
        body["visitor_token"] = token
    answer = await request(
        server.port,
        "POST",
        "/api/v1/visitor-sessions",
        headers={"Origin": site.origin},
        json=body,
    )
    if answer.status != 201:
        raise StackError(f"POST /api/v1/visitor-sessions answered {answer.status}")
    return answer.json()["visitor_token"]
