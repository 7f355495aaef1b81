"""Reads for reviewing transcripts: one conversation as a timeline, full-text search over
message bodies, and streaming CSV/JSON exports of many conversations."""

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connections
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, pgettext

from . import system_messages
from .models import Assignment, Attachment, Conversation, Message, Note, SenderKind
from .selectors import loaded_attachment

# PostgreSQL text-search configuration for message bodies; migration 0003 indexes
# exactly `to_tsvector('english', COALESCE(body, ''))`, so change both together.
SEARCH_CONFIG = "english"
# Rows fetched per round trip while exporting: memory stays flat whatever the selection.
EXPORT_CHUNK = 2000


# --- one conversation -----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A line of the timeline: a message (`kind` is the sender) or an event."""

    kind: str  # "visitor", "agent", "system", "bot", or "event"
    at: datetime
    text: str
    author: str = ""
    seq: int | None = None
    # The message's file, if any (loaded with it: see MessageInline.get_queryset).
    attachment: Attachment | None = None


@dataclass(frozen=True)
class Timings:
    wait: timedelta | None  # created -> first assigned
    first_response: timedelta | None  # first assigned -> first agent message after it
    duration: timedelta | None  # first assigned -> closed


def first_assigned_at(conversation: Conversation, turns: Iterable[Assignment] = ()):
    """When an agent first had the conversation: its first turn (a transfer later does
    not make the visitor's wait longer); the last assignment for a conversation from
    before turns were recorded."""
    return min((turn.started_at for turn in turns), default=conversation.assigned_at)


def first_response_at(conversation: Conversation, messages: Iterable[Message], assigned=None):
    """The first agent message at or after the assignment (the last one unless given),
    as analytics counts it."""
    assigned = assigned or conversation.assigned_at
    if assigned is None:
        return None
    replies = (
        m.created_at for m in messages if m.sender == SenderKind.AGENT and m.created_at >= assigned
    )
    return min(replies, default=None)


def timings(
    conversation: Conversation, messages: Iterable[Message], turns: Iterable[Assignment] = ()
) -> Timings:
    created, closed = conversation.created_at, conversation.closed_at
    assigned = first_assigned_at(conversation, turns)
    replied = first_response_at(conversation, messages, assigned)
    return Timings(
        wait=assigned - created if assigned else None,
        first_response=replied - assigned if replied and assigned else None,
        duration=closed - assigned if closed and assigned else None,
    )


def timeline(
    conversation: Conversation,
    messages: Iterable[Message],
    notes: Iterable[Note] = (),
    turns: Iterable[Assignment] = (),
) -> list[Entry]:
    """Messages in seq order, agents' internal notes after the message they followed,
    and the conversation's lifecycle placed between them by time (started; every
    assignment, transfer and return to the queue, in order; closed): the chat as the
    visitor and the agents lived it."""
    visitor = str(conversation.visitor)
    notes_after: dict[int, list[Entry]] = {}
    for note in notes:
        notes_after.setdefault(note.after_seq, []).append(
            Entry(
                kind="note",
                at=note.created_at,
                text=note.body,
                author=str(note.author) if note.author else _("Agent"),
            )
        )
    entries = notes_after.pop(0, [])
    for m in messages:
        entries.append(
            Entry(
                kind=m.sender,
                at=m.created_at,
                # A system line (or the bot's hand-off) in the reader's language
                # (chat/system_messages.py).
                text=system_messages.sentence(m.system_code, m.system_params, m.body)
                if m.sender in (SenderKind.SYSTEM, SenderKind.BOT)
                else m.body,
                author={
                    SenderKind.VISITOR: visitor,
                    SenderKind.AGENT: str(m.sender_agent) if m.sender_agent else _("Agent"),
                    SenderKind.SYSTEM: _("System"),
                    SenderKind.BOT: pgettext("sender", "Bot"),
                }.get(m.sender, m.sender),
                seq=m.seq,
                attachment=loaded_attachment(m),
            )
        )
        entries += notes_after.pop(m.seq, [])
    entries += [note for _, later in sorted(notes_after.items()) for note in later]
    # (event, goes before a line stamped at the same instant)
    started = _("%(visitor)s started the chat") % {"visitor": visitor}
    events = [(Entry("event", conversation.created_at, started), True)]
    events += [(entry, True) for entry in _turn_events(conversation, list(turns))]
    if conversation.closed_at is not None:
        closed = _(_CLOSED_BY.get(conversation.closed_by, _CLOSED_BY[""]))
        events.append((Entry("event", conversation.closed_at, closed), False))
    # Lines keep their order; each event goes in before the first message stamped after
    # it (the idle sweep's closing line and the close share an instant: line first). A
    # note stays right after the message it followed, whatever its time.
    merged = []
    for entry in entries:
        while entry.kind != "note" and (
            events
            and (events[0][0].at < entry.at or (events[0][0].at == entry.at and events[0][1]))
        ):
            merged.append(events.pop(0)[0])
        merged.append(entry)
    return merged + [event for event, _ in events]


# The timeline's lines, in the reader's language (the admin's).
_CLOSED_BY = {
    "": gettext_noop("Closed"),
    SenderKind.VISITOR: gettext_noop("Closed by the visitor"),
    SenderKind.AGENT: gettext_noop("Closed by the agent"),
    SenderKind.SYSTEM: gettext_noop("Closed by the system"),
    SenderKind.BOT: gettext_noop("Closed by the bot"),
}
_ENDINGS = {
    Assignment.Ended.HANDED_BACK: gettext_noop("%(agent)s sent the chat back to the queue"),
    Assignment.Ended.REQUEUED: gettext_noop("Back in the queue: %(agent)s was disconnected"),
}


def _turn_events(conversation: Conversation, turns: list[Assignment]) -> list[Entry]:
    """Each agent's turn as lines: assigned (or transferred to), and a return to the
    queue; a close is the conversation's own line."""
    if not turns:  # from before turns were recorded: the last assignment only
        if conversation.assigned_at is None:
            return []
        if conversation.agent:
            line = _("Assigned to %(agent)s") % {"agent": conversation.agent}
        else:
            line = _("Assigned")
        return [Entry("event", conversation.assigned_at, line)]
    lines, before = [], None
    for turn in turns:
        name = str(turn.agent) if turn.agent else _("an agent")
        if before is not None and before.ended == Assignment.Ended.TRANSFERRED:
            by = str(before.agent) if before.agent else _("An agent")
            line = _("%(agent)s transferred the chat to %(colleague)s") % {
                "agent": by,
                "colleague": name,
            }
        else:
            line = _("Assigned to %(agent)s") % {"agent": name}
        lines.append(Entry("event", turn.started_at, line))
        if turn.ended in _ENDINGS:
            ending = _(_ENDINGS[turn.ended]) % {"agent": name}
            lines.append(Entry("event", turn.ended_at, ending))
        before = turn
    return lines


# --- search ---------------------------------------------------------------------------


def conversations_mentioning(term: str) -> QuerySet:
    """Ids of conversations with a message matching `term`: PostgreSQL full-text search
    (stemmed, web-search syntax: "exact phrase", or, -exclude) when on PostgreSQL, a
    case-insensitive substring elsewhere."""
    messages = Message.objects.all()
    if connections[messages.db].vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        messages = messages.annotate(document=SearchVector("body", config=SEARCH_CONFIG)).filter(
            document=SearchQuery(term, config=SEARCH_CONFIG, search_type="websearch")
        )
    else:
        messages = messages.filter(body__icontains=term)
    return messages.values("conversation_id")


# --- exports --------------------------------------------------------------------------

CSV_COLUMNS = [
    "conversation",
    "site",
    "visitor",
    "visitor_name",
    "visitor_email",
    "agent",
    "status",
    "created_at",
    "assigned_at",
    "closed_at",
    "closed_by",
    "rating",
    "rating_comment",
    "seq",
    "sender",
    "sender_agent",
    "sent_at",
    "body",
    # A message's file, if any: what it is, and where a participant downloads it.
    "attachment_name",
    "attachment_type",
    "attachment_size",
    "attachment_url",
]


class _Echo:
    """csv.writer wants a file; this one hands each row back instead of storing it."""

    def write(self, value: str) -> str:
        return value


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _spreadsheet_safe(value: str) -> str:
    """Text a visitor typed must not run as a formula when the CSV is opened in a
    spreadsheet (CSV injection): a leading = + - @ or control character is quoted."""
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


def _file(values: list) -> dict | None:
    """A message's file as the exports show it: its name, type, size and the
    participants-only download URL (chat/attachment_views.py); None without one."""
    attachment_id, name, content_type, size = values
    if attachment_id is None:
        return None
    return {
        "name": name,
        "content_type": content_type,
        "size": size,
        "url": reverse("attachment", args=[attachment_id]),
    }


def _conversation_record(c: Conversation) -> dict:
    rating = getattr(c, "rating", None)
    return {
        "id": c.pk,
        "site": {"id": c.site_id, "name": c.site.name},
        "visitor": {"id": c.visitor_id, "name": c.visitor.name, "email": c.visitor.email},
        "agent": {"id": c.agent_id, "display_name": c.agent.display_name} if c.agent else None,
        "status": c.status,
        "created_at": _stamp(c.created_at),
        "assigned_at": _stamp(c.assigned_at),
        "closed_at": _stamp(c.closed_at),
        "closed_by": c.closed_by or None,
        "rating": {"score": rating.score, "comment": rating.comment} if rating else None,
    }


def _take(stream: Iterator[tuple], pending: tuple | None, conversation_id: int):
    """The rows of one conversation from an ordered stream, and the next row after them.
    Rows of conversations deleted meanwhile (a purge) are skipped."""
    while pending is not None and pending[0] < conversation_id:
        pending = next(stream, None)
    mine = []
    while pending is not None and pending[0] == conversation_id:
        mine.append(pending)
        pending = next(stream, None)
    return mine, pending


def _with_lines(conversations: QuerySet) -> Iterator[tuple[Conversation, list, list]]:
    """Each conversation (oldest id first) with its messages and its agents' notes,
    read as three ordered streams merged side by side: none is ever held whole in
    memory."""
    selected = conversations.order_by().values("pk")
    rows = (
        Conversation.objects.filter(pk__in=selected)
        .select_related("site", "visitor", "agent", "rating")
        .order_by("pk")
        .iterator(chunk_size=EXPORT_CHUNK)
    )
    messages = iter(
        Message.objects.filter(conversation__in=selected)
        .order_by("conversation_id", "seq")
        .values_list(
            "conversation_id",
            "seq",
            "sender",
            "sender_agent__display_name",
            "created_at",
            "body",
            "attachment__id",
            "attachment__name",
            "attachment__content_type",
            "attachment__size",
        )
        .iterator(chunk_size=EXPORT_CHUNK)
    )
    notes = iter(
        Note.objects.filter(conversation__in=selected)
        .order_by("conversation_id", "id")
        .values_list("conversation_id", "after_seq", "author__display_name", "created_at", "body")
        .iterator(chunk_size=EXPORT_CHUNK)
    )
    next_message, next_note = next(messages, None), next(notes, None)
    for conversation in rows:
        its_messages, next_message = _take(messages, next_message, conversation.pk)
        its_notes, next_note = _take(notes, next_note, conversation.pk)
        yield conversation, its_messages, its_notes


def export_csv(conversations: QuerySet) -> Iterator[str]:
    """One CSV row per message, then one per internal note (sender "note", no seq); a
    conversation with neither gets one row with those columns empty. Header first."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for conversation, messages, notes in _with_lines(conversations):
        record = _conversation_record(conversation)
        head = [
            record["id"],
            _spreadsheet_safe(record["site"]["name"]),
            record["visitor"]["id"],
            _spreadsheet_safe(record["visitor"]["name"]),
            _spreadsheet_safe(record["visitor"]["email"]),
            _spreadsheet_safe(record["agent"]["display_name"]) if record["agent"] else "",
            record["status"],
            record["created_at"],
            record["assigned_at"] or "",
            record["closed_at"] or "",
            record["closed_by"] or "",
            record["rating"]["score"] if record["rating"] else "",
            _spreadsheet_safe(record["rating"]["comment"]) if record["rating"] else "",
        ]
        lines = [
            (seq, sender, agent, sent_at, body, _file(file))
            for _, seq, sender, agent, sent_at, body, *file in messages
        ] + [("", "note", author, sent_at, body, None) for _, _, author, sent_at, body in notes]
        if not lines:
            yield writer.writerow([*head, "", "", "", "", "", "", "", "", ""])
            continue
        # One string per conversation: small writes, but not one per message.
        yield "".join(
            writer.writerow(
                [
                    *head,
                    seq,
                    sender,
                    _spreadsheet_safe(agent or ""),
                    _stamp(sent_at),
                    _spreadsheet_safe(body),
                    *(
                        (_spreadsheet_safe(f["name"]), f["content_type"], f["size"], f["url"])
                        if f
                        else ("", "", "", "")
                    ),
                ]
            )
            for seq, sender, agent, sent_at, body, f in lines
        )


def export_json(conversations: QuerySet) -> Iterator[str]:
    """`{"exported_at": ..., "conversations": [{..., "messages": [...], "notes": [...]},
    ...]}`, written a conversation at a time."""
    exported_at = json.dumps(_stamp(timezone.now()))
    yield '{"exported_at": ' + exported_at + ', "conversations": ['
    for n, (conversation, messages, notes) in enumerate(_with_lines(conversations)):
        record = _conversation_record(conversation)
        record["messages"] = [
            {
                "seq": seq,
                "sender": sender,
                "sender_agent": agent,
                "sent_at": _stamp(sent_at),
                "body": body,
                **({"attachment": attachment} if (attachment := _file(file)) else {}),
            }
            for _, seq, sender, agent, sent_at, body, *file in messages
        ]
        record["notes"] = [
            {"after_seq": after_seq, "author": author, "sent_at": _stamp(sent_at), "body": body}
            for _, after_seq, author, sent_at, body in notes
        ]
        yield ("," if n else "") + "\n" + json.dumps(record, ensure_ascii=False)
    yield "\n]}\n"
