"""Agents see who waits in the queue of their sites (who, since when, what they wrote
first) and, where the site allows it, take a chat from it themselves (`queue.list`,
`conversation.take`, additions); the visitor's `ready` says where each agent joined."""

import pytest

from agents.models import AgentProfile
from chat.models import Site, Visitor
from tests import ws
from tests.test_consumers_agent import open_chat, set_away, visitor_socket

pytestmark = pytest.mark.django_db(transaction=True)


async def waiting(agent) -> list[dict]:
    await agent.send_json_to({"type": "queue.list"})
    return (await ws.receive_until(agent, "queue"))["conversations"]


async def test_an_agent_sees_who_waits_since_when_and_what_they_wrote_first(personas, sockets):
    await set_away(personas.alice, personas.bob)
    await ws.db(Visitor.objects.filter(pk=personas.v1.pk).update, name="Grace Hopper")
    first = await open_chat(personas.v1, "My parcel never came")
    second = await open_chat(personas.v2, "  Do you   ship to Norway?  ")
    agent, _ready = await sockets.agent(personas.alice)

    entries = await waiting(agent)

    assert [
        (e["id"], e["position"], e["visitor"]["name"], e["first_message"], e["can_take"])
        for e in entries
    ] == [
        (first, 1, "Grace Hopper", "My parcel never came", False),
        (second, 2, None, "Do you ship to Norway?", False),
    ]
    assert all(e["site"] == personas.acme.pk and e["queued_at"] for e in entries)


async def test_an_agent_takes_a_waiting_chat_where_the_site_allows_it(personas, sockets):
    await ws.db(Site.objects.filter(pk=personas.acme.pk).update, agents_pick_from_queue=True)
    await set_away(personas.alice, personas.bob)
    await open_chat(personas.v1, "Anyone?")
    second = await open_chat(personas.v2, "Me too")
    agent, _ready = await sockets.agent(personas.alice)
    assert [e["can_take"] for e in await waiting(agent)] == [True, True]

    # Out of routing's order: the second in line.
    await agent.send_json_to({"type": "conversation.take", "conversation": second})

    assigned = await ws.receive_until(agent, "conversation.assigned")
    assert assigned["conversation"]["id"] == second
    assert [m["body"] for m in assigned["conversation"]["messages"]] == ["Me too"]
    assert [e["position"] for e in await waiting(agent)] == [1]
    # Taken by someone: nothing left to take.
    await agent.send_json_to({"type": "conversation.take", "conversation": second})
    assert (await ws.receive_until(agent, "error"))["code"] == "not_found"


async def test_taking_is_refused_where_the_site_does_not_allow_it_or_the_agent_is_full(
    personas, sockets
):
    await set_away(personas.alice, personas.bob)
    first = await open_chat(personas.v1)
    agent, _ready = await sockets.agent(personas.bob)

    await agent.send_json_to({"type": "conversation.take", "conversation": first})
    assert (await ws.receive_until(agent, "error"))["code"] == "forbidden"

    await ws.db(Site.objects.filter(pk=personas.acme.pk).update, agents_pick_from_queue=True)
    await ws.db(AgentProfile.objects.filter(pk=personas.bob.pk).update, capacity=0)
    await agent.send_json_to({"type": "conversation.take", "conversation": first})
    assert (await ws.receive_until(agent, "error"))["code"] == "agent_unavailable"
    assert [e["id"] for e in await waiting(agent)] == [first]


async def test_a_visitor_who_reloads_learns_where_each_agent_joined(personas, sockets):
    alice, _ = await sockets.agent(personas.alice)
    bob, _ = await sockets.agent(personas.bob)
    chat = await open_chat(personas.v1, "Hi")
    await ws.receive_until(alice, "conversation.assigned")
    await alice.send_json_to(
        {"type": "message.send", "conversation": chat, "client_msg_id": "a", "body": "Alice"}
    )
    await ws.receive_until(alice, "message.ack")
    await alice.send_json_to(
        {"type": "conversation.transfer", "conversation": chat, "to_agent": personas.bob.id}
    )
    await ws.receive_until(bob, "conversation.assigned")

    _tab, ready = await visitor_socket(sockets, personas, personas.v1, last_seq=0)

    # Alice after the visitor's first message; Bob after alice's reply and the system
    # line that says he takes over.
    assert ready["conversation"]["joins"] == [
        {"agent": {"display_name": "Alice"}, "after_seq": 1},
        {"agent": {"display_name": "Bob"}, "after_seq": 3},
    ]
