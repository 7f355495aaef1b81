"""A visitor's `hello`, read where it is cheapest: on the worker's event loop where the
statements answer there (PostgreSQL, SUPPORTDESK_HELLO_ON_LOOP: after a deploy every
open widget says `hello` at once), else on an ORM thread, which also makes every refusal
and reads what the loop leaves (a queued chat, a missed file, a failed statement)."""

from ..conversations import calls, sessions, visitor_sockets
from ..protocol import inbound
from ..realtime import resume
from .orm import on_database_thread


async def identify(hello: inbound.Hello) -> tuple:
    """The site and visitor a `hello` names (`sessions.identify_visitor`'s refusals:
    a transport module names no model)."""
    if sessions.reads_hello_on_loop():
        found = await sessions.identify_on_loop(
            site_key=hello.site_key, visitor_token=hello.visitor_token
        )
        if found is not None:
            return found
    return await on_database_thread(sessions.identify_visitor)(
        site_key=hello.site_key, visitor_token=hello.visitor_token
    )


async def counted_and_ready(
    visitor, last_seq: int, *, channel: str, sneak_peek: bool
) -> tuple[dict, calls.Invitation | None]:
    """The socket counted as one of the visitor's open widgets on every worker (before
    the call is read: see `visitor_sockets.counting`), its `ready`, and the call
    that rings for the visitor now, if one does."""
    if sessions.reads_hello_on_loop():
        # Counted in the statement that reads the `ready` (one round trip fewer a hello).
        count, started = visitor_sockets.counting(visitor_id=visitor.id, channel=channel)
        ready, ringing = await resume.counted_ready_on_loop(
            visitor, last_seq, sneak_peek=sneak_peek, count=count
        )
        if ringing is not None:
            visitor_sockets.counted(count, started)
            if ready is None:
                ready = await on_database_thread(resume.visitor_ready)(
                    visitor, last_seq, sneak_peek=sneak_peek
                )
            invitation = None
            if ringing:  # rare: one more trip, for the call's agent and ICE servers
                invitation = await on_database_thread(calls.invitation_for_visitor)(
                    visitor_id=visitor.id
                )
            return ready, invitation
    return await on_database_thread(counted_and_resumed)(
        visitor, last_seq, channel=channel, sneak_peek=sneak_peek
    )


def counted_and_resumed(
    visitor, last_seq: int, *, channel: str, sneak_peek: bool
) -> tuple[dict, calls.Invitation | None]:
    """`counted_and_ready` in one trip to an ORM thread."""
    visitor_sockets.opened(visitor_id=visitor.id, channel=channel)
    ready = resume.visitor_ready(visitor, last_seq, sneak_peek=sneak_peek)
    chat = ready["conversation"]
    # A call rings only in a chat with its agent: any other hello reads nothing more.
    ringing = chat is not None and chat["status"] == "active"
    return ready, calls.invitation_for_visitor(visitor_id=visitor.id) if ringing else None
