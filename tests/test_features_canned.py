"""Canned responses: an agent's own reply snippets and the desk's shared ones, expanded by
`/shortcut` in the dashboard. Own wins over shared; another agent's are invisible and
untouchable; supervisors look after the shared ones."""

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.urls import reverse

from agents import selectors as agent_selectors
from agents import services as agent_services
from agents.errors import CannedResponseRefused
from agents.models import AgentProfile, CannedResponse
from chat.models import Message
from chat.protocol.errors import refusal
from chat.realtime import groups
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)

Refused = CannedResponseRefused


def code(refused: CannedResponseRefused) -> str:
    """The error code a socket answers this refusal with."""
    return refusal(refused).code


def shared(shortcut: str, body: str) -> CannedResponse:
    return CannedResponse.objects.create(owner=None, shortcut=shortcut, body=body)


def own(agent: AgentProfile, shortcut: str, body: str) -> CannedResponse:
    return CannedResponse.objects.create(owner=agent, shortcut=shortcut, body=body)


def usable(agent: AgentProfile) -> dict[str, str]:
    return {r["shortcut"]: r["body"] for r in agent_selectors.usable_canned_responses(agent.id)}


def make_supervisor(agent: AgentProfile) -> AgentProfile:
    AgentProfile.objects.filter(pk=agent.pk).update(is_supervisor=True)
    agent.is_supervisor = True
    return agent


# --- selectors ------------------------------------------------------------------


def test_agent_sees_own_and_shared_and_own_wins_on_the_same_shortcut(personas):
    shared("refund", "Shared refund text")
    shared("hours", "We are open 9-17.")
    own(personas.alice, "refund", "Alice's refund text")
    own(personas.alice, "hi", "Hi, I'm Alice!")

    rows = agent_selectors.usable_canned_responses(personas.alice.id)

    assert [(r["shortcut"], r["body"], r["shared"]) for r in rows] == [
        ("hi", "Hi, I'm Alice!", False),
        ("hours", "We are open 9-17.", True),
        ("refund", "Alice's refund text", False),
    ]


def test_another_agents_snippets_are_invisible(personas):
    own(personas.bob, "secret", "Bob's private macro")
    shared("hours", "We are open 9-17.")
    assert usable(personas.alice) == {"hours": "We are open 9-17."}
    assert "Bob's private macro" not in repr(agent_selectors.canned_for(personas.alice.id))


def test_shared_snippets_are_read_only_for_agents_and_editable_for_supervisors(personas):
    shared("hours", "We are open 9-17.")
    own(personas.alice, "hi", "Hello!")
    responses, can_edit_shared = agent_selectors.canned_for(personas.alice.id)
    assert can_edit_shared is False
    assert {r["shortcut"]: r["editable"] for r in responses} == {
        "hours": False,
        "hi": True,
    }

    make_supervisor(personas.alice)
    responses, can_edit_shared = agent_selectors.canned_for(personas.alice.id)
    assert can_edit_shared is True
    assert all(r["editable"] for r in responses)


# --- services: creating and validation -------------------------------------------


def test_create_normalises_the_shortcut_and_trims_the_body(personas):
    saved = agent_services.create_canned_response(
        agent_id=personas.alice.id, shortcut=" /Refund ", body="  Your refund is on its way.\n"
    )
    assert saved["shortcut"] == "refund" and saved["body"] == "Your refund is on its way."
    row = CannedResponse.objects.get()
    assert (row.owner_id, row.shortcut) == (personas.alice.id, "refund")


@pytest.mark.parametrize("shortcut", ["", "/", "two words", "-dash", "ünïcode", "x" * 33, "a/b"])
def test_bad_shortcuts_are_refused_with_bad_shortcut(personas, shortcut):
    with pytest.raises(Refused) as refused:
        agent_services.create_canned_response(
            agent_id=personas.alice.id, shortcut=shortcut, body="text"
        )
    assert code(refused.value) == "bad_shortcut"
    assert not CannedResponse.objects.exists()


def test_empty_and_too_long_bodies_are_refused(personas):
    with pytest.raises(Refused) as empty:
        agent_services.create_canned_response(agent_id=personas.alice.id, shortcut="a", body="  ")
    with pytest.raises(Refused) as long:
        agent_services.create_canned_response(
            agent_id=personas.alice.id, shortcut="a", body="x" * 10_001
        )
    assert (code(empty.value), code(long.value)) == ("bad_frame", "too_long")
    assert not CannedResponse.objects.exists()


def test_a_snippet_is_never_longer_than_a_message_may_be():
    # Expanded in the composer and sent as a message: a longer snippet could not be sent.
    assert CannedResponse.MAX_BODY_CHARS <= Message.MAX_BODY_CHARS


def test_a_duplicate_own_shortcut_is_refused_but_shadowing_a_shared_one_is_fine(personas):
    shared("refund", "Shared refund text")
    agent_services.create_canned_response(
        agent_id=personas.alice.id, shortcut="refund", body="Mine"
    )
    with pytest.raises(Refused) as refused:
        agent_services.create_canned_response(
            agent_id=personas.alice.id, shortcut="REFUND", body="Mine again"
        )
    assert code(refused.value) == "duplicate_shortcut"
    # Bob may use the same shortcut for his own.
    agent_services.create_canned_response(agent_id=personas.bob.id, shortcut="refund", body="Bob's")
    assert usable(personas.alice)["refund"] == "Mine"
    assert usable(personas.bob)["refund"] == "Bob's"


def test_a_duplicate_that_slips_past_the_check_is_still_a_duplicate_shortcut(personas):
    # Two tabs saving /refund at once both pass the exists() check; the constraint
    # refuses the second insert, and the caller's transaction stays usable.
    own(personas.alice, "refund", "First tab")
    with transaction.atomic():
        with pytest.raises(Refused) as refused:
            agent_services._save(CannedResponse(owner=personas.alice, shortcut="refund", body="x"))
        assert CannedResponse.objects.count() == 1
    assert code(refused.value) == "duplicate_shortcut"


def test_an_agent_cannot_create_a_shared_snippet_but_a_supervisor_can(personas):
    with pytest.raises(Refused) as refused:
        agent_services.create_canned_response(
            agent_id=personas.alice.id, shortcut="hours", body="9-17", shared=True
        )
    assert code(refused.value) == "forbidden"
    assert not CannedResponse.objects.exists()

    make_supervisor(personas.alice)
    saved = agent_services.create_canned_response(
        agent_id=personas.alice.id, shortcut="hours", body="9-17", shared=True
    )
    assert saved["shared"] is True
    assert usable(personas.bob) == {"hours": "9-17"}


def test_a_deactivated_supervisor_may_not_edit_shared_snippets(personas):
    make_supervisor(personas.alice)
    get_user_model().objects.filter(pk=personas.alice.user_id).update(is_active=False)
    with pytest.raises(Refused) as refused:
        agent_services.create_canned_response(
            agent_id=personas.alice.id, shortcut="hours", body="9-17", shared=True
        )
    assert code(refused.value) == "forbidden"


def test_the_number_of_own_snippets_is_capped(personas, monkeypatch):
    monkeypatch.setattr(agent_services, "MAX_OWN_CANNED_RESPONSES", 2)
    for shortcut in ("a", "b"):
        agent_services.create_canned_response(
            agent_id=personas.alice.id, shortcut=shortcut, body="x"
        )
    with pytest.raises(Refused) as refused:
        agent_services.create_canned_response(agent_id=personas.alice.id, shortcut="c", body="x")
    assert code(refused.value) == "too_many"
    # Bob has his own allowance.
    agent_services.create_canned_response(agent_id=personas.bob.id, shortcut="c", body="x")


# --- services: editing and deleting, with their access checks ----------------------


def test_an_agent_updates_and_deletes_its_own_snippet(personas):
    mine = own(personas.alice, "refund", "Old text")
    saved = agent_services.update_canned_response(
        agent_id=personas.alice.id, response_id=mine.id, shortcut="refunds", body="New text"
    )
    assert (saved["id"], saved["shortcut"], saved["body"]) == (mine.id, "refunds", "New text")
    agent_services.delete_canned_response(agent_id=personas.alice.id, response_id=mine.id)
    assert not CannedResponse.objects.exists()


def test_renaming_onto_another_own_shortcut_is_a_duplicate(personas):
    own(personas.alice, "refund", "R")
    hours = own(personas.alice, "hours", "H")
    with pytest.raises(Refused) as refused:
        agent_services.update_canned_response(
            agent_id=personas.alice.id, response_id=hours.id, shortcut="refund", body="H"
        )
    assert code(refused.value) == "duplicate_shortcut"
    assert CannedResponse.objects.get(pk=hours.pk).shortcut == "hours"


def test_another_agents_snippet_is_not_found_for_update_or_delete(personas):
    bobs = own(personas.bob, "secret", "Bob's private macro")
    with pytest.raises(Refused) as updating:
        agent_services.update_canned_response(
            agent_id=personas.alice.id, response_id=bobs.id, shortcut="secret", body="mine now"
        )
    with pytest.raises(Refused) as deleting:
        agent_services.delete_canned_response(agent_id=personas.alice.id, response_id=bobs.id)
    with pytest.raises(Refused) as missing:
        agent_services.delete_canned_response(agent_id=personas.alice.id, response_id=bobs.id + 99)
    # The same answer as for an id that does not exist: ids cannot be probed.
    assert code(updating.value) == code(deleting.value) == code(missing.value) == "not_found"
    assert str(updating.value) == str(missing.value)
    assert CannedResponse.objects.get(pk=bobs.pk).body == "Bob's private macro"


def test_even_a_supervisor_cannot_touch_another_agents_own_snippet(personas):
    make_supervisor(personas.alice)
    bobs = own(personas.bob, "secret", "Bob's private macro")
    with pytest.raises(Refused) as refused:
        agent_services.delete_canned_response(agent_id=personas.alice.id, response_id=bobs.id)
    assert code(refused.value) == "not_found"
    assert CannedResponse.objects.filter(pk=bobs.pk).exists()


def test_an_agent_cannot_edit_or_delete_a_shared_snippet_but_a_supervisor_can(personas):
    hours = shared("hours", "We are open 9-17.")
    with pytest.raises(Refused) as updating:
        agent_services.update_canned_response(
            agent_id=personas.alice.id, response_id=hours.id, shortcut="hours", body="Closed!"
        )
    with pytest.raises(Refused) as deleting:
        agent_services.delete_canned_response(agent_id=personas.alice.id, response_id=hours.id)
    assert code(updating.value) == code(deleting.value) == "forbidden"
    assert CannedResponse.objects.get(pk=hours.pk).body == "We are open 9-17."

    make_supervisor(personas.bob)
    agent_services.update_canned_response(
        agent_id=personas.bob.id, response_id=hours.id, shortcut="hours", body="9-18 now."
    )
    # Still shared: editing never changes the owner.
    assert usable(personas.alice) == {"hours": "9-18 now."}


# --- who hears about a change ------------------------------------------------------


def test_own_changes_ring_only_the_owner_and_shared_changes_ring_every_agent(
    personas, capture_broadcasts
):
    mine = agent_services.create_canned_response(
        agent_id=personas.alice.id, shortcut="hi", body="Hello"
    )
    agent_services.delete_canned_response(agent_id=personas.alice.id, response_id=mine["id"])
    make_supervisor(personas.bob)
    agent_services.create_canned_response(
        agent_id=personas.bob.id, shortcut="hours", body="9-17", shared=True
    )
    ring = {"type": groups.CANNED_CHANGED_EVENT}
    assert capture_broadcasts == [
        (groups.agent_group(personas.alice.id), ring),
        (groups.agent_group(personas.alice.id), ring),
        (groups.AGENTS_GROUP, ring),
    ]


def test_a_refused_change_rings_nobody(personas, capture_broadcasts):
    bobs = own(personas.bob, "secret", "x")
    with pytest.raises(Refused):
        agent_services.delete_canned_response(agent_id=personas.alice.id, response_id=bobs.id)
    with pytest.raises(Refused):
        agent_services.create_canned_response(agent_id=personas.alice.id, shortcut="", body="x")
    assert capture_broadcasts == []


# --- the admin ---------------------------------------------------------------------


def test_admin_lists_filters_and_searches_canned_responses(personas, capture_broadcasts):
    shared("hours", "We are open 9-17.")
    own(personas.alice, "refund", "Alice's refund text")
    admin = get_user_model().objects.create_superuser("root", password="root-pass")
    client = Client()
    client.force_login(admin)
    url = reverse("admin:agents_cannedresponse_changelist")

    every = client.get(url).content.decode()
    assert "/hours" in every and "/refund" in every and "Shared" in every
    only_shared = client.get(url, {"shared": "yes"}).content.decode()
    assert "/hours" in only_shared and "/refund" not in only_shared
    found = client.get(url, {"q": "alice"}).content.decode()
    assert "/refund" in found and "/hours" not in found

    # Adding a shared one in the admin rings every agent's dashboard.
    response = client.post(
        reverse("admin:agents_cannedresponse_add"),
        {"owner": "", "shortcut": "thanks", "body": "Thanks for waiting!"},
    )
    assert response.status_code == 302
    assert CannedResponse.objects.filter(owner=None, shortcut="thanks").exists()
    assert (groups.AGENTS_GROUP, {"type": groups.CANNED_CHANGED_EVENT}) in capture_broadcasts


def test_admin_changes_ring_the_owners_before_and_after_and_a_bulk_delete_each_once(
    personas, capture_broadcasts
):
    moved = own(personas.alice, "refund", "R")
    own(personas.alice, "hi", "Hello")
    shared("hours", "9-17")
    admin = get_user_model().objects.create_superuser("root", password="root-pass")
    client = Client()
    client.force_login(admin)
    ring = {"type": groups.CANNED_CHANGED_EVENT}
    alice, bob = groups.agent_group(personas.alice.id), groups.agent_group(personas.bob.id)

    # Alice's snippet handed to Bob: both lists changed.
    response = client.post(
        reverse("admin:agents_cannedresponse_change", args=[moved.pk]),
        {"owner": personas.bob.pk, "shortcut": "refund", "body": "R"},
    )
    assert response.status_code == 302
    assert sorted(capture_broadcasts) == sorted([(alice, ring), (bob, ring)])

    # Alice's, Bob's and the shared snippet deleted at once: one ring per owner.
    capture_broadcasts.clear()
    response = client.post(
        reverse("admin:agents_cannedresponse_changelist"),
        {
            "action": "delete_selected",
            "post": "yes",
            "_selected_action": list(CannedResponse.objects.values_list("pk", flat=True)),
        },
    )
    assert response.status_code == 302
    assert not CannedResponse.objects.exists()
    assert sorted(capture_broadcasts) == sorted(
        [(alice, ring), (bob, ring), (groups.AGENTS_GROUP, ring)]
    )


def test_admin_refuses_a_second_shared_snippet_with_the_same_shortcut(personas):
    shared("hours", "We are open 9-17.")
    admin = get_user_model().objects.create_superuser("root", password="root-pass")
    client = Client()
    client.force_login(admin)
    response = client.post(
        reverse("admin:agents_cannedresponse_add"),
        {"owner": "", "shortcut": "hours", "body": "Other hours"},
    )
    assert response.status_code == 200  # the form again, with the error
    assert CannedResponse.objects.count() == 1


# --- sockets -----------------------------------------------------------------------


async def test_canned_list_answers_with_own_and_shared_snippets(personas, sockets):
    await ws.db(shared, "hours", "We are open 9-17.")
    await ws.db(own, personas.alice, "refund", "Alice's refund text")
    await ws.db(own, personas.bob, "secret", "Bob's private macro")
    alice, _ = await sockets.agent(personas.alice)

    await alice.send_json_to({"type": "canned.list"})
    frame = await ws.receive_until(alice, "canned")

    assert [(r["shortcut"], r["shared"], r["editable"]) for r in frame["responses"]] == [
        ("hours", True, False),
        ("refund", False, True),
    ]
    assert frame["can_edit_shared"] is False
    assert "Bob's private macro" not in repr(frame)


async def test_creating_a_snippet_answers_saved_and_every_tab_gets_the_new_list(personas, sockets):
    alice, _ = await sockets.agent(personas.alice)
    alice_other_tab, _ = await sockets.agent(personas.alice)
    bob, _ = await sockets.agent(personas.bob)

    await alice.send_json_to(
        {"type": "canned.create", "shortcut": "refund", "body": "Your refund is on its way."}
    )

    saved = await ws.receive_until(alice, "canned.saved")
    assert saved["response"]["shortcut"] == "refund" and saved["response"]["shared"] is False
    for tab in (alice, alice_other_tab):
        listed = await ws.receive_until(tab, "canned")
        assert [r["body"] for r in listed["responses"]] == ["Your refund is on its way."]
    # Bob's dashboard hears nothing of Alice's own snippets.
    assert all(f["type"] != "canned" for f in await ws.frames_before_pong(bob))


async def test_a_supervisors_shared_snippet_reaches_every_agent(personas, sockets):
    await ws.db(make_supervisor, personas.alice)
    await ws.db(own, personas.bob, "hours", "Bob's own hours text")
    alice, _ = await sockets.agent(personas.alice)
    bob, _ = await sockets.agent(personas.bob)

    await alice.send_json_to(
        {"type": "canned.create", "shortcut": "hours", "body": "9-17", "shared": True}
    )
    await alice.send_json_to(
        {"type": "canned.create", "shortcut": "thanks", "body": "Thanks!", "shared": True}
    )

    assert (await ws.receive_until(alice, "canned.saved"))["response"]["shared"] is True
    await ws.receive_until(bob, "canned")
    latest = await ws.receive_until(bob, "canned")
    # Bob's own /hours still wins over the shared one.
    assert {r["shortcut"]: r["body"] for r in latest["responses"]} == {
        "hours": "Bob's own hours text",
        "thanks": "Thanks!",
    }


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "canned.create", "shortcut": "no spaces", "body": "x"}, "bad_shortcut"),
        ({"type": "canned.create", "shortcut": "ok", "body": ""}, "bad_frame"),
        ({"type": "canned.create", "shortcut": "ok", "body": "x" * 10_001}, "too_long"),
        ({"type": "canned.create", "shortcut": 5, "body": "x"}, "bad_frame"),
        ({"type": "canned.create", "shortcut": "ok"}, "bad_frame"),
        ({"type": "canned.create", "shortcut": "ok", "body": "x", "shared": "yes"}, "bad_frame"),
        ({"type": "canned.create", "shortcut": "ok", "body": "x", "shared": True}, "forbidden"),
        ({"type": "canned.update", "id": "1", "shortcut": "ok", "body": "x"}, "bad_frame"),
        ({"type": "canned.delete", "id": True}, "bad_frame"),
        ({"type": "canned.delete", "id": 999_999}, "not_found"),
    ],
)
async def test_bad_canned_frames_get_a_typed_error_and_store_nothing(
    personas, sockets, frame, code
):
    alice, _ = await sockets.agent(personas.alice)
    await alice.send_json_to(frame)
    error = await ws.receive_until(alice, "error")
    assert error["code"] == code
    assert not await ws.db(CannedResponse.objects.exists)


async def test_a_duplicate_shortcut_is_refused_on_the_socket(personas, sockets):
    await ws.db(own, personas.alice, "refund", "R")
    alice, _ = await sockets.agent(personas.alice)
    await alice.send_json_to({"type": "canned.create", "shortcut": "refund", "body": "again"})
    error = await ws.receive_until(alice, "error")
    assert error["code"] == "duplicate_shortcut"
    assert "/refund" in error["detail"]


async def test_an_agent_cannot_change_a_colleagues_or_a_shared_snippet_over_the_socket(
    personas, sockets
):
    bobs = await ws.db(own, personas.bob, "secret", "Bob's private macro")
    hours = await ws.db(shared, "hours", "We are open 9-17.")
    alice, _ = await sockets.agent(personas.alice)

    await alice.send_json_to(
        {"type": "canned.update", "id": bobs.id, "shortcut": "secret", "body": "mine"}
    )
    assert (await ws.receive_until(alice, "error"))["code"] == "not_found"
    await alice.send_json_to({"type": "canned.delete", "id": bobs.id})
    assert (await ws.receive_until(alice, "error"))["code"] == "not_found"
    await alice.send_json_to({"type": "canned.delete", "id": hours.id})
    assert (await ws.receive_until(alice, "error"))["code"] == "forbidden"

    bodies = await ws.db(lambda: sorted(CannedResponse.objects.values_list("body", flat=True)))
    assert bodies == ["Bob's private macro", "We are open 9-17."]


async def test_update_and_delete_over_the_socket(personas, sockets):
    mine = await ws.db(own, personas.alice, "refund", "Old")
    alice, _ = await sockets.agent(personas.alice)

    await alice.send_json_to(
        {"type": "canned.update", "id": mine.id, "shortcut": "refund", "body": "New"}
    )
    assert (await ws.receive_until(alice, "canned.saved"))["response"]["body"] == "New"
    assert [r["body"] for r in (await ws.receive_until(alice, "canned"))["responses"]] == ["New"]

    await alice.send_json_to({"type": "canned.delete", "id": mine.id})
    assert (await ws.receive_until(alice, "canned.deleted"))["id"] == mine.id
    assert (await ws.receive_until(alice, "canned"))["responses"] == []


async def test_a_visitor_socket_cannot_use_canned_frames(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await visitor.send_json_to({"type": "canned.list"})
    assert (await ws.receive_until(visitor, "error"))["code"] == "bad_frame"
