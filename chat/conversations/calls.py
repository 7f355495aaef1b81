"""Voice and video calls inside a conversation: who may ring, answer, signal and hang
up, when an invitation times out, and the transcript's lines about a call.

Signaling only: the browsers exchange SDP and ICE candidates through `relay_signal`
and send their media to each other (or through the operator's TURN server), never
through a worker. Every change to a call takes its conversation's row lock first and
re-reads the call under it, so the races between workers are decided once, in commit
order: an answer and the timeout (whichever commits first wins, the other finds the
call no longer ringing), both sides hanging up at once (one `call.ended`), a socket
dying on one worker while the other side hangs up on another.
"""

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from .. import events, system_messages
from ..errors import CallInProgress, CallNotFound, ConversationClosed, NotFound
from ..models import Call, Conversation, SenderKind
from . import messages, visitor_sockets
from .actors import Actor, lock_open_conversation

logger = logging.getLogger(__name__)
Reason = Call.Reason
Status = Call.Status


class PlacedCall(msgspec.Struct, frozen=True, gc=False):
    """A call that rings: the worker that placed it times it out after `ring_seconds`."""

    call_id: int
    ring_seconds: float


class Invitation(msgspec.Struct, frozen=True, gc=False):
    """A call ringing for a visitor, as its widget shows it (`call.invited`)."""

    conversation_id: int
    call_id: int
    media: str
    agent: dict
    ice_servers: list[dict]


def ice_servers(conversation_id: int, *, now: datetime) -> list[dict]:
    """The ICE servers for a call in this conversation, from the settings. TURN gets
    time-limited credentials as coturn's `use-auth-secret` checks them (the TURN REST
    API draft): username "EXPIRY:supportdesk-cID", credential
    base64(HMAC-SHA1(secret, username)); coturn refuses it after EXPIRY (unix time)."""
    servers: list[dict] = []
    if settings.SUPPORTDESK_STUN_URLS:
        servers.append({"urls": list(settings.SUPPORTDESK_STUN_URLS)})
    secret = settings.SUPPORTDESK_TURN_SECRET
    if settings.SUPPORTDESK_TURN_URLS and secret:
        expiry = int(now.timestamp()) + settings.SUPPORTDESK_TURN_TTL
        username = f"{expiry}:supportdesk-c{conversation_id}"
        digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
        servers.append(
            {
                "urls": list(settings.SUPPORTDESK_TURN_URLS),
                "username": username,
                "credential": base64.b64encode(digest).decode(),
            }
        )
    return servers


# --- the transcript's lines (system messages: both sides read them) ------------------


# Each line as (code, parameters): chat/system_messages.py says it in English for `body`
# and in each reader's language.
def _started_line(agent_name: str, media: str) -> tuple[str, dict]:
    video = media == Call.Media.VIDEO
    return ("call_started_video" if video else "call_started_audio"), {"name": agent_name}


JOINED_LINE = system_messages.english("call_joined")
DECLINED_LINE = system_messages.english("call_declined")
NOT_ANSWERED_LINE = system_messages.english("call_not_answered")
CANCELLED_LINE = system_messages.english("call_cancelled")


def _ended_line(call: Call, reason: str, now: datetime) -> tuple[str, dict]:
    if reason == Reason.DECLINED:
        return "call_declined", {}
    if reason == Reason.TIMEOUT:
        return "call_not_answered", {}
    if call.accepted_at is None:
        return "call_cancelled", {}
    seconds = max(0, int((now - call.accepted_at).total_seconds()))
    duration = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if seconds < 3600:
        duration = f"{seconds // 60}:{seconds % 60:02d}"
    return ("call_lost" if reason == Reason.DISCONNECTED else "call_ended"), {"duration": duration}


def _say(conversation: Conversation, line: tuple[str, dict], now: datetime) -> None:
    code, params = line
    if conversation.is_open:  # a closed transcript takes no more lines
        messages.append_message(
            conversation,
            sender=SenderKind.SYSTEM,
            body=system_messages.english(code, **params),
            now=now,
            code=code,
            params=params,
        )


# --- the decisions ------------------------------------------------------------------


def invite(
    *,
    agent_id: int,
    conversation_id: int,
    media: str,
    channel: str,
    before_ringing: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> PlacedCall:
    """The agent rings the visitor of a conversation assigned to it, from the dashboard
    tab `channel` (which holds the call from now on). `before_ringing(conversation_id)`
    runs once the agent may (a rate limit); raising there rings nobody."""
    now = now or timezone.now()
    with transaction.atomic():
        try:
            conversation = lock_open_conversation(Actor.agent(agent_id), conversation_id)
        except (NotFound, ConversationClosed):
            raise CallNotFound from None
        # Race: two tabs (or workers) of the agent ringing at once queue on the
        # conversation's lock; the second sees the first's call. The constraint
        # call_one_live_per_conversation is the invariant's last guard.
        if Call.objects.filter(conversation=conversation, status__in=Call.LIVE_STATUSES).exists():
            raise CallInProgress
        if before_ringing is not None:
            before_ringing(conversation.id)
        ring_seconds = settings.SUPPORTDESK_CALL_RING_TIMEOUT
        call = Call.objects.create(
            conversation=conversation,
            agent_id=agent_id,
            media=media,
            agent_channel=channel,
            invited_at=now,
            expires_at=now + timedelta(seconds=ring_seconds),
        )
        agent = conversation.agent
        _say(conversation, _started_line(agent.display_name, media), now)
        events.emit_on_commit(
            events.CallInvited(
                **events.about(conversation),
                call_id=call.id,
                media=media,
                agent=agent.public_dict(),
                ice_servers=ice_servers(conversation.id, now=now),
            )
        )
    logger.info("call %s rings in conversation %s (%s)", call.id, conversation.id, media)
    return PlacedCall(call.id, ring_seconds)


def accept(*, visitor_id: int, call_id: int, channel: str, now: datetime | None = None) -> None:
    """The visitor answers from its tab `channel`, which holds the call from now on. A
    call no longer ringing (answered in another tab, timed out, hung up) is not found."""
    now = now or timezone.now()
    with transaction.atomic():
        call, conversation = _lock_call(Actor.visitor(visitor_id), call_id)
        if call.status != Status.RINGING:
            raise CallNotFound
        call.status = Status.ACTIVE
        call.visitor_channel = channel
        call.accepted_at = now
        call.save(update_fields=["status", "visitor_channel", "accepted_at"])
        _say(conversation, ("call_joined", {}), now)
        events.emit_on_commit(
            events.CallAccepted(**_about(call, conversation), call_id=call.id, at=now)
        )


def decline(*, visitor_id: int, call_id: int, now: datetime | None = None) -> None:
    """The visitor says no to a ringing call."""
    now = now or timezone.now()
    with transaction.atomic():
        call, conversation = _lock_call(Actor.visitor(visitor_id), call_id)
        if call.status != Status.RINGING:
            raise CallNotFound
        _end(call, conversation, reason=Reason.DECLINED, by=SenderKind.VISITOR, now=now)


def hang_up(actor: Actor, *, call_id: int, now: datetime | None = None) -> None:
    """Either participant ends the call (ringing or going on). Race: both hanging up at
    once queue on the conversation's lock; the second finds it ended (not found)."""
    now = now or timezone.now()
    with transaction.atomic():
        call, conversation = _lock_call(actor, call_id)
        _end(call, conversation, reason=Reason.HANGUP, by=actor.kind, now=now)


def relay_signal(actor: Actor, *, call_id: int, channel: str, data: dict) -> None:
    """Pass `data` (an SDP offer or answer, an ICE candidate) from the tab holding the
    call on one side to the tab holding it on the other, unread. Only while the call is
    going on, and only from the tab that holds it: another tab of the same visitor or
    agent is told the call is not found."""
    call = (
        Call.objects.filter(pk=call_id, status=Status.ACTIVE)
        .exclude(conversation__status=Conversation.Status.CLOSED)
        .select_related("conversation")
        .first()
    )
    if call is None or not _is_participant(actor, call, call.conversation):
        raise CallNotFound
    if actor.is_visitor:
        mine, to, to_channel = call.visitor_channel, SenderKind.AGENT, call.agent_channel
    else:
        mine, to, to_channel = call.agent_channel, SenderKind.VISITOR, call.visitor_channel
    if channel != mine:
        raise CallNotFound
    # A read, not a change: racing a hang-up, a signal may follow `call.ended` by a few
    # milliseconds; the client has closed its connection by then and drops it.
    events.emit_on_commit(
        events.CallSignalled(
            **_about(call, call.conversation),
            call_id=call.id,
            to=to,
            to_channel=to_channel,
            data=data,
        )
    )


def expire(*, call_id: int, now: datetime | None = None) -> bool:
    """The invitation's own timer (on the worker that placed it): still ringing means
    nobody answered in time. Whether it ended the call."""
    now = now or timezone.now()
    with transaction.atomic():
        try:
            call, conversation = _lock_call(Actor.system(), call_id)
        except CallNotFound:
            return False
        if call.status != Status.RINGING:
            return False  # answered (or ended) first: the answer won the race
        _end(call, conversation, reason=Reason.TIMEOUT, by=SenderKind.SYSTEM, now=now)
    return True


def socket_gone(*, call_id: int, channel: str, now: datetime | None = None) -> bool:
    """A socket that held a call closed (a closed tab, a lost connection): the media
    lived there, so the call ends for both with reason "disconnected". Whether it did."""
    now = now or timezone.now()
    with transaction.atomic():
        try:
            call, conversation = _lock_call(Actor.system(), call_id)
        except CallNotFound:
            return False
        if channel not in (call.agent_channel, call.visitor_channel):
            return False
        by = SenderKind.AGENT if channel == call.agent_channel else SenderKind.VISITOR
        _end(call, conversation, reason=Reason.DISCONNECTED, by=by, now=now)
    return True


def visitor_socket_closed(*, visitor_id: int, channel: str, now: datetime | None = None) -> bool:
    """A visitor's widget socket is gone for good (its grace over): it no longer counts,
    and `visitor_left` decides about a ringing call, in one transaction, so the row is
    seen gone only with the decision made. Whether it ended a call."""
    with transaction.atomic():
        visitor_sockets.closed(channel=channel)
        return visitor_left(visitor_id=visitor_id, now=now)


def visitor_left(*, visitor_id: int, now: datetime | None = None) -> bool:
    """One of the visitor's widget sockets is gone (its `VisitorSocket` row deleted,
    SUPPORTDESK_VISITOR_SOCKET_GRACE seconds after it closed, so that a reload's next
    page counts first): if no other socket of the visitor lives on any worker, a call
    still ringing for it has nobody left to answer, and ends now for both with reason
    "disconnected" instead of ringing out. Whether it ended one.

    Races, each decided under the conversation's lock by what is committed then:
    - the last two tabs' rows going at once on two workers: each delete commits with
      its check, so the check that locks second sees both rows gone and ends the call
      (the first may still count the other's row); one `call.ended`;
    - a tab's row going as another tab opens elsewhere: the new tab's row is committed
      before it reads the call (`invitation_for_visitor`); counted here → the call
      keeps ringing and that tab shows it; not yet → the call ends, and the new tab
      (already in the visitor's group) gets `call.ended`, or reads no call at all;
    - the last tab's row going while the agent's invitation is placed: if this check
      locked first it saw no call, and the invitation rings with nobody to answer;
      the sweep ends it (no live socket) within SUPPORTDESK_SWEEP_INTERVAL."""
    now = now or timezone.now()
    ringing = Call.objects.filter(status=Status.RINGING, conversation__visitor_id=visitor_id)
    ended = False
    for call_id in ringing.values_list("id", flat=True):
        with transaction.atomic():
            try:
                call, conversation = _lock_call(Actor.visitor(visitor_id), call_id)
            except CallNotFound:
                continue  # ended (or the chat closed) meanwhile
            if call.status != Status.RINGING or visitor_sockets.has_live_socket(
                visitor_id, now=now
            ):
                continue  # answered meanwhile, or another tab is still open
            _end(call, conversation, reason=Reason.DISCONNECTED, by=SenderKind.VISITOR, now=now)
            ended = True
    return ended


def end_with_conversation(conversation: Conversation, *, by: str, now: datetime) -> None:
    """The conversation (locked by the caller) is closing: its call, if any, ends with
    it, before the close, so the transcript says so in order."""
    call = Call.objects.filter(conversation=conversation, status__in=Call.LIVE_STATUSES).first()
    if call is not None:
        _end(call, conversation, reason=Reason.HANGUP, by=by, now=now)


def sweep(*, now: datetime | None = None) -> None:
    """Every worker's periodic part, safe to run on all at once (each call is re-checked
    under its conversation's lock): invitations past their deadline whose worker died
    before its timer fired, and calls whose conversation went to another agent or
    back to the queue (a transfer, a lost agent) or closed without them."""
    now = now or timezone.now()
    live = Call.objects.filter(status__in=Call.LIVE_STATUSES)
    for call_id in live.filter(status=Status.RINGING, expires_at__lte=now).values_list(
        "id", flat=True
    ):
        expire(call_id=call_id, now=now)
    # Invitations nobody can answer: the visitor's last socket was on a worker killed
    # with kill -9 (its row stopped being refreshed), or closed as the invitation was
    # being placed (`visitor_left` ran first and saw no call).
    visitor_online = visitor_sockets.live(now=now).filter(
        visitor_id=OuterRef("conversation__visitor_id")
    )
    unanswerable = live.filter(status=Status.RINGING).exclude(Exists(visitor_online))
    for visitor_id in unanswerable.values_list("conversation__visitor_id", flat=True):
        visitor_left(visitor_id=visitor_id, now=now)
    visitor_sockets.forget_stale(now=now)
    stranded = live.filter(
        ~Q(conversation__agent_id=F("agent_id"))
        | Q(conversation__agent__isnull=True)
        | Q(conversation__status=Conversation.Status.CLOSED)
    )
    for call_id in stranded.values_list("id", flat=True):
        with transaction.atomic():
            call = (
                Call.objects.select_related("conversation")
                .filter(pk=call_id, status__in=Call.LIVE_STATUSES)
                .first()
            )
            if call is None:
                continue
            conversation = Conversation.objects.select_for_update().get(pk=call.conversation_id)
            call.refresh_from_db()
            if call.status == Status.ENDED or (
                conversation.is_open and conversation.agent_id == call.agent_id
            ):
                continue
            _end(call, conversation, reason=Reason.DISCONNECTED, by=SenderKind.SYSTEM, now=now)


# --- reads --------------------------------------------------------------------------


def invitation_for_visitor(*, visitor_id: int, now: datetime | None = None) -> Invitation | None:
    """The call ringing for the visitor, if one does: what a widget tab that connects
    while it rings shows (the invitation it missed), with ICE servers made afresh."""
    call = (
        Call.objects.filter(status=Status.RINGING, conversation__visitor_id=visitor_id)
        .exclude(conversation__status=Conversation.Status.CLOSED)
        .select_related("agent")
        .first()
    )
    if call is None or call.agent is None:
        return None
    return Invitation(
        conversation_id=call.conversation_id,
        call_id=call.id,
        media=call.media,
        agent=call.agent.public_dict(),
        ice_servers=ice_servers(call.conversation_id, now=now or timezone.now()),
    )


# --- helpers --------------------------------------------------------------------------


def _lock_call(actor: Actor, call_id: int) -> tuple[Call, Conversation]:
    """Lock the conversation of a live call `actor` takes part in (inside a
    transaction), then read the call under that lock. `CallNotFound` when there is no
    such live call, it is not the actor's, or its conversation is closed: one answer,
    so ids cannot be probed."""
    conversation_id = (
        Call.objects.filter(pk=call_id, status__in=Call.LIVE_STATUSES)
        .values_list("conversation_id", flat=True)
        .first()
    )
    if conversation_id is None:
        raise CallNotFound
    conversation = Conversation.objects.select_for_update().filter(pk=conversation_id).first()
    # Under the lock: what another worker decided meanwhile is committed and seen here.
    call = Call.objects.filter(pk=call_id, status__in=Call.LIVE_STATUSES).first()
    if (
        conversation is None
        or call is None
        or conversation.status == Conversation.Status.CLOSED
        or not _is_participant(actor, call, conversation)
    ):
        raise CallNotFound
    return call, conversation


def _is_participant(actor: Actor, call: Call, conversation: Conversation) -> bool:
    if actor.is_visitor:
        return conversation.visitor_id == actor.visitor_id
    if actor.kind == SenderKind.AGENT:
        return call.agent_id == actor.agent_id and conversation.agent_id == actor.agent_id
    return True  # the system: timers, the sweep, a socket's end


def _about(call: Call, conversation: Conversation) -> dict:
    """The event fields of a call: its conversation, with the call's agent (the one who
    hears of it even if the conversation moved on)."""
    return {**events.about(conversation), "agent_id": call.agent_id}


def _end(call: Call, conversation: Conversation, *, reason: str, by: str, now: datetime) -> None:
    """End a live call whose conversation the caller has locked, with its line in the
    transcript, announced on commit."""
    call.status = Status.ENDED
    call.end_reason = reason
    call.ended_by = by
    call.ended_at = now
    call.save(update_fields=["status", "end_reason", "ended_by", "ended_at"])
    _say(conversation, _ended_line(call, reason, now), now)
    events.emit_on_commit(
        events.CallEnded(**_about(call, conversation), call_id=call.id, reason=reason, at=now)
    )
    logger.info("call %s ended: %s (by %s)", call.id, reason, by)
