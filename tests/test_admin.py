"""The Django admin as an operator uses it: every page renders, search and filters find
conversations, transcripts are read-only records, and changes go through services."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.models import AgentProfile
from chat.conversations import closing, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Message, SenderKind, Site, Visitor
from chat.realtime import groups

from .conftest import make_visitor


def open_chat(visitor: Visitor, *bodies: str) -> Conversation:
    """The visitor writes `bodies` through the service, as the widget would."""
    for n, body in enumerate(bodies):
        sending.post_message(
            Actor.visitor(visitor.id), client_msg_id=f"v{visitor.id}-{n}", body=body
        )
    return Conversation.objects.get(visitor=visitor, status__in=Conversation.OPEN_STATUSES)


def changelist(model: str) -> str:
    return reverse(f"admin:{model}_changelist")


def change(model: str, pk: int) -> str:
    return reverse(f"admin:{model}_change", args=[pk])


def listed(response) -> list:
    return list(response.context["cl"].result_list)


def set_away(*agents: AgentProfile) -> None:
    AgentProfile.objects.filter(pk__in=[a.pk for a in agents]).update(
        status=AgentProfile.Status.AWAY
    )


# --- every page renders -----------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["chat_site", "chat_visitor", "chat_conversation", "agents_agentprofile"]
)
def test_each_changelist_renders_for_a_superuser_and_lists_the_rows(admin_client, personas, model):
    conversation = open_chat(personas.v1, "Hello?")
    shown = {
        "chat_site": str(personas.acme),
        "chat_visitor": str(personas.v1),
        "chat_conversation": change("chat_conversation", conversation.pk),
        "agents_agentprofile": str(personas.alice),
    }[model]

    response = admin_client.get(changelist(model))

    assert response.status_code == 200
    assert shown in response.content.decode()


@pytest.mark.parametrize(
    ("model", "persona"),
    [
        ("chat_site", "acme"),
        ("chat_visitor", "v1"),
        ("chat_conversation", "conversation"),
        ("agents_agentprofile", "alice"),
    ],
)
def test_each_change_page_renders_for_a_superuser(admin_client, personas, model, persona):
    conversation = open_chat(personas.v1, "Hello?")
    obj = conversation if persona == "conversation" else getattr(personas, persona)

    response = admin_client.get(change(model, obj.pk))

    assert response.status_code == 200
    assert str(obj) in response.content.decode()


def test_add_pages_render_for_sites_and_agents(admin_client, personas):
    assert admin_client.get(reverse("admin:chat_site_add")).status_code == 200
    assert admin_client.get(reverse("admin:agents_agentprofile_add")).status_code == 200


def test_conversations_and_visitors_cannot_be_added_by_hand(admin_client, personas):
    assert admin_client.get(reverse("admin:chat_conversation_add")).status_code == 403
    assert admin_client.get(reverse("admin:chat_visitor_add")).status_code == 403


# --- sites --------------------------------------------------------------------------


def test_site_origins_typed_one_per_line_are_stored_normalised_and_deduplicated(admin_client, db):
    response = admin_client.post(
        reverse("admin:chat_site_add"),
        {
            "name": "Shop",
            "allowed_origins": "https://Shop.Example/\r\nhttps://shop.example\r\n\r\n"
            "  http://localhost:8000  \r\n",
            "enabled": "on",
            "widget_color": "#112233",
            "widget_greeting": "Hello from Shop",
            "widget_position": "left",
            "typical_chat_minutes": "5",
            # The per-language texts' inline, empty, as the admin page sends it.
            "texts-TOTAL_FORMS": "0",
            "texts-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    site = Site.objects.get(name="Shop")
    assert site.allowed_origins == ["https://shop.example", "http://localhost:8000"]
    assert len(site.key) >= 20
    assert (site.widget_color, site.widget_position) == ("#112233", "left")


def test_site_form_refuses_a_url_with_a_path_and_stores_nothing(admin_client, db):
    response = admin_client.post(
        reverse("admin:chat_site_add"),
        {
            "name": "Shop",
            "allowed_origins": "https://shop.example/checkout",
            "enabled": "on",
            "widget_color": "#2456d6",
            "widget_position": "right",
            "typical_chat_minutes": "5",
        },
    )

    assert response.status_code == 200
    assert "is not an origin like https://shop.example" in response.content.decode()
    assert not Site.objects.filter(name="Shop").exists()


def test_site_change_page_shows_origins_one_per_line_and_the_key_read_only(admin_client, personas):
    Site.objects.filter(pk=personas.acme.pk).update(
        allowed_origins=["https://acme.example", "https://www.acme.example"]
    )

    response = admin_client.get(change("chat_site", personas.acme.pk))

    html = response.content.decode()
    assert "https://acme.example\nhttps://www.acme.example</textarea>" in html
    assert personas.acme.key in html
    assert 'name="key"' not in html


# --- visitors -----------------------------------------------------------------------


def test_visitor_pages_never_show_the_token_hash(admin_client, personas):
    token_hash = personas.v1.token_hash

    pages = [
        admin_client.get(changelist("chat_visitor")),
        admin_client.get(change("chat_visitor", personas.v1.pk)),
    ]

    for page in pages:
        assert page.status_code == 200
        assert token_hash not in page.content.decode()
        assert "token hash" not in page.content.decode().lower()
        assert "token_hash" not in page.content.decode()


def test_visitors_are_found_by_name_email_or_id(admin_client, personas):
    Visitor.objects.filter(pk=personas.v2.pk).update(
        name="Grace Hopper", email="grace@navy.example"
    )

    by_name = admin_client.get(changelist("chat_visitor"), {"q": "hopper"})
    by_email = admin_client.get(changelist("chat_visitor"), {"q": "grace@navy"})
    by_id = admin_client.get(changelist("chat_visitor"), {"q": str(personas.v3.pk)})

    assert [v.pk for v in listed(by_name)] == [personas.v2.pk]
    assert [v.pk for v in listed(by_email)] == [personas.v2.pk]
    assert [v.pk for v in listed(by_id)] == [personas.v3.pk]


# --- conversations: search, filters, list cost -------------------------------------


def test_searching_message_text_finds_only_the_conversation_that_contains_it(
    admin_client, personas
):
    open_chat(personas.v1, "My invoice is wrong")
    parcel = open_chat(personas.v2, "Where is my parcel?", "It was due on Monday")

    response = admin_client.get(changelist("chat_conversation"), {"q": "parcel"})

    assert [c.pk for c in listed(response)] == [parcel.pk]


def test_a_conversation_with_several_matching_messages_is_listed_once(admin_client, personas):
    conversation = open_chat(personas.v1, "refund please", "still waiting for the refund")

    response = admin_client.get(changelist("chat_conversation"), {"q": "refund"})

    assert [c.pk for c in listed(response)] == [conversation.pk]


def test_searching_a_visitor_email_finds_their_conversations(admin_client, personas):
    Visitor.objects.filter(pk=personas.v3.pk).update(name="Ada", email="ada@engine.example")
    open_chat(personas.v1, "Hi")
    theirs = open_chat(personas.v3, "Hi")

    by_email = admin_client.get(changelist("chat_conversation"), {"q": "ada@engine"})
    by_name = admin_client.get(changelist("chat_conversation"), {"q": "Ada"})

    assert [c.pk for c in listed(by_email)] == [theirs.pk]
    assert [c.pk for c in listed(by_name)] == [theirs.pk]


def test_conversations_filter_by_status_and_by_agent(admin_client, personas):
    set_away(personas.bob)
    with_alice = [open_chat(personas.v1, "Hi"), open_chat(personas.v2, "Hi")]
    queued = open_chat(personas.v3, "Hi")
    assert queued.status == Conversation.Status.QUEUED

    by_status = admin_client.get(changelist("chat_conversation"), {"status__exact": "queued"})
    by_agent = admin_client.get(
        changelist("chat_conversation"), {"agent__id__exact": personas.alice.pk}
    )

    assert [c.pk for c in listed(by_status)] == [queued.pk]
    assert {c.pk for c in listed(by_agent)} == {c.pk for c in with_alice}


def test_conversation_changelist_queries_do_not_grow_with_the_rows(admin_client, personas):
    open_chat(personas.v1, "Hi")
    admin_client.get(changelist("chat_conversation"))  # warm the session and caches
    with CaptureQueriesContext(connection) as one_row:
        admin_client.get(changelist("chat_conversation"))
    for _ in range(4):
        visitor, _token = make_visitor(personas.acme)
        open_chat(visitor, "Hi")

    with CaptureQueriesContext(connection) as five_rows:
        response = admin_client.get(changelist("chat_conversation"))

    assert len(listed(response)) == 5
    assert len(five_rows) == len(one_row)


# --- the transcript -----------------------------------------------------------------


def test_transcript_shows_every_message_in_seq_order(admin_client, personas):
    conversation = open_chat(personas.v1, "placeholder")
    Message.objects.filter(conversation=conversation).delete()
    # Stored out of order, so only ordering by seq puts them right.
    for seq, sender, body in [
        (3, SenderKind.VISITOR, "Third: thanks!"),
        (1, SenderKind.VISITOR, "First: my order is late"),
        (2, SenderKind.AGENT, "Second: let me check"),
    ]:
        Message.objects.create(
            conversation=conversation,
            seq=seq,
            sender=sender,
            sender_agent=personas.alice if sender == SenderKind.AGENT else None,
            body=body,
        )

    html = admin_client.get(change("chat_conversation", conversation.pk)).content.decode()

    positions = [html.index(text) for text in ("First:", "Second:", "Third:")]
    assert positions == sorted(positions)
    assert personas.alice.display_name in html


def test_transcript_and_conversation_are_read_only(admin_client, personas):
    conversation = open_chat(personas.v1, "Please do not edit me")

    response = admin_client.get(change("chat_conversation", conversation.pk))

    (transcript,) = response.context["inline_admin_formsets"]
    assert not transcript.has_add_permission
    assert not transcript.has_change_permission
    assert not transcript.has_delete_permission
    html = response.content.decode()
    assert "Please do not edit me" in html
    assert 'name="messages-0-body"' not in html
    assert 'name="messages-0-DELETE"' not in html
    assert 'name="messages-MAX_NUM_FORMS" value="0"' in html
    assert 'name="status"' not in html
    assert 'name="_save"' not in html


def test_posting_to_a_conversation_page_changes_nothing(admin_client, personas):
    conversation = open_chat(personas.v1, "original")

    response = admin_client.post(
        change("chat_conversation", conversation.pk),
        {"status": "closed", "messages-0-body": "forged"},
    )

    assert response.status_code == 403
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE
    assert list(conversation.messages.values_list("body", flat=True)) == ["original"]


def test_conversations_cannot_be_deleted_from_the_admin(admin_client, personas):
    conversation = open_chat(personas.v1, "Hi")

    response = admin_client.get(reverse("admin:chat_conversation_delete", args=[conversation.pk]))

    assert response.status_code == 403
    assert Conversation.objects.filter(pk=conversation.pk).exists()


# --- changes go through services ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_close_action_closes_through_the_service_and_the_next_visitor_gets_the_slot(
    admin_client, personas, capture_broadcasts
):
    set_away(personas.bob)
    first = open_chat(personas.v1, "Hi")
    open_chat(personas.v2, "Hi")
    waiting = open_chat(personas.v3, "Hi")
    assert waiting.status == Conversation.Status.QUEUED
    capture_broadcasts.clear()

    response = admin_client.post(
        changelist("chat_conversation"),
        {"action": "close_conversations", "_selected_action": [first.pk]},
        follow=True,
    )

    assert "Closed 1 conversation." in response.content.decode()
    first.refresh_from_db()
    waiting.refresh_from_db()
    assert (first.status, first.closed_by) == (Conversation.Status.CLOSED, SenderKind.SYSTEM)
    closed = {"type": "conversation.closed", "conversation": first.pk, "by": "system"}
    assert capture_broadcasts.frames(groups.visitor_group(personas.v1.pk)) == [closed]
    assert closed in capture_broadcasts.frames(groups.agent_group(personas.alice.pk))
    assert waiting.status == Conversation.Status.ACTIVE
    assert waiting.agent_id == personas.alice.pk
    assigned = capture_broadcasts.frames(
        groups.visitor_group(personas.v3.pk), "conversation.assigned"
    )
    assert [f["conversation"]["id"] for f in assigned] == [waiting.pk]


@pytest.mark.django_db(transaction=True)
def test_close_action_skips_conversations_already_closed(admin_client, personas):
    conversation = open_chat(personas.v1, "Hi")
    closing.close_conversation(Actor.visitor(personas.v1.pk))

    response = admin_client.post(
        changelist("chat_conversation"),
        {"action": "close_conversations", "_selected_action": [conversation.pk]},
        follow=True,
    )

    html = response.content.decode()
    assert "Closed 0 conversations." in html
    assert "1 conversation was already closed." in html
    conversation.refresh_from_db()
    assert conversation.closed_by == SenderKind.VISITOR


# --- agents -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_raising_capacity_in_the_admin_hands_the_waiting_visitor_to_that_agent(
    admin_client, personas
):
    set_away(personas.alice)
    open_chat(personas.v1, "Hi")
    waiting = open_chat(personas.v2, "Hi")
    assert waiting.status == Conversation.Status.QUEUED

    response = admin_client.post(
        change("agents_agentprofile", personas.bob.pk),
        {"display_name": "Bob", "capacity": "2", "sites": []},
    )

    assert response.status_code == 302
    waiting.refresh_from_db()
    assert waiting.status == Conversation.Status.ACTIVE
    assert waiting.agent_id == personas.bob.pk


def test_agent_presence_is_shown_but_not_editable(admin_client, personas):
    html = admin_client.get(change("agents_agentprofile", personas.alice.pk)).content.decode()

    assert 'name="capacity"' in html
    assert 'name="sites"' in html
    assert 'name="status"' not in html
    assert 'name="last_heartbeat' not in html


def test_agent_list_filters_by_status_and_shows_active_chats(admin_client, personas):
    set_away(personas.bob)
    open_chat(personas.v1, "Hi")
    open_chat(personas.v2, "Hi")

    available = admin_client.get(changelist("agents_agentprofile"), {"status__exact": "available"})

    assert [(a.pk, a._active_chats) for a in listed(available)] == [(personas.alice.pk, 2)]


def test_an_agent_with_active_chats_cannot_be_deleted_but_an_idle_one_can(admin_client, personas):
    open_chat(personas.v1, "Hi")

    busy = admin_client.get(reverse("admin:agents_agentprofile_delete", args=[personas.alice.pk]))
    idle = admin_client.get(reverse("admin:agents_agentprofile_delete", args=[personas.bob.pk]))

    assert busy.status_code == 403
    assert idle.status_code == 200
