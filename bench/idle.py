"""Idle connections: visitors with the widget open (session, socket, `hello` answered by
`ready`) and no chat, added in steps; the workers' RSS per socket from /proc after each
step. Stops at the first failure (refused, timed out, closed) and reports it.
"""

import asyncio
import time

from devstack import Peer, Site

from .progress import bar, bounded
from .stack import Stack
from .stats import summary
from .steady import connect_visitor

CONNECT_CONCURRENCY = 64
SETTLE_SECONDS = 1.0  # let the workers finish the step's bookkeeping before reading RSS


async def _add_sockets(
    stack: Stack, site: Site, peers: list[Peer], need: int, target: int
) -> tuple[list[float], str | None]:
    """Open `need` more idle visitor sockets into `peers`; the open-to-ready times, and
    the first failure (after which no more are tried)."""
    workers = stack.workers
    progress = bar(f"idle sockets up to {target}", need, "sockets")
    hello_ms: list[float] = []
    failure: str | None = None
    semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int) -> None:
        nonlocal failure
        async with semaphore:
            if failure is not None:
                return
            t0 = time.perf_counter()
            try:
                peer = await connect_visitor(workers[i % len(workers)], site, f"idle{i}")
            except Exception as exc:  # the first failure ends the scenario
                if failure is None:
                    failure = f"socket {i + 1}: {type(exc).__name__}: {exc}"[:300]
                return
            hello_ms.append((time.perf_counter() - t0) * 1000)
            peers.append(peer)
            progress.update(1)

    first = len(peers)
    try:
        await asyncio.gather(*(one(first + k) for k in range(need)))
    finally:
        progress.close()
    return hello_ms, failure


async def run_idle(stack: Stack, site: Site, steps: list[int]) -> dict:
    workers = stack.workers
    baseline = {w.name: w.rss() for w in workers}
    base_total = sum(baseline.values())
    peers: list[Peer] = []
    failure: str | None = None
    rows = []
    for target in steps:
        need = target - len(peers)
        if need <= 0:
            continue
        started = time.monotonic()
        hello_ms, failure = await _add_sockets(stack, site, peers, need, target)
        elapsed = time.monotonic() - started
        await asyncio.sleep(SETTLE_SECONDS)
        closed = sum(1 for p in peers if p.close_code is not None)
        if closed and failure is None:
            failure = f"{closed} idle sockets were closed by the server"
        rss = {w.name: w.rss() for w in workers}
        total = sum(rss.values())
        rows.append(
            {
                "sockets": len(peers),
                "open": len(peers) - closed,
                "rss_mib": {name: round(v / 2**20, 1) for name, v in rss.items()},
                "rss_growth_mib": round((total - base_total) / 2**20, 1),
                "kib_per_socket": round((total - base_total) / 1024 / max(len(peers), 1), 1),
                "connect_per_s": round(need / elapsed, 1) if failure is None else None,
                "open_to_ready_ms": summary(hello_ms),
            }
        )
        if failure is not None:
            break
    await bounded(
        peers, lambda p: p.close(), limit=256, description="idle sockets close", unit="sockets"
    )
    return {
        "steps": steps,
        "baseline_rss_mib": {name: round(v / 2**20, 1) for name, v in baseline.items()},
        "rows": rows,
        "held": rows[-1]["open"] if rows else 0,
        "failure": failure,
    }
