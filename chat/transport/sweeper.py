"""Per-worker upkeep: requeue chats of vanished agents, close idle chats, drain stranded queues.

Every worker runs one; each step re-checks its condition under a row lock, so running
it on all workers at once does each piece of work once. A worker owns nothing here:
it acts only on what the database says is due.
"""

import asyncio
import logging

from django.conf import settings

from ..conversations import closing
from .background import start_once
from .broadcasting import call_service

logger = logging.getLogger(__name__)


def ensure_running() -> None:
    """Start this event loop's sweeper once (called as sockets connect)."""
    interval = settings.SUPPORTDESK_SWEEP_INTERVAL
    if interval <= 0:
        return
    start_once("sweeper", lambda: _run(interval))


async def _run(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await call_service(closing.sweep)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A database or Redis outage must not kill the loop: try again next time.
            logger.exception("sweep failed")
