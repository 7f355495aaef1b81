"""Attacks on who may read and write which conversation: agents naming conversations
that are not theirs (queued, closed, another agent's), visitors slipping a conversation
id into their frames, and the supervisor role's limits. Each attempt is refused the same
way a conversation that does not exist is, changes nothing and tells no one.

(test_consumers_agent.py covers another agent's open chat and a missing id; these are
the cases where a different answer would leak, or a write would land somewhere.)"""

import pytest
from django.core.management import call_command
from django.utils import timezone

from agents.models import AgentProfile
from chat.conversations import closing, presence, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Message, Site
from tests import ws
from tests.conftest import make_agent

pytestmark = pytest.mark.django_db(transaction=True)


async def open_chat(visitor, body: str = "Hello") -> int:
    posted = await ws.run_service(
        sending.post_message,
        Actor.visitor(visitor.id),
        client_msg_id=f"open-{visitor.id}-{body}",
        body=body,
    )
    return posted.message["conversation"]


async def snapshot() -> list[tuple]:
    """Everything a refused frame must leave as it was."""

    def read():
        conversations = list(
            Conversation.objects.order_by("id").values_list(
                "id", "status", "agent_id", "last_seq", "agent_read_seq", "agent_unread"
            )
        )
        messages = list(Message.objects.order_by("id").values_list("id", "conversation_id"))
        return conversations + messages

    return await ws.db(read)


async def set_status(agent, status: str) -> None:
    await ws.db(AgentProfile.objects.filter(pk=agent.pk).update, status=status)


def agent_frame(kind: str, conversation_id: int) -> dict:
    frames = {
        "message.send": {"client_msg_id": "probe", "body": "Is anyone reading this?"},
        "typing": {"active": True},
        "read": {"seq": 1},
        "sync": {"after_seq": 0},
        "conversation.close": {},
    }
    return {"type": kind, "conversation": conversation_id, **frames[kind]}


AGENT_KINDS = ["message.send", "typing", "read", "sync", "conversation.close"]


# --- agents naming conversations that are not theirs ---------------------------------


async def queued_chat(personas) -> int:
    """Waiting in the queue: nobody has room (alice's socket, once open, takes none)."""
    await ws.db(
        AgentProfile.objects.filter(pk__in=[personas.alice.pk, personas.bob.pk]).update,
        capacity=0,
    )
    return await open_chat(personas.v3)


async def bobs_closed_chat(personas) -> int:
    await set_status(personas.alice, "away")
    conversation_id = await open_chat(personas.v2)
    await set_status(personas.alice, "available")
    conversation = await ws.db(Conversation.objects.get, pk=conversation_id)
    assert conversation.agent_id == personas.bob.id
    await ws.run_service(
        closing.close_conversation, Actor.agent(personas.bob.id), conversation_id=conversation_id
    )
    return conversation_id


async def chat_taken_back_from_alice(personas) -> int:
    """A chat alice had, re-queued when she lapsed and now bob's: hers no longer."""
    conversation_id = await open_chat(personas.v1)
    await ws.db(
        AgentProfile.objects.filter(pk=personas.alice.pk).update,
        last_heartbeat=timezone.now() - timezone.timedelta(hours=1),
    )
    await ws.run_service(closing.requeue_lapsed_agents)
    conversation = await ws.db(Conversation.objects.get, pk=conversation_id)
    assert conversation.agent_id == personas.bob.id
    await ws.run_service(presence.heartbeat, agent_id=personas.alice.id)
    return conversation_id


TARGETS = {
    "queued-unassigned": queued_chat,
    "another-agents-closed": bobs_closed_chat,
    "formerly-mine-now-bobs": chat_taken_back_from_alice,
}


@pytest.mark.parametrize("kind", AGENT_KINDS)
@pytest.mark.parametrize("target", list(TARGETS))
async def test_agent_naming_a_conversation_not_assigned_to_them_gets_the_missing_answer(
    personas, sockets, kind, target
):
    conversation_id = await TARGETS[target](personas)
    missing_id = conversation_id + 1000
    before = await snapshot()
    alice, _ready = await sockets.agent(personas.alice)
    visitor_tabs = [
        (await sockets.visitor(personas.acme.key, personas.token(v)))[0]
        for v in (personas.v1, personas.v2, personas.v3)
    ]

    await alice.send_json_to(agent_frame(kind, conversation_id))
    refused = await ws.receive_until(alice, "error")
    await alice.send_json_to(agent_frame(kind, missing_id))
    missing = await ws.receive_until(alice, "error")

    assert refused["code"] == "not_found"
    assert refused == missing
    assert str(conversation_id) not in refused["detail"]
    assert await snapshot() == before
    for tab in visitor_tabs:
        assert await ws.frames_before_pong(tab) == []
    assert [f for f in await ws.frames_before_pong(alice) if f["type"] == "sync"] == []


@pytest.mark.parametrize(
    "conversation",
    [0, -1, 1.0, "1", [1], {"id": 1}, None, True],
    ids=["zero", "negative", "float", "string", "list", "object", "null", "true"],
)
async def test_malformed_conversation_ids_are_bad_frames_and_touch_nothing(
    personas, sockets, conversation
):
    await open_chat(personas.v1)
    before = await snapshot()
    alice, _ready = await sockets.agent(personas.alice)

    await alice.send_json_to({**agent_frame("sync", 1), "conversation": conversation})

    assert (await ws.receive_until(alice, "error"))["code"] == "bad_frame"
    assert await snapshot() == before


async def test_an_id_past_the_databases_integer_range_is_answered_like_a_missing_one(
    personas, sockets
):
    await open_chat(personas.v1)
    before = await snapshot()
    alice, _ready = await sockets.agent(personas.alice)

    await alice.send_json_to(agent_frame("sync", 2**70))
    huge = await ws.receive_until(alice, "error")
    await alice.send_json_to(agent_frame("sync", 424242))
    missing = await ws.receive_until(alice, "error")

    assert huge == missing
    assert await snapshot() == before


# --- visitors slipping a conversation id into their frames ------------------------------


VISITOR_FRAMES = {
    "message.send": {"type": "message.send", "client_msg_id": "slip", "body": "into yours?"},
    "typing": {"type": "typing", "active": True},
    "read": {"type": "read", "seq": 1},
    "conversation.close": {"type": "conversation.close"},
}


@pytest.mark.parametrize("kind", list(VISITOR_FRAMES))
async def test_a_conversation_id_in_a_visitor_frame_is_ignored_and_acts_only_on_their_own(
    personas, sockets, kind
):
    own_id = await open_chat(personas.v1, "mine")
    others_id = await open_chat(personas.v2, "theirs")
    others_before = await ws.db(
        lambda: (
            Conversation.objects.filter(pk=others_id).values().get(),
            list(Message.objects.filter(conversation_id=others_id).values_list("id", flat=True)),
        )
    )
    v1_tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    v2_tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v2))
    bob, _ready = await sockets.agent(personas.bob)

    await v1_tab.send_json_to({**VISITOR_FRAMES[kind], "conversation": others_id})
    barrier = await ws.frames_before_pong(v1_tab)

    own = await ws.db(Conversation.objects.get, pk=own_id)
    if kind == "message.send":
        assert [f["conversation"] for f in barrier if f["type"] == "message.ack"] == [own_id]
        assert own.last_seq == 2
    elif kind == "read":
        assert own.visitor_read_seq == 1
    elif kind == "conversation.close":
        assert own.status == "closed"
    assert [f for f in barrier if f["type"] == "error"] == []
    others_after = await ws.db(
        lambda: (
            Conversation.objects.filter(pk=others_id).values().get(),
            list(Message.objects.filter(conversation_id=others_id).values_list("id", flat=True)),
        )
    )
    assert others_after == others_before
    assert await ws.frames_before_pong(v2_tab) == []
    assert await ws.frames_before_pong(bob) == []


@pytest.mark.parametrize("kind", ["typing", "read", "conversation.close"])
async def test_a_visitor_without_a_chat_naming_someone_elses_gets_not_found_and_changes_nothing(
    personas, sockets, kind
):
    others_id = await open_chat(personas.v2)
    before = await snapshot()
    v1_tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    v2_tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v2))

    await v1_tab.send_json_to({**VISITOR_FRAMES[kind], "conversation": others_id})
    refused = await ws.receive_until(v1_tab, "error")
    await v1_tab.send_json_to(VISITOR_FRAMES[kind])
    plain = await ws.receive_until(v1_tab, "error")

    assert refused["code"] == "not_found"
    assert refused == plain
    assert await snapshot() == before
    assert await ws.frames_before_pong(v2_tab) == []


async def test_a_visitor_socket_hears_nothing_of_another_visitors_chat(personas, sockets):
    others_id = await open_chat(personas.v2, "Where is my parcel?")
    v1_tab, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ready = await sockets.agent(personas.alice)

    await alice.send_json_to(
        {"type": "message.send", "conversation": others_id, "client_msg_id": "r", "body": "Hi"}
    )
    await ws.receive_until(alice, "message.ack")
    await alice.send_json_to({"type": "typing", "conversation": others_id, "active": True})
    await alice.send_json_to({"type": "read", "conversation": others_id, "seq": 1})
    await alice.send_json_to({"type": "conversation.close", "conversation": others_id})
    await ws.frames_before_pong(alice)

    assert ready["conversation"] is None
    assert await ws.frames_before_pong(v1_tab) == []


# --- supervisors: read the sites they serve, write nowhere that is not theirs ----------


async def supervisor(username: str, *sites: Site) -> AgentProfile:
    def make() -> AgentProfile:
        agent = make_agent(username, 1, available=False)
        agent.is_supervisor = True
        agent.save(update_fields=["is_supervisor"])
        agent.sites.set(sites)
        return agent

    return await ws.db(make)


@pytest.mark.parametrize("serves", ["acme", "every-site"])
async def test_a_supervisor_can_sync_a_colleagues_conversation_of_a_site_they_serve(
    personas, sockets, serves
):
    conversation_id = await open_chat(personas.v1, "Need a refund")
    carol = await supervisor("carol", *([personas.acme] if serves == "acme" else []))
    carol_socket, _ready = await sockets.agent(carol)

    await carol_socket.send_json_to(agent_frame("sync", conversation_id))
    reply = await ws.receive_until(carol_socket, "sync")

    assert reply["conversation"] == conversation_id
    assert [m["body"] for m in reply["messages"]] == ["Need a refund"]


@pytest.mark.parametrize("kind", ["message.send", "typing", "read", "conversation.close"])
async def test_a_supervisor_cannot_write_into_a_colleagues_conversation(personas, sockets, kind):
    conversation_id = await open_chat(personas.v1)
    carol = await supervisor("carol", personas.acme)
    before = await snapshot()
    carol_socket, _ready = await sockets.agent(carol)
    v1_tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ready = await sockets.agent(personas.alice)

    await carol_socket.send_json_to(agent_frame(kind, conversation_id))
    refused = await ws.receive_until(carol_socket, "error")
    await carol_socket.send_json_to(agent_frame(kind, conversation_id + 1000))
    missing = await ws.receive_until(carol_socket, "error")

    assert refused["code"] == "not_found"
    assert refused == missing
    assert await snapshot() == before
    assert await ws.frames_before_pong(v1_tab) == []
    assert await ws.frames_before_pong(alice) == []


async def test_a_supervisor_of_another_site_cannot_sync_this_sites_conversations(personas, sockets):
    conversation_id = await open_chat(personas.v1)
    globex = await ws.db(Site.objects.create, name="globex", allowed_origins=[])
    carol = await supervisor("carol", globex)
    carol_socket, _ready = await sockets.agent(carol)

    await carol_socket.send_json_to(agent_frame("sync", conversation_id))
    refused = await ws.receive_until(carol_socket, "error")
    await carol_socket.send_json_to(agent_frame("sync", conversation_id + 1000))
    missing = await ws.receive_until(carol_socket, "error")

    assert refused["code"] == "not_found"
    assert refused == missing


async def test_an_agent_who_is_no_supervisor_cannot_sync_a_colleagues_conversation(
    personas, sockets
):
    conversation_id = await open_chat(personas.v2)
    assert (await ws.db(Conversation.objects.get, pk=conversation_id)).agent_id == personas.alice.id
    dave = await ws.db(make_agent, "dave", 1, available=False)
    dave_socket, _ready = await sockets.agent(dave)

    await dave_socket.send_json_to(agent_frame("sync", conversation_id))

    assert (await ws.receive_until(dave_socket, "error"))["code"] == "not_found"


def test_create_agent_supervisor_flag_is_set_and_cleared_by_running_it_again(db, capsys):
    call_command("create_agent", "erin", "--password", "erin-pass", "--supervisor")
    made = AgentProfile.objects.get(user__username="erin").is_supervisor
    call_command("create_agent", "erin", "--password", "erin-pass")
    cleared = AgentProfile.objects.get(user__username="erin").is_supervisor

    assert (made, cleared) == (True, False)
    assert "supervisor" in capsys.readouterr().out.splitlines()[0]
