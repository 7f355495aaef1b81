"""Sneak peek: the assigned agent sees the visitor's unsent draft (a visitor `typing`
frame with `text`), only while the site allows it, never stored, never sent to anyone
but the agent, and throttled before any database work."""

import json

import pytest

from agents.models import AgentProfile
from chat.conversations import sending
from chat.models import Message, Note, Site
from chat.transport import consumers
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)

DRAFT = "My card number is 4111 1111"


async def chat_with_alice(sockets, personas):
    """v1 chats with alice; returns (visitor socket, its ready, alice's socket, conversation)."""
    alice, _ = await sockets.agent(personas.alice)
    visitor, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "m1", "body": "Hi"})
    ack = await ws.receive_until(visitor, "message.ack")
    await ws.receive_until(alice, "conversation.assigned")
    await ws.receive_until(visitor, "conversation.assigned")
    return visitor, ready, alice, ack["conversation"]


def draft(text: str, active: bool = True) -> dict:
    return {"type": "typing", "active": active, "text": text}


async def test_the_agent_sees_the_draft_and_the_visitors_other_tab_does_not(personas, sockets):
    visitor, ready, alice, conversation = await chat_with_alice(sockets, personas)
    other_tab, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["sneak_peek"] is True

    await visitor.send_json_to(draft(DRAFT))

    assert await ws.receive_until(alice, "typing") == {
        "type": "typing",
        "conversation": conversation,
        "from": "visitor",
        "active": True,
        "text": DRAFT,
    }
    for tab in (visitor, other_tab):
        assert DRAFT not in json.dumps(await ws.frames_before_pong(tab))
    # Never stored anywhere a transcript or an export could read it.
    bodies = await ws.db(
        lambda: [*Message.objects.values_list("body", flat=True), *Note.objects.values("body")]
    )
    assert bodies == ["Hi"]


async def test_with_the_site_setting_off_the_draft_is_dropped_and_ready_says_so(personas, sockets):
    await ws.db(lambda: Site.objects.filter(pk=personas.acme.pk).update(sneak_peek=False))
    visitor, ready, alice, conversation = await chat_with_alice(sockets, personas)
    assert ready["sneak_peek"] is False

    # The widget would not send it; a client that does anyway is not believed.
    await visitor.send_json_to(draft(DRAFT))

    assert await ws.receive_until(alice, "typing") == {
        "type": "typing",
        "conversation": conversation,
        "from": "visitor",
        "active": True,
    }


async def test_stopping_clears_the_draft(personas, sockets):
    visitor, _ready, alice, _conversation = await chat_with_alice(sockets, personas)

    await visitor.send_json_to(draft(DRAFT, active=False))

    stopped = await ws.receive_until(alice, "typing")
    assert stopped["active"] is False and "text" not in stopped


async def test_drafts_faster_than_the_throttle_are_dropped_before_any_database_work(
    personas, sockets, monkeypatch
):
    visitor, _ready, alice, _conversation = await chat_with_alice(sockets, personas)
    calls = []
    relay = sending.relay_typing

    def counted(*args, **kwargs):
        calls.append(kwargs.get("text"))
        return relay(*args, **kwargs)

    monkeypatch.setattr(sending, "relay_typing", counted)

    for n in range(5):
        await visitor.send_json_to(draft(f"Hel{'l' * n}"))
    assert await ws.frames_before_pong(visitor) == []  # dropped unanswered, no error

    assert calls == ["Hel"]
    seen = [f for f in await ws.frames_before_pong(alice) if f["type"] == "typing"]
    assert [f["text"] for f in seen] == ["Hel"]

    # Past the interval the next draft goes through.
    monkeypatch.setattr(consumers, "DRAFT_MIN_INTERVAL", 0.0)
    await visitor.send_json_to(draft("Hello there"))
    assert (await ws.receive_until(alice, "typing"))["text"] == "Hello there"


@pytest.mark.parametrize(
    ("text", "code"),
    [(12, "bad_frame"), (["a"], "bad_frame"), ("x" * 1001, "too_long")],
)
async def test_a_bad_draft_is_refused_and_relays_nothing(personas, sockets, text, code):
    visitor, _ready, alice, _conversation = await chat_with_alice(sockets, personas)

    await visitor.send_json_to(draft(text))

    assert (await ws.receive_until(visitor, "error"))["code"] == code
    assert [f for f in await ws.frames_before_pong(alice) if f["type"] == "typing"] == []


async def test_a_draft_in_the_queue_reaches_nobody(personas, sockets):
    await ws.db(lambda: AgentProfile.objects.update(status="away"))
    alice, _ = await sockets.agent(personas.alice)
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "m1", "body": "Hi"})
    await ws.receive_until(visitor, "conversation.queued")

    await visitor.send_json_to(draft(DRAFT))

    assert DRAFT not in json.dumps(await ws.frames_before_pong(alice))
    assert await ws.frames_before_pong(visitor) == []


async def test_the_widget_page_knows_the_setting_for_its_privacy_line(personas, client):
    page = await ws.db(client.get, f"/widget/frame/{personas.acme.key}/")
    config = json.loads(
        page.content.decode().split('id="sd-config"')[1].split(">", 1)[1].split("<")[0]
    )
    assert config["sneak_peek"] is True

    await ws.db(lambda: Site.objects.filter(pk=personas.acme.pk).update(sneak_peek=False))
    page = await ws.db(client.get, f"/widget/frame/{personas.acme.key}/")
    assert '"sneak_peek": false' in page.content.decode()


async def test_site_admins_can_turn_it_off(personas, admin_client):
    page = await ws.db(admin_client.get, f"/admin/chat/site/{personas.acme.pk}/change/")
    assert 'name="sneak_peek"' in page.content.decode()
