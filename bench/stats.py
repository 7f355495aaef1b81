"""Percentiles, CPU accounting and machine facts for the results file."""

import math
import os
import platform
import resource
import subprocess
from dataclasses import dataclass, field
from importlib import metadata

from devstack import REPO_ROOT

from .stack import cpu_seconds


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 50), 3),
        "p95": round(percentile(ordered, 95), 3),
        "p99": round(percentile(ordered, 99), 3),
        "max": round(ordered[-1], 3),
        "mean": round(sum(ordered) / len(ordered), 3),
    }


def cdf_points(values: list[float], points: int = 200) -> list[float]:
    """`points` + 1 quantiles from 0 to 100 %, enough to redraw the CDF from the JSON."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [round(percentile(ordered, 100 * i / points), 3) for i in range(points + 1)]


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """CPU used by named process groups (and this client process) over a window."""

    groups: dict[str, list[int]]
    start: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    client_start: float = 0.0

    def begin(self, now: float) -> None:
        self.started_at = now
        self.client_start = own_cpu_seconds()
        self.start = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}

    def end(self, now: float) -> dict[str, float]:
        """Percent of one core per group over the window (200 % = both cores)."""
        wall = max(now - self.started_at, 1e-9)
        out = {"client": round(100 * (own_cpu_seconds() - self.client_start) / wall, 1)}
        for name, pids in self.groups.items():
            used = sum(cpu_seconds(p) for p in pids) - self.start[name]
            out[name] = round(100 * used / wall, 1)
        return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            memory = f"{int(meminfo.readline().split()[1]) // 1024 // 1024} GiB"
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    out = {}
    for name in (
        "Django",
        "channels",
        "channels-redis",
        "daphne",
        "Twisted",
        "autobahn",
        "redis",
        "psycopg",
        "websockets",
        "msgpack",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> dict:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
