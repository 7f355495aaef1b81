"""`manage.py run_cluster` (`make cluster`): N daphne workers on consecutive ports that
share Redis and the database, stopped together by Ctrl+C, and never restarted behind
the operator's back."""

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import REPO_ROOT, healthy, request, run_blocking, wait_until
from tests.chaos import chaos_enabled
from tests.e2e import process_env

pytest_plugins = ["tests.e2e", "tests.chaos"]
pytestmark = [pytest.mark.chaos, pytest.mark.e2e, chaos_enabled]

STARTUP = 30.0


def consecutive_free_ports(count: int) -> int:
    """A base port such that it and the next count-1 ports are free on loopback."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    pytest.fail("no run of free ports")


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def run_cluster(env: dict, tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "run_cluster.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_cluster", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


def test_run_cluster_refuses_several_workers_without_redis(tmp_path: Path):
    env = process_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")

    done = subprocess.run(
        [sys.executable, "manage.py", "run_cluster", "--workers", "2"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert "REDIS_URL is not set" in done.stderr


def test_run_cluster_serves_on_consecutive_ports_and_ctrl_c_stops_every_worker(
    e2e_env: dict, e2e_site, tmp_path: Path
):
    base = consecutive_free_ports(2)
    process, log = run_cluster(e2e_env, tmp_path, "--workers", "2", "--base-port", str(base))
    try:
        wait_until(
            lambda: healthy(base) and healthy(base + 1),
            timeout=STARTUP,
            what=lambda: f"both workers to answer /healthz\n{log.read_text()}",
        )
        text = log.read_text()
        assert f"worker on http://127.0.0.1:{base}/" in text
        assert f"worker on http://127.0.0.1:{base + 1}/" in text
        health = run_blocking(request(base + 1, "GET", "/healthz")).json()
        assert (health["status"], health["database"], health["redis"]) == ("ok", "ok", "ok")
        assert health["redis_primary"]["role"] == "master"
        workers = children(process.pid)
        assert len(workers) == 2

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "all workers stopped" in log.read_text()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert not healthy(base) and not healthy(base + 1)


def test_a_worker_that_dies_is_reported_and_the_others_stopped_not_restarted(
    e2e_env: dict, e2e_site, tmp_path: Path
):
    base = consecutive_free_ports(2)
    process, log = run_cluster(e2e_env, tmp_path, "--workers", "2", "--base-port", str(base))
    try:
        wait_until(
            lambda: healthy(base) and healthy(base + 1),
            timeout=STARTUP,
            what=lambda: f"both workers to answer /healthz\n{log.read_text()}",
        )
        workers = children(process.pid)
        first = next(
            pid for pid in workers if f"-p\0{base}\0" in Path(f"/proc/{pid}/cmdline").read_text()
        )
        subprocess.run(["kill", "-9", str(first)], check=True)

        assert process.wait(timeout=20) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert f"the worker on port {base} exited with code -9" in log.read_text()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert not healthy(base + 1)
