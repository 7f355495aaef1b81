"""`python -m bench`: start the stack, run the scenarios, print the table, keep the files.

The quick default (steady at 50 and 200 chats on supportdesk and on the floor, the
burst, idle sockets up to 2,000) finishes in under two minutes on a quiet 2-core
machine; `--chats 500 --levels 100,200,500,1000 --idle-max 10000 --layer both
--profile` is the full run docs/performance.md reports.
"""

import argparse
import asyncio
import math
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from devstack import (
    REPO_ROOT,
    RedisServer,
    Site,
    StackError,
    create_site,
    login,
    manage,
)

from . import profile, report
from .burst import run_burst
from .idle import run_idle
from .progress import bounded, note
from .stack import (
    REDIS_MAX_CLIENTS,
    BenchError,
    Stack,
    open_database,
    raise_open_files_limit,
    server_env,
)
from .stats import CpuMeter, git_commit, load_average, machine, versions
from .steady import (
    close_all,
    close_supportdesk,
    describe,
    measure,
    open_floor,
    open_supportdesk,
)
from .storm import describe_storm, run_storm

SCENARIOS = ("steady", "floor", "burst", "idle", "storm")
DEFAULT_SCENARIOS = ("steady", "floor", "burst", "idle")
SITE_ORIGIN = "http://shop.bench.test"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure supportdesk against the floor (see docs/performance.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    p.add_argument("--chats", type=int, default=200, help="main steady level (concurrent chats)")
    p.add_argument(
        "--levels",
        default="50",
        help="more steady levels for latency vs concurrency (e.g. 100,500)",
    )
    p.add_argument("--interval", type=float, default=2.0, help="seconds between messages per side")
    p.add_argument("--duration", type=float, default=8.0, help="seconds measured per steady run")
    p.add_argument(
        "--drain",
        type=float,
        default=5.0,
        help="after the last send, a message not delivered once this many seconds pass with "
        "no delivery at all counts as lost",
    )
    p.add_argument("--agent-capacity", type=int, default=50, help="steady agents' capacity")
    p.add_argument(
        "--layer",
        choices=("pubsub", "core", "both"),
        default="pubsub",
        help="channel layer of the workers; 'both' adds a run of the main level on 'core'",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every supportdesk worker (repeatable)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE[,KEY=VALUE]",
        help="one more steady run at the main level, workers restarted with these settings "
        "(repeatable; for before/after comparisons within one run)",
    )
    p.add_argument("--workers", type=int, default=2, help="daphne workers (and floor relays)")
    p.add_argument(
        "--database",
        default="auto",
        help="auto (DATABASE_URL, else PostgreSQL on 127.0.0.1:5432, else SQLite), "
        "postgres, sqlite, or a database URL",
    )
    p.add_argument("--burst-visitors", type=int, default=500)
    p.add_argument("--burst-window", type=float, default=1.0, help="seconds the arrivals span")
    p.add_argument("--burst-agents", type=int, default=50)
    p.add_argument("--burst-capacity", type=int, default=5)
    p.add_argument("--idle-max", type=int, default=2000, help="idle sockets to step up to")
    p.add_argument(
        "--storm-visitors",
        type=int,
        default=1000,
        help="storm: visitor sockets with open chats that reconnect after the restart",
    )
    p.add_argument(
        "--storm-jitter",
        type=float,
        default=0.5,
        help="storm: each widget's first retry waits a uniform time up to this (chat.js)",
    )
    p.add_argument(
        "--storm-rounds",
        type=int,
        default=1,
        help="storm: rounds, each running every variant in turn (A B A B ...)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="one more steady run at the main level with py-spy on worker 0; the burst"
        " is sampled too",
    )
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    p.add_argument("--tag", default="", help="file name stem (default: bench-<UTC time>)")
    p.add_argument("--keep-logs", action="store_true", help="keep the work directory")
    return p


def idle_steps(maximum: int) -> list[int]:
    steps = [n for n in (500, 1000, 2000, 5000, 10_000, 20_000) if n < maximum]
    return [*steps, maximum]


def _settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def worker_variants(args: argparse.Namespace) -> list[tuple[str, dict[str, str]]]:
    """(label, worker settings) for each configuration the steady scenario runs on;
    the first is the one every scenario uses, the others run the main level only."""
    base = _settings(args.env)
    first = "core" if args.layer == "core" else "pubsub"
    variants = [(first, {**base, "SUPPORTDESK_CHANNEL_LAYER": first})]
    if args.layer == "both":
        variants.append(("core", {**base, "SUPPORTDESK_CHANNEL_LAYER": "core"}))
    for spec in args.variant:
        label, sep, rest = spec.partition(":")
        if not sep or not label:
            raise BenchError(f"expected LABEL:KEY=VALUE[,KEY=VALUE], got {spec!r}")
        variants.append(
            (label, {**base, "SUPPORTDESK_CHANNEL_LAYER": first, **_settings(rest.split(","))})
        )
    return variants


async def python_async(env: dict[str, str], *args: str) -> str:
    """`python ARGS` in the repository, without blocking the event loop; its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    if process.returncode != 0:
        raise BenchError(f"python {' '.join(args[:2])} exited {process.returncode}:\n{err}")
    return out.decode()


async def create_agents(env: dict, prefix: str, count: int, capacity: int, site: str) -> list:
    """`count` agents made by the `create_agent` command (in two processes, one per
    core: hashing each password is most of the cost); (username, password) each."""
    # A password starting with "-" would read as an option on the command line.
    logins = [(f"{prefix}{i:03d}", "pw" + secrets.token_urlsafe(16)) for i in range(count)]
    batches = [logins[i::2] for i in range(2) if logins[i::2]]

    async def create(batch):
        pairs = [f"{username}:{password}" for username, password in batch]
        await python_async(
            env, "-m", "bench.create_agents", "--capacity", str(capacity), "--site", site, *pairs
        )

    note(f"create_agent x {count} ({prefix}*, capacity {capacity})")
    await asyncio.gather(*(create(batch) for batch in batches))
    return logins


async def sign_in(stack: Stack, logins: list) -> list[tuple[str, str]]:
    worker = stack.workers[0]

    async def one(pair):
        return pair[0], await login(worker, *pair)

    return await bounded(logins, one, limit=4, description="agents log in", unit="agents")


async def run(args: argparse.Namespace) -> dict:
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise BenchError(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    levels = sorted({*_ints(args.levels), args.chats})
    variants = worker_variants(args)
    nofile = raise_open_files_limit()
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": load_average(),
        "machine": machine(),
        "versions": versions(),
        "git": git_commit(),
        "parameters": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "levels": levels,
            "open_files_limit": nofile[0],
        },
        "steady": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="supportdesk-bench-"))
    note(f"work directory {workdir}; load average {results['load_average_before']}")
    redis = RedisServer.start_new(workdir, max_clients=REDIS_MAX_CLIENTS)
    stack = None
    try:
        database = open_database(args.database, workdir)
        version = database.version()
        results["database"] = {"backend": database.backend, "version": version}
        results["versions"]["redis-server"] = redis.version()
        if database.backend == "SQLite":
            note("PostgreSQL did not answer on 127.0.0.1:5432: this run uses SQLite")
        env = server_env(database, redis)
        stack = Stack(workdir, redis, database, env)
        started = time.monotonic()
        note(f"{database.backend} {version}: migrate, create_site, create_agent")
        manage(env, "migrate", "--noinput")
        steady_site = create_site(env, "bench", SITE_ORIGIN)
        burst_site = create_site(env, "burst", SITE_ORIGIN)
        steady_logins = []
        if "steady" in scenarios:
            count = math.ceil(max(levels) / args.agent_capacity)
            steady_logins = await create_agents(
                env, "steady-agent-", count, args.agent_capacity, steady_site.key
            )
        storm_site = create_site(env, "storm", SITE_ORIGIN)
        storm_logins = []
        if "storm" in scenarios:
            count = math.ceil(args.storm_visitors / args.agent_capacity)
            storm_logins = await create_agents(
                env, "storm-agent-", count, args.agent_capacity, storm_site.key
            )
        burst_logins = []
        if "burst" in scenarios:
            burst_logins = await create_agents(
                env, "burst-agent-", args.burst_agents, args.burst_capacity, burst_site.key
            )
        if "floor" in scenarios:
            from .floor import create_table_sql

            database.query(create_table_sql(database.backend))
        stack.start_workers(*variants[0], args.workers)
        steady_cookies = await sign_in(stack, steady_logins)
        burst_cookies = await sign_in(stack, burst_logins)
        storm_cookies = await sign_in(stack, storm_logins)
        if "floor" in scenarios:
            stack.start_floor(args.workers)
        results["setup_s"] = round(time.monotonic() - started, 1)
        settings_of = dict(variants)

        def meter(servers) -> CpuMeter:
            return CpuMeter(
                {
                    "servers": [s.pid for s in servers],
                    "redis": [redis.process.pid],
                    "database": stack.database_pids(),
                }
            )

        run_number = 0
        results["errors"] = []

        async def attempt(what: str, scenario):
            """Run one scenario; a failure is recorded and the rest still run."""
            try:
                return await scenario
            except (StackError, OSError) as exc:
                note(f"  {what} failed: {exc}")
                results["errors"].append({"scenario": what, "error": str(exc)[:500]})
                return None

        async def steady_supportdesk(chats: int) -> dict:
            nonlocal run_number
            run_number += 1
            opened = await open_supportdesk(
                stack, steady_site, steady_cookies, chats, args.agent_capacity
            )
            try:
                result = await measure(
                    opened,
                    label=f"supportdesk/{stack.variant} {chats} chats",
                    interval=args.interval,
                    duration=args.duration,
                    drain=args.drain,
                    cpu=meter(stack.workers),
                    run_id=f"s{run_number}",
                )
            finally:
                await close_supportdesk(opened)
            result.update(
                target="supportdesk",
                variant=stack.variant,
                layer=settings_of[stack.variant].get("SUPPORTDESK_CHANNEL_LAYER"),
                settings=settings_of[stack.variant],
            )
            return result

        async def steady_floor(chats: int) -> dict:
            nonlocal run_number
            run_number += 1
            opened = await open_floor(stack.floor, chats, args.agent_capacity, run_number)
            try:
                result = await measure(
                    opened,
                    label=f"floor {chats} chats",
                    interval=args.interval,
                    duration=args.duration,
                    drain=args.drain,
                    cpu=meter(stack.floor),
                    run_id=f"f{run_number}",
                )
            finally:
                await close_all(opened)
            result.update(target="floor", variant=None, layer=None)
            return result

        # Each level on supportdesk, then on the floor, so the pair sees the same
        # machine: run-to-run noise is large, compare only within one run.
        for chats in levels:
            if "steady" in scenarios:
                row = await attempt(f"steady {chats}", steady_supportdesk(chats))
                if row is not None:
                    results["steady"].append(row)
                    describe(row)
            if "floor" in scenarios:
                row = await attempt(f"floor {chats}", steady_floor(chats))
                if row is not None:
                    results["steady"].append(row)
                    describe(row)
        if "burst" in scenarios:
            burst = await attempt(
                "burst",
                run_burst(
                    stack,
                    burst_site,
                    burst_cookies,
                    visitors=args.burst_visitors,
                    window=args.burst_window,
                    capacity=args.burst_capacity,
                    cpu=meter(stack.workers),
                    profile_to=stack.workdir / "py-spy-burst.txt" if args.profile else None,
                ),
            )
            if burst is not None:
                results["burst"] = burst
                note(f"  burst: all placed in {burst['all_placed_s']} s")
        if args.profile and "steady" in scenarios:
            profiled = await attempt(
                "profile", profiled_run(args, stack, steady_site, steady_cookies)
            )
            if profiled is not None:
                results["profile"] = profiled
        if "idle" in scenarios:
            idle = await attempt("idle", run_idle(stack, steady_site, idle_steps(args.idle_max)))
            if idle is not None:
                results["idle"] = idle
                note(f"  idle: {idle['held']} held")
        for label, settings in variants[1:]:
            if "steady" not in scenarios:
                break
            note(f"restarting the workers as {label}: {settings}")
            stack.start_workers(label, settings, args.workers)
            row = await attempt(f"steady {args.chats} ({label})", steady_supportdesk(args.chats))
            if row is not None:
                results["steady"].append(row)
                describe(row)
        if "storm" in scenarios:
            results["storm"] = []
            for round_number in range(args.storm_rounds):
                for label, settings in variants:
                    if stack.variant != label:
                        note(f"restarting the workers as {label}: {settings}")
                        stack.start_workers(label, settings, args.workers)
                    storm = await attempt(
                        f"storm ({label})",
                        run_storm(
                            stack,
                            storm_site,
                            storm_cookies,
                            visitors=args.storm_visitors,
                            capacity=args.agent_capacity,
                            jitter=args.storm_jitter,
                            seed=f"storm-{round_number}",
                            profile_to=stack.workdir / f"py-spy-storm-{label}-{round_number}.txt"
                            if args.profile
                            else None,
                        ),
                    )
                    if storm is not None:
                        storm.update(variant=label, round=round_number, settings=settings)
                        results["storm"].append(storm)
                        describe_storm(storm)
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["load_average_after"] = load_average()
        results["goals"] = report.goals(results)
        return results
    finally:
        if stack is not None:
            stack.close()
        else:
            redis.stop()
        if args.keep_logs:
            note(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def profiled_run(args, stack: Stack, site: Site, cookies) -> dict:
    """A steady run at the main level with py-spy sampling worker 0 (its latency
    figures are not reported: the sampler pauses the worker)."""
    if not profile.available():
        return {"error": "py-spy is not installed (requirements-bench.txt)"}
    worker = stack.workers[0]
    raw = stack.workdir / "py-spy.txt"
    opened = await open_supportdesk(stack, site, cookies, args.chats, args.agent_capacity)
    seconds = max(args.duration - 1, 1)
    try:
        sampler = asyncio.create_task(profile.record(worker.pid, seconds, raw))
        result = await measure(
            opened,
            label=f"profiling {worker.name} at {args.chats} chats",
            interval=args.interval,
            duration=args.duration,
            drain=args.drain,
            cpu=CpuMeter({"servers": [w.pid for w in stack.workers]}),
            run_id="profile",
        )
        done = await sampler
    finally:
        await close_supportdesk(opened)
    if done.returncode != 0 or not raw.exists():
        return {"error": f"py-spy exited {done.returncode}: {done.stderr.decode()[-500:]}"}
    summary = profile.summarize(raw, seconds)
    # Messages this worker took part in: about half of all, sent or received.
    messages = result["delivered"]
    cpu_ms = result["cpu_percent"]["servers"] / 100 * args.duration * 1000
    summary.update(
        worker=worker.name,
        variant=stack.variant,
        chats=args.chats,
        seconds=seconds,
        worker_cpu_ms_per_message=round(cpu_ms / max(messages, 1), 3),
        lost=result["lost"],
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.tag = args.tag or f"bench-{stamp}"
    started = time.monotonic()
    try:
        results = asyncio.run(run(args))
    except StackError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    results["wall_s"] = round(time.monotonic() - started, 1)
    stem = args.out / args.tag
    json_path = stem.with_suffix(".json")
    report.write_json(results, json_path)
    pictures = report.plots(results, stem)
    print(report.table(results))
    for path in (json_path, *pictures):
        print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    print(f"total {results['wall_s']} s")
    return 0
