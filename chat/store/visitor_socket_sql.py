"""The statements that count a visitor's widget socket across workers
(chat/conversations/visitor_sockets.py), written to ride inside the statement that reads
the socket's `ready` (`sql.hello_ready_sql(counting=True)`)."""

from typing import NamedTuple

from ..models import Call, Conversation, SocketWorker, VisitorSocket

CALL_TABLE = Call._meta.db_table
CONVERSATION_TABLE = Conversation._meta.db_table
SOCKET_WORKER_TABLE = SocketWorker._meta.db_table
VISITOR_SOCKET_TABLE = VisitorSocket._meta.db_table


class SocketCount(NamedTuple):
    """A visitor socket to count in the statement that reads its `ready`
    (`hello_ready_sql(counting=True)`): whether the worker beats too, the count's
    parameters and whether-a-call-rings' parameters."""

    beat: bool
    count_params: list
    ringing_params: list


def socket_counted_sql(beat: bool) -> str:
    """The WITH that counts a socket: (with `beat`: the worker's beat, an upsert,) and
    the socket's row. Parameters: (the worker, now,) the visitor, the channel, the
    worker."""
    beat_sql = (
        f"beat AS (INSERT INTO {SOCKET_WORKER_TABLE} (name, seen_at) VALUES (%s, %s)"
        "  ON CONFLICT (name) DO UPDATE SET seen_at = EXCLUDED.seen_at),"
    )
    return (
        f"WITH {beat_sql if beat else ''}"
        f" counted AS (INSERT INTO {VISITOR_SOCKET_TABLE} (visitor_id, channel, worker_id)"
        "  VALUES (%s, %s, %s) ON CONFLICT (channel) DO NOTHING)"
    )


# Whether a call rings in one of a visitor's conversations that is not closed.
# Parameters: the visitor, the ringing and closed statuses.
RINGING_SQL = (
    f"(SELECT 1 FROM {CALL_TABLE} k JOIN {CONVERSATION_TABLE} kc ON kc.id = k.conversation_id"
    " WHERE kc.visitor_id = %s AND k.status = %s AND kc.status <> %s)"
)
