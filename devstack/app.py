"""The app as an operator sets it up: the environment of its processes (production
settings on plain loopback HTTP) and the management commands that migrate, create
sites and create agents, run as subprocesses exactly as an operator runs them.
"""

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass

from .processes import REPO_ROOT
from .waiting import StackError

MANAGE_TIMEOUT = 300.0

# Settings an app process must get from us, never from whoever runs the stack.
_APP_SETTINGS = {
    "DATABASE_URL",
    "REDIS_URL",
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
