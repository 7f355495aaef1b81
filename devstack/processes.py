"""The processes of a stack: a private redis-server and listening servers (daphne
workers, or any process answering `/healthz`), each on a free loopback port with its
output in a log file; started, waited for, killed and started again on the same port.
"""

import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from supportdesk.serve import worker_command

from .http import request
from .waiting import StackError, run_blocking, tail, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A port nothing listens on now (the process given it binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen | None, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, from /proc/<pid>/status (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def healthy(port: int) -> bool:
    """Whether something on 127.0.0.1:`port` answers GET /healthz with 200 now."""
    try:
        return run_blocking(request(port, "GET", "/healthz", timeout=2)).status == 200
    except (OSError, TimeoutError, ValueError, IndexError):
        return False


def _launch(command: list[str], log: Path, env: dict[str, str] | None) -> subprocess.Popen:
    # Appended: a process started again on the same port keeps one log.
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


# --- redis ------------------------------------------------------------------------


def redis_installed() -> bool:
    return shutil.which("redis-server") is not None


@dataclass
class RedisServer:
    """A private redis-server on a loopback port, without persistence. `stop()` and
    `start()` again keep its port, as a restart under running workers does; `kill()`
    is SIGKILL. `replica_of`: the port of the master it replicates."""

    port: int
    log: Path
    max_clients: int | None = None
    replica_of: int | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @classmethod
    def start_new(
        cls,
        folder: Path,
        *,
        max_clients: int | None = None,
        name: str = "redis",
        replica_of: int | None = None,
    ) -> "RedisServer":
        server = cls(free_port(), folder / f"{name}.log", max_clients, replica_of)
        server.start()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answers_ping(self) -> bool:
        return _answers_ping(self.port)

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start (or start again, on the same port) and wait until it answers PING."""
        command = [_redis_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        if self.max_clients is not None:
            command += ["--maxclients", str(self.max_clients)]
        if self.replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = _launch_redis(command, self.log, self.port, "redis-server", timeout)

    def stop(self) -> None:
        stop_process(self.process)

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, replicas or sentinels."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def version(self) -> str:
        done = subprocess.run(
            [shutil.which("redis-server") or "redis-server", "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()


@dataclass
class SentinelServer:
    """A private `redis-sentinel` on a loopback port watching the master `master_name`
    on `master_port`, quick to call it down (`down_after_ms`); quorum 2 (of three)."""

    port: int
    folder: Path
    name: str
    master_name: str
    master_port: int
    down_after_ms: int = 1000
    process: subprocess.Popen | None = field(default=None, repr=False)

    @classmethod
    def start_new(
        cls, folder: Path, name: str, master_name: str, master_port: int, **options
    ) -> "SentinelServer":
        server = cls(free_port(), folder, name, master_name, master_port, **options)
        server.start()
        return server

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        # Sentinel rewrites its configuration file as it learns the others and fails
        # over, so each has a file of its own.
        config = self.folder / f"{self.name}.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} 10000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n"
        )
        command = [_redis_binary("redis-sentinel"), str(config)]
        self.process = _launch_redis(command, self.log, self.port, "redis-sentinel", timeout)

    def stop(self) -> None:
        stop_process(self.process)


def sentinel_installed() -> bool:
    return shutil.which("redis-sentinel") is not None


def _redis_binary(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        raise StackError(f"{name} is not installed (apt-get install {name})")
    return binary


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _launch_redis(
    command: list[str], log: Path, port: int, name: str, timeout: float
) -> subprocess.Popen:
    """Start a redis-server (or sentinel) and wait until it answers PING on `port`."""
    process = _launch(command, log, None)
    try:
        wait_until(
            lambda: _still_running(process, name, log) and _answers_ping(port),
            timeout=timeout,
            what=lambda: f"{name} on port {port} to answer PING\n{tail(log)}",
        )
    except BaseException:
        stop_process(process)
        raise
    return process


def _still_running(process: subprocess.Popen, name: str, log: Path) -> bool:
    """True while `process` runs; once it has exited, waiting on is pointless: say so."""
    if process.poll() is None:
        return True
    raise StackError(f"{name} exited with code {process.returncode}\n{tail(log)}")


# --- servers ----------------------------------------------------------------------


@dataclass
class Server:
    """One listening process on a loopback port (a daphne worker, the bench's floor
    relay): ready once it answers GET /healthz. `env` is read at each start, so a
    caller may change it and start the server again with other settings."""

    name: str
    port: int
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @classmethod
    def worker(
        cls, name: str, env: dict[str, str], folder: Path, *, proxy_headers: bool = False
    ) -> "Server":
        """A daphne worker of the app, started exactly as `run_cluster` starts one."""
        port = free_port()
        command = worker_command("127.0.0.1", port, proxy_headers=proxy_headers)
        return cls(name, port, command, env, folder / f"{name}.log")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def healthy(self) -> bool:
        return healthy(self.port)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def log_tail(self) -> str:
        return tail(self.log)

    def launch(self) -> None:
        """Start the process without waiting for it (see `wait_ready`)."""
        self.process = _launch(self.command, self.log, self.env)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until it answers /healthz; give up at once if it exits."""
        wait_until(
            lambda: _still_running(self.process, self.name, self.log) and self.healthy(),
            timeout=timeout,
            what=lambda: f"{self.name} to answer /healthz on port {self.port}\n{self.log_tail()}",
        )

    def start(self, timeout: float = STARTUP_TIMEOUT) -> "Server":
        start_servers([self], timeout)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        stop_process(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL: no goodbye to sockets, Redis or the database."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)


def start_servers(servers: list[Server], timeout: float = STARTUP_TIMEOUT) -> list[Server]:
    """Launch every server, then wait for each (they start up side by side); if one
    does not come up, stop them all and raise."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(timeout)
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def start_workers(
    count: int,
    env: dict[str, str],
    folder: Path,
    *,
    prefix: str = "worker",
    first: int = 0,
    timeout: float = STARTUP_TIMEOUT,
) -> list[Server]:
    """`count` daphne workers named prefix+N (N from `first`), sharing `env`."""
    workers = [Server.worker(f"{prefix}{first + n}", env, folder) for n in range(count)]
    return start_servers(workers, timeout)


def stop_servers(servers: list[Server]) -> None:
    """SIGTERM to every one first (they shut down side by side), then wait for each."""
    for server in servers:
        if server.alive:
            server.process.terminate()
    for server in servers:
        server.stop()
