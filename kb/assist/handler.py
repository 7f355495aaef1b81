"""The agent socket's `assist.suggest` frame (docs/protocol.md "Agent assist"), registered
into the core's table by kb's ready(): the core declares the frame, never imports this.

The frame arrives in its conversation's lane; the suggestions are made on the assist
thread in the background, so a slow search never holds up the agent's sends in that chat
(they share the lane). A frame answered late is not answered: past the deadline, or on
a failure, the dashboard simply shows no suggestions for that message."""

import asyncio
import concurrent.futures
import functools
import logging
import threading

from django.conf import settings
from django.db import connections

from chat.selectors import conversation_for_agent
from chat.transport.orm import on_database_thread
from chat.transport.socket import in_background

from ..bot import _on_own_connection
from . import suggestions

logger = logging.getLogger(__name__)


# One thread per worker (made at first use): suggestions are a convenience, never
# allowed to take the bot's threads (kb/bot.py) or the ORM threads the sends wait on.
_assist: concurrent.futures.ThreadPoolExecutor | None = None
_assist_lock = threading.Lock()


def _thread() -> concurrent.futures.ThreadPoolExecutor:
    global _assist
    with _assist_lock:
        if _assist is None:
            _assist = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="kb-assist"
            )
        return _assist


def stop_thread() -> None:
    """End the assist thread, its database connection closed first; the next request
    makes a new one. A test run's end, before its database is dropped."""
    global _assist
    with _assist_lock:
        old, _assist = _assist, None
    if old is not None:
        old.submit(connections.close_all).result()
        old.shutdown(wait=True)


async def on_assist_suggest(consumer, frame) -> None:
    # The access check first, in line: a chat the agent may not read is refused with
    # not_found like any other frame naming it.
    await on_database_thread(conversation_for_agent)(
        consumer.agent_id, frame.conversation, read_only=True
    )
    in_background(_suggest(consumer, frame.conversation))


async def _suggest(consumer, conversation_id: int) -> None:
    loop = asyncio.get_running_loop()
    work = functools.partial(
        _on_own_connection,
        suggestions.assist,
        agent_id=consumer.agent_id,
        conversation_id=conversation_id,
    )
    try:
        reply = await asyncio.wait_for(
            loop.run_in_executor(_thread(), work), timeout=settings.SUPPORTDESK_BOT_DEADLINE
        )
    except TimeoutError:
        logger.warning("kb assist: no suggestions within the deadline in %s", conversation_id)
        return
    except Exception:
        logger.exception("kb assist: suggestions failed in conversation %s", conversation_id)
        return
    if not consumer.closing:
        await consumer.send_frame(reply)
