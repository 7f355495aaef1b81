"""Queue positions from two workers can arrive out of order: every reading of a site's
queue carries `queue_version`, later readings higher, so a client keeps the newest
(docs/protocol.md, `conversation.queued`)."""

import pytest
from channels.layers import get_channel_layer

from agents.models import AgentProfile
from chat.conversations import closing, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Visitor
from chat.realtime import groups
from tests import ws


def open_chat(visitor: Visitor, client_msg_id: str = "first") -> int:
    posted = sending.post_message(
        Actor.visitor(visitor.pk), client_msg_id=client_msg_id, body="Hello?"
    )
    return posted.message["conversation"]


def frames(broadcasts, visitor: Visitor, frame_type: str) -> list[dict]:
    return broadcasts.frames(groups.visitor_group(visitor.pk), frame_type)


@pytest.mark.django_db(transaction=True)
def test_each_reading_of_the_queue_is_newer_and_an_assignment_outranks_every_earlier_position(
    personas, capture_broadcasts
):
    # Alice and Bob are full (v1, v2 with Alice, v3 with Bob); two more visitors queue.
    for visitor in (personas.v1, personas.v2, personas.v3):
        open_chat(visitor)
    waiting = [Visitor.objects.create(site=personas.acme, token_hash=f"wait-{n}") for n in range(2)]
    first, second = (open_chat(v) for v in waiting)
    assert Conversation.objects.get(pk=second).status == Conversation.Status.QUEUED

    # v1 leaves: Alice takes the first waiting chat, the second moves up.
    closing.close_conversation(Actor.visitor(personas.v1.pk))

    told_first = frames(capture_broadcasts, waiting[0], "conversation.queued")
    [assigned] = frames(capture_broadcasts, waiting[0], "conversation.assigned")
    assert assigned["conversation"]["id"] == first
    assert assigned["queue_version"] > max(f["queue_version"] for f in told_first)

    told_second = frames(capture_broadcasts, waiting[1], "conversation.queued")
    assert [f["position"] for f in told_second] == [2, 1]
    assert told_second[0]["queue_version"] < told_second[1]["queue_version"]

    # Agents' queue-length events carry the same versions, in the same order.
    versions = [
        event["version"]
        for group, event in capture_broadcasts
        if group == groups.AGENTS_GROUP and event["type"] == groups.QUEUE_EVENT
    ]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


@pytest.mark.django_db(transaction=True)
async def test_agent_socket_keeps_the_newest_queue_length_when_an_older_reading_arrives_last(
    personas,
):
    sockets = ws.Sockets()
    try:
        await ws.db(
            AgentProfile.objects.filter(pk=personas.bob.pk).update,
            status=AgentProfile.Status.AWAY,
        )
        agent, ready = await sockets.agent(personas.alice)
        assert ready["queue_length"] == 0
        layer = get_channel_layer()

        def reading(length: int, version: int) -> dict:
            site = personas.acme.pk
            return {
                "type": groups.QUEUE_EVENT,
                "site": site,
                "length": length,
                "version": version,
            }

        # The newer reading (2 waiting) is delivered first, an older one (5) after it.
        await layer.group_send(groups.AGENTS_GROUP, reading(2, 2_000))
        await layer.group_send(groups.AGENTS_GROUP, reading(5, 1_000))
        shown = await ws.frames_before_pong(agent)
        assert [f["queue_length"] for f in shown if f["type"] == "queue"] == [2]

        # A newer one still gets through.
        await layer.group_send(groups.AGENTS_GROUP, reading(1, 3_000))
        shown = await ws.frames_before_pong(agent)
        assert [f["queue_length"] for f in shown if f["type"] == "queue"] == [1]
    finally:
        await sockets.close_all()
