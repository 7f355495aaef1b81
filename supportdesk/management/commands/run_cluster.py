"""Start N daphne workers on consecutive ports: the production shape behind a proxy.

Every worker inherits this process's environment (`REDIS_URL`, `DATABASE_URL`, ...), so
they share one Redis channel layer and one database. Ctrl+C (or SIGTERM) stops them all.
A worker that dies is reported and the others are stopped: nothing is restarted
silently, because a supervisor (systemd, Kubernetes, ...) should own restarts and their
logs, not this command. See docs/deploy.md.
"""

import signal
import subprocess
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from supportdesk.serve import worker_command
from supportdesk.settings import BASE_DIR

STOP_TIMEOUT = 10.0


class Command(BaseCommand):
    help = (
        "Start N daphne workers on consecutive ports sharing REDIS_URL and DATABASE_URL; "
        "Ctrl+C stops them all."
    )

    def add_arguments(self, parser):
        parser.add_argument("--workers", type=int, default=2, help="how many (default 2)")
        parser.add_argument("--base-port", type=int, default=8001, help="the first port")
        parser.add_argument("--host", default="127.0.0.1", help="address to bind")

    def handle(self, *args, workers: int, base_port: int, host: str, **options):
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        if not 1 <= base_port <= 65536 - workers:
            raise CommandError(f"ports {base_port}..{base_port + workers - 1} are not valid")
        if workers > 1 and not settings.REDIS_URL:
            raise CommandError(
                "REDIS_URL is not set: without it each worker has its own in-memory channel "
                "layer and sockets on different workers never hear each other. Set REDIS_URL "
                "or run one worker."
            )
        ports = [base_port + n for n in range(workers)]
        processes = [self._start(host, port) for port in ports]
        for port in ports:
            self.stdout.write(f"worker on http://{host}:{port}/")
        self.stdout.write(f"{workers} workers started; Ctrl+C stops them.")
        self.stdout.flush()

        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, request_stop)
        failed = None
        try:
            while not stopping and failed is None:
                for port, process in zip(ports, processes, strict=True):
                    if process.poll() is not None:
                        failed = (port, process.returncode)
                        break
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            stopping = True
        finally:
            self._stop_all(processes)
        if failed is not None:
            port, code = failed
            raise CommandError(
                f"the worker on port {port} exited with code {code}; stopped the others "
                "(nothing is restarted automatically)"
            )
        self.stdout.write("all workers stopped")

    def _start(self, host: str, port: int) -> subprocess.Popen:
        return subprocess.Popen(
            worker_command(host, port, proxy_headers=True),
            cwd=BASE_DIR,
        )

    def _stop_all(self, processes: list[subprocess.Popen]) -> None:
        # Ctrl+C in a terminal reaches the workers too; SIGINT again is harmless and
        # covers SIGTERM or a death of this command's own making.
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
