"""`python -m supportdesk.serve`: daphne on the event loop the settings name."""

import asyncio
import subprocess
import sys

import pytest
import uvloop

from devstack import REPO_ROOT
from supportdesk import serve


@pytest.fixture
def default_policy_afterwards():
    yield
    asyncio.set_event_loop_policy(None)


def test_workers_run_on_uvloop_unless_told_otherwise(monkeypatch, default_policy_afterwards):
    monkeypatch.delenv("SUPPORTDESK_EVENT_LOOP", raising=False)
    assert serve.use_configured_loop() == "uvloop"
    assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)

    monkeypatch.setenv("SUPPORTDESK_EVENT_LOOP", "asyncio")
    asyncio.set_event_loop_policy(None)
    assert serve.use_configured_loop() == "asyncio"
    assert not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)


def test_an_unknown_event_loop_is_refused_before_daphne_starts():
    result = subprocess.run(
        [sys.executable, "-m", "supportdesk.serve", "supportdesk.asgi:application"],
        cwd=REPO_ROOT,
        env={"SUPPORTDESK_EVENT_LOOP": "tokio", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "SUPPORTDESK_EVENT_LOOP must be uvloop or asyncio" in result.stderr


FROZEN = (
    "import gc, sys; from supportdesk import serve; "
    "serve.freeze_loaded_objects(sys.argv[1]); print(gc.get_freeze_count())"
)


@pytest.mark.parametrize(("setting", "frozen"), [(None, True), ("0", False)])
def test_a_worker_freezes_what_loading_the_application_made(setting, frozen):
    # Left to the collector, the ~100,000 objects of Django and the app were walked by
    # every full collection, pausing the worker's sockets (docs/performance.md).
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "supportdesk.settings"}
    if setting is not None:
        env["SUPPORTDESK_GC_FREEZE"] = setting
    result = subprocess.run(
        [sys.executable, "-c", FROZEN, "supportdesk.asgi:application"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    count = int(result.stdout.split()[-1])
    assert (count > 50_000) if frozen else (count == 0), count
