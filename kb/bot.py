"""The bot at work: it hears each visitor message of a chat it has, and answers it
without ever computing on a worker's event loop.

`message_created` (a domain-event subscriber, run wherever the message was stored, the
event loop included) only schedules `answer` on the worker's loop. `answer` checks on an
ORM thread that the chat is still the bot's, has the bot's thread pool find the
answer, and awaits it at most `SUPPORTDESK_BOT_DEADLINE` seconds: an answer that is late
or fails hands the chat to a person instead. It posts through the core's services
(`call_service`), so the frames go out as every service's do. A worker that dies
between a message and its answer leaves the chat waiting; every worker's `sweep` hands
such chats off after twice the deadline.
"""

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    close_old_connections,
    connections,
)
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from chat import events, languages
from chat.conversations import bots
from chat.errors import NotWithBot
from chat.models import Conversation, Message, SenderKind
from chat.transport.background import start_once

from . import answering, embedding, text
from .models import BotAnswer, BotSettings

logger = logging.getLogger(__name__)

# Finding an answer (search, the model) runs on these threads, never on the event loop
# (`_threads()`: made at first use, sized by SUPPORTDESK_BOT_THREADS).
_compute: concurrent.futures.ThreadPoolExecutor | None = None
_compute_lock = threading.Lock()


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _compute
    with _compute_lock:
        if _compute is None:
            _compute = concurrent.futures.ThreadPoolExecutor(
                max_workers=settings.SUPPORTDESK_BOT_THREADS, thread_name_prefix="kb-bot"
            )
        return _compute


# The worker's event loop (set by `ensure_running` when the worker starts): answers are
# awaited there, and their messages posted through the core's services on its ORM
# threads, so their frames go out as every service's do. None: no worker here (a
# management command, a synchronous test): answers are made on those threads instead.
_loop: asyncio.AbstractEventLoop | None = None


def answers_first(site_id: int) -> bool:
    """The first responder the core asks when a chat opens (chat.conversations.bots)."""
    return BotSettings.objects.filter(site_id=site_id, enabled=True).exists()


def message_created(event: events.MessageCreated) -> None:
    """A subscriber: runs wherever the message was stored (an ORM thread, or the event
    loop itself), so it only schedules the answer: to a visitor's message stored while
    the bot had the chat. Race: the visitor may hand off meanwhile; `answer` checks
    again under the conversation's lock."""
    if not event.with_bot or event.message["sender"] != SenderKind.VISITOR:
        return
    job = {
        "conversation_id": event.conversation_id,
        "site_id": event.site_id,
        "seq": event.message["seq"],
        "question": event.message["body"],
    }
    loop = _loop
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(_start, job, context=contextvars.Context())
    else:
        _threads().submit(_on_own_connection, answer_now, **job)


def _start(job: dict) -> None:
    task = asyncio.get_running_loop().create_task(answer(**job))
    _running.add(task)
    task.add_done_callback(_running.discard)


_running: set[asyncio.Task] = set()


async def answer(*, conversation_id: int, site_id: int, seq: int, question: str) -> str:
    """Answer the visitor's message `seq`, or hand the chat off. Returns what was done
    ("answered", "handed_off", "not_the_bots"), for tests and the benchmark."""
    from chat.transport.broadcasting import call_service
    from chat.transport.orm import on_database_thread

    try:
        language = await on_database_thread(_language_if_the_bots)(conversation_id)
        if language is None:
            return "not_the_bots"
        loop = asyncio.get_running_loop()
        try:
            # Race: an answer past the deadline is dropped (its thread finishes
            # unheard); the chat goes to a person at once.
            reply = await asyncio.wait_for(
                loop.run_in_executor(
                    _threads(), _reply_off_the_request_path, site_id, question, language
                ),
                timeout=settings.SUPPORTDESK_BOT_DEADLINE,
            )
        except TimeoutError:
            logger.warning("kb: no answer within the deadline in conversation %s", conversation_id)
            reply = None
        except Exception:
            logger.exception("kb: answering failed in conversation %s", conversation_id)
            reply = None
        return await call_service(_post, conversation_id, site_id, seq, reply)
    except Exception:
        logger.exception("kb: could not answer in conversation %s", conversation_id)
        return "failed"


def answer_now(*, conversation_id: int, site_id: int, seq: int, question: str) -> str:
    """`answer` without an event loop (a management command, a synchronous test): on
    the calling thread, its frames sent at once."""
    language = _language_if_the_bots(conversation_id)
    if language is None:
        return "not_the_bots"
    try:
        reply = answering.reply_to(site_id, question, language=language)
    except Exception:
        logger.exception("kb: answering failed in conversation %s", conversation_id)
        reply = None
    return _post(conversation_id, site_id, seq, reply)


def _on_own_connection(function, /, **kwargs):
    """On an answer thread: a connection that failed or aged is replaced first."""
    close_old_connections()
    try:
        return function(**kwargs)
    finally:
        close_old_connections()


def _language_if_the_bots(conversation_id: int) -> str | None:
    """The language the bot answers in (the visitor's widget's, else the default) while
    the chat is the bot's; None once it is not."""
    found = (
        Conversation.objects.filter(pk=conversation_id, status=Conversation.Status.BOT)
        .values_list("visitor__language", flat=True)
        .first()
    )
    if found is None:
        return None
    return languages.supported(found) or settings.LANGUAGE_CODE


def _post(conversation_id: int, site_id: int, seq: int, reply) -> str:
    """Post the answer, or (no confident `reply`) say a person will come and route the
    chat to one."""
    if reply is None or not reply.confident:
        return _give_up(conversation_id, site_id, seq, reply)
    try:
        posted = bots.post_bot_message(
            conversation_id=conversation_id,
            body=reply.body,
            sources=reply.sources,
            client_msg_id=f"bot-{seq}",
        )
    except NotWithBot:
        return "not_the_bots"  # handed off or closed while we thought
    _record(site_id, conversation_id, posted.seq, reply, answered=True)
    return "answered"


def stop_threads() -> None:
    """End the answer threads (their database connections close with them); the next
    answer makes new ones. A test run's end, before its database is dropped."""
    global _compute
    with _compute_lock:
        old, _compute = _compute, None
    if old is not None:
        old.submit(connections.close_all).result()
        old.shutdown(wait=True)


def _reply_off_the_request_path(site_id: int, question: str, language: str) -> answering.Reply:
    return _on_own_connection(
        answering.reply_to, site_id=site_id, question=question, language=language
    )


def _give_up(conversation_id: int, site_id: int, seq: int, reply) -> str:
    """Say a person will come (a line each reader sees in their language), and route
    the chat to one."""
    try:
        posted = bots.post_bot_message(
            conversation_id=conversation_id,
            body=answering.HANDOFF_TEXT,
            sources=[],
            client_msg_id=f"bot-{seq}",
            code=answering.HANDOFF_CODE,
        )
    except NotWithBot:
        return "not_the_bots"
    _record(site_id, conversation_id, posted.seq, reply, answered=False)
    bots.hand_off(conversation_id=conversation_id, by="bot")
    return "handed_off"


def _record(site_id: int, conversation_id: int, seq: int, reply, *, answered: bool) -> None:
    hit = reply.hit if reply is not None else None
    # A retry of the same answer is recorded already.
    with contextlib.suppress(IntegrityError):
        BotAnswer.objects.create(
            site_id=site_id,
            conversation_id=conversation_id,
            seq=seq,
            article_id=hit.article_id if hit else None,
            score=hit.score if hit else 0.0,
            answered=answered,
        )


def handed_off(event: events.BotHandedOff) -> None:
    """The chat went to a person: its last bot answer counts as handed off."""
    last = BotAnswer.objects.filter(conversation_id=event.conversation_id).order_by("-seq").first()
    if last is not None:
        BotAnswer.objects.filter(pk=last.pk).update(handed_off=True)


def answer_rated(event: events.BotAnswerRated) -> None:
    """In the core's transaction: store the visitor's 👍/👎 with the answer."""
    BotAnswer.objects.filter(conversation_id=event.conversation_id, seq=event.seq).update(
        helpful=event.helpful
    )


# --- the sweep in each worker -----------------------------------------------------


def sweep(now=None) -> list[int]:
    """Hand off the bot's chats whose last message is a visitor's, unanswered for twice
    the deadline (the worker that heard it died). Safe on every worker at once: the
    hand-off locks the chat and acts only while it is still the bot's."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=2 * settings.SUPPORTDESK_BOT_DEADLINE)
    last_sender = Message.objects.filter(
        conversation_id=OuterRef("pk"), seq=OuterRef("last_seq")
    ).values("sender")[:1]
    stale = list(
        Conversation.objects.filter(status=Conversation.Status.BOT, last_activity_at__lt=cutoff)
        .annotate(last_sender=Subquery(last_sender))
        .filter(last_sender=SenderKind.VISITOR)
        .values_list("pk", flat=True)[:100]
    )
    for conversation_id in stale:
        bots.hand_off(conversation_id=conversation_id, by="bot")
    return stale


def _warm_up() -> None:
    """Load the model (and the lemmatiser's table) now if some site's bot is on, rather
    than make the first visitor wait for it (seconds: past the deadline). Workers of a
    desk without the bot never load it."""
    try:
        if BotSettings.objects.filter(enabled=True).exists():
            text.lemma("bought")  # loads the lemmatiser's table (0.5 s)
            if embedding.installed():
                embedding.available()
    except Exception:
        logger.exception("kb: warming the model up failed")
    finally:
        close_old_connections()


def listen() -> None:
    """Answer on the running event loop from now on (a worker's, or a test's)."""
    global _loop
    _loop = asyncio.get_running_loop()


def ensure_running() -> None:
    """A worker starting: answer on its event loop from now on, start its sweep once, and
    load the model now if a site uses the bot (`_warm_up`)."""
    listen()
    loop = asyncio.get_running_loop()
    loop.run_in_executor(_threads(), _warm_up)
    start_once("bot-sweep", _sweep_forever)


async def _sweep_forever() -> None:
    from chat.transport.orm import on_database_thread

    # A lost answer is handed off between two and four deadlines after its message.
    interval = max(1.0, 2 * settings.SUPPORTDESK_BOT_DEADLINE)
    while True:
        try:
            await on_database_thread(sweep)()
        except asyncio.CancelledError:
            raise
        except (DatabaseError, InterfaceError) as exc:
            # The database is away (a restart): the next turn tries again.
            logger.warning("kb: sweep skipped: %s", exc)
        except Exception:
            logger.exception("kb: sweep failed")
        await asyncio.sleep(interval)
