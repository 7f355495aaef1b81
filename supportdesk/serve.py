"""daphne on uvloop: `python -m supportdesk.serve [daphne's own arguments]`.

daphne runs Twisted on an asyncio event loop that it creates when `daphne.server` is
imported, so the loop implementation has to be chosen before that import: this module
sets uvloop's policy, then hands the command line to daphne unchanged. uvloop runs the
event loop's scheduling, a large share of a worker's CPU per message, in C
(docs/performance.md, change 7).

`SUPPORTDESK_EVENT_LOOP=asyncio` keeps the standard loop (for comparison, or where
uvloop is not available).

It also loads the application before serving and freezes what loading made (Django,
the app, every module: about 100,000 objects) out of the garbage collector's reach.
Those objects live as long as the worker, yet each full collection walked all of them,
and no socket of the worker is served meanwhile (docs/performance.md, change 13).
`SUPPORTDESK_GC_FREEZE=0` leaves the collector as it is.
"""

import asyncio
import gc
import importlib
import os
import sys

# Inbound WebSocket messages and frames daphne accepts: twice the largest frame the
# protocol allows (chat/protocol.py MAX_FRAME_BYTES), so an oversized frame reaches the
# consumer and gets its close code (4009) instead of a bare protocol error.
MAX_INBOUND_BYTES = 131072


def worker_command(host: str, port: int | str, *, proxy_headers: bool = False) -> list[str]:
    """The command line of one worker, the same for every launcher (run_cluster,
    serve_demo, the test harnesses and the bench) and for docs/deploy.md."""
    return [
        sys.executable,
        "-m",
        "supportdesk.serve",
        "-b",
        host,
        "-p",
        str(port),
        "--websocket-max-message-size",
        str(MAX_INBOUND_BYTES),
        "--websocket-max-frame-size",
        str(MAX_INBOUND_BYTES),
        # Behind a proxy: the client's address is the X-Forwarded-For it sets.
        *(["--proxy-headers"] if proxy_headers else []),
        "supportdesk.asgi:application",
    ]


def use_configured_loop() -> str:
    """Install the event-loop policy named by SUPPORTDESK_EVENT_LOOP; returns its name."""
    name = os.environ.get("SUPPORTDESK_EVENT_LOOP", "uvloop")
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif name != "asyncio":
        raise SystemExit(f"SUPPORTDESK_EVENT_LOOP must be uvloop or asyncio, not {name!r}")
    return name


def freeze_loaded_objects(application: str) -> bool:
    """Import `application` ("module:attribute", daphne's last argument), then move
    every object alive so far into the collector's permanent generation. False, doing
    nothing, when SUPPORTDESK_GC_FREEZE=0 or the argument names no application."""
    if os.environ.get("SUPPORTDESK_GC_FREEZE", "1") == "0":
        return False
    if ":" not in application or application.startswith("-"):
        return False
    importlib.import_module(application.split(":", 1)[0])
    # Garbage from start-up goes first, so that only what is alive stays forever.
    gc.collect()
    gc.freeze()
    return True


def main() -> None:
    use_configured_loop()
    # Imported first: it installs Twisted's reactor on the loop chosen above, before the
    # application's imports could.
    from daphne.cli import CommandLineInterface
    from daphne.server import twisted_loop

    freeze_loaded_objects(sys.argv[-1])
    # The worker's own background work starts once its event loop runs.
    twisted_loop.call_soon(start_worker_jobs, sys.argv[-1])
    CommandLineInterface.entrypoint()


def start_worker_jobs(application: str) -> None:
    """Call the application module's `start_worker_jobs`, if it has one."""
    if ":" not in application or application.startswith("-"):
        return
    module = importlib.import_module(application.split(":", 1)[0])
    start = getattr(module, "start_worker_jobs", None)
    if start is not None:
        start()


if __name__ == "__main__":
    main()
