"""The REST API (/api/v1/, integrations/api.py) as another system uses it: a site's API
key, its conversations, messages, visitors, agents and the site, and what a wrong key,
another site's object or bad input get back."""

import io
import itertools

import pytest
from django.core.management import call_command

from chat.conversations import sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Message, Site
from chat.realtime import groups
from integrations import keys
from integrations.models import ApiKey
from tests.conftest import make_visitor

pytestmark = pytest.mark.django_db(transaction=True)
_ids = itertools.count(1)


def open_chat(visitor, body="Where is my parcel?") -> Conversation:
    posted = sending.post_message(
        Actor.visitor(visitor.pk), client_msg_id=f"v-{next(_ids)}", body=body
    )
    return Conversation.objects.get(pk=posted.message["conversation"])


class Api:
    """The test client with one key's `Authorization` header."""

    def __init__(self, client, key: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def get(self, path, **params):
        return self.client.get(f"/api/v1{path}", params, headers=self.headers)

    def post(self, path, body=None):
        return self.client.post(
            f"/api/v1{path}", body or {}, content_type="application/json", headers=self.headers
        )

    def patch(self, path, body):
        return self.client.patch(
            f"/api/v1{path}", body, content_type="application/json", headers=self.headers
        )


@pytest.fixture
def api(client, personas) -> Api:
    _row, key = keys.create_api_key(site=personas.acme, name="CRM")
    return Api(client, key)


@pytest.fixture
def other_site(db) -> Site:
    return Site.objects.create(name="globex", allowed_origins=["https://globex.example"])


# --- keys ---------------------------------------------------------------------------


def test_create_api_key_prints_the_key_last_and_stores_only_its_hash(client, personas):
    out = io.StringIO()
    call_command("create_api_key", "--site", personas.acme.key, "--name", "CRM", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]

    row = ApiKey.objects.get()
    assert row.name == "CRM" and row.site == personas.acme
    assert key not in {row.key_hash, row.prefix} and row.prefix == key[:12]
    response = Api(client, key).get("/site")
    assert response.status_code == 200
    assert response.json()["key"] == personas.acme.key
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_a_missing_a_wrong_or_a_revoked_key_gets_401_json(client, api, personas):
    assert client.get("/api/v1/site").status_code == 401
    assert Api(client, "sdk_nonsense").get("/site").json()["error"] == "unauthorized"
    row = ApiKey.objects.get()
    assert api.get("/site").status_code == 200

    keys.revoke(row)

    response = api.get("/site")
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "detail": "A valid API key is needed (Bearer).",
    }


def test_a_key_sees_only_its_own_sites_objects(client, api, personas, other_site):
    theirs = open_chat(make_visitor(other_site)[0])
    _row, their_key = keys.create_api_key(site=other_site)
    mine = open_chat(personas.v1)

    for path in (
        f"/conversations/{theirs.pk}",
        f"/conversations/{theirs.pk}/messages",
        f"/visitors/{theirs.visitor_id}",
    ):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert api.post(f"/conversations/{theirs.pk}/close").status_code == 404
    listed = [c["id"] for c in api.get("/conversations").json()["conversations"]]
    assert listed == [mine.pk]
    assert Api(client, their_key).get(f"/conversations/{theirs.pk}").status_code == 200
    assert Conversation.objects.get(pk=theirs.pk).status != Conversation.Status.CLOSED


def test_a_busy_key_is_slowed_with_429_and_retry_after(api, settings):
    settings.SUPPORTDESK_LIMIT_API_KEY = "3 per minute"

    answers = [api.get("/site").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    response = api.get("/site")
    assert response.json()["error"] == "rate_limited"
    assert int(response["Retry-After"]) > 0


# --- conversations ----------------------------------------------------------------


def test_conversations_page_by_cursor_oldest_first_until_next_is_null(api, personas):
    chats = [open_chat(make_visitor(personas.acme)[0]) for _ in range(5)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = api.get("/conversations", **params).json()
        seen += [c["id"] for c in body["conversations"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break

    assert seen == [c.pk for c in chats]
    assert pages == 3
    refused = api.get("/conversations", cursor="abc")
    assert refused.status_code == 400 and "cursor" in refused.json()["detail"]
    assert api.get("/conversations", updated_after="1700000000").status_code == 400


def test_conversations_filter_by_status_and_by_last_change(api, personas):
    active = open_chat(personas.v1)  # alice takes it
    open_chat(personas.v2)  # alice's second
    open_chat(personas.v3)  # bob's
    queued = open_chat(make_visitor(personas.acme)[0])  # everyone is full
    later = Conversation.objects.get(pk=queued.pk).last_activity_at

    def ids(**params):
        return [c["id"] for c in api.get("/conversations", **params).json()["conversations"]]

    assert ids(status="queued") == [queued.pk]
    assert active.pk in ids(status="active")
    assert ids(updated_after=later.isoformat()) == []
    assert queued.pk in ids(updated_after=active.created_at.isoformat())


def test_one_conversation_names_its_visitor_agent_and_state(api, personas):
    chat = open_chat(personas.v1)

    body = api.get(f"/conversations/{chat.pk}").json()

    assert body["status"] == "active"
    assert body["agent"] == {"id": personas.alice.pk, "display_name": "Alice"}
    assert body["visitor"]["id"] == personas.v1.pk
    assert body["last_seq"] == 1
    assert body["closed_at"] is None


def test_closing_tells_both_sides_and_a_second_close_is_409(api, personas, capture_broadcasts):
    chat = open_chat(personas.v1)

    response = api.post(f"/conversations/{chat.pk}/close")

    assert response.status_code == 200
    assert response.json()["status"] == "closed" and response.json()["closed_by"] == "system"
    closed = capture_broadcasts.frames(groups.visitor_group(personas.v1.pk), "conversation.closed")
    assert closed and closed[-1]["by"] == "system"
    again = api.post(f"/conversations/{chat.pk}/close")
    assert again.status_code == 409 and again.json()["error"] == "conversation_closed"


def test_transfer_to_an_agent_with_room_or_back_to_the_queue(api, personas):
    chat = open_chat(personas.v1)  # alice's

    to_bob = api.post(f"/conversations/{chat.pk}/transfer", {"agent_id": personas.bob.pk})
    assert to_bob.status_code == 200
    assert to_bob.json()["agent"]["id"] == personas.bob.pk

    bob_full = open_chat(personas.v2)  # alice's again
    refused = api.post(f"/conversations/{bob_full.pk}/transfer", {"agent_id": personas.bob.pk})
    assert refused.status_code == 409 and refused.json()["error"] == "agent_unavailable"

    queued = api.post(f"/conversations/{chat.pk}/transfer", {"agent_id": None})
    assert queued.status_code == 200
    # Back in the queue, then routed at once to the agent with room (alice).
    state = Conversation.objects.get(pk=chat.pk)
    assert state.agent_id != personas.bob.pk


# --- messages ---------------------------------------------------------------------


def test_messages_after_a_seq_come_in_seq_order_with_their_authors(api, personas):
    chat = open_chat(personas.v1, "one")
    sending.post_message(
        Actor.agent(personas.alice.pk), conversation_id=chat.pk, client_msg_id="a-1", body="two"
    )
    sending.post_message(Actor.visitor(personas.v1.pk), client_msg_id="v-x", body="three")

    every = api.get(f"/conversations/{chat.pk}/messages").json()
    after_one = api.get(f"/conversations/{chat.pk}/messages", after_seq=1).json()

    assert [m["body"] for m in every["messages"]] == ["one", "two", "three"]
    assert every["last_seq"] == 3
    assert [m["seq"] for m in after_one["messages"]] == [2, 3]
    assert after_one["messages"][0]["agent"] == {"id": personas.alice.pk, "display_name": "Alice"}


def test_a_posted_message_is_stored_once_and_delivered_live_like_the_dashboards(
    api, personas, capture_broadcasts
):
    chat = open_chat(personas.v1)

    first = api.post(
        f"/conversations/{chat.pk}/messages", {"body": "On its way!", "client_msg_id": "crm-1"}
    )
    retry = api.post(
        f"/conversations/{chat.pk}/messages", {"body": "On its way!", "client_msg_id": "crm-1"}
    )

    assert first.status_code == 201 and retry.status_code == 200
    assert first.json() == retry.json()
    assert first.json()["sender"] == "agent" and first.json()["seq"] == 2
    assert first.json()["agent"]["id"] == personas.alice.pk
    assert Message.objects.filter(conversation=chat, body="On its way!").count() == 1
    live = capture_broadcasts.frames(groups.visitor_group(personas.v1.pk), "message")
    assert [f["body"] for f in live][-1:] == ["On its way!"]
    # The agent's other tabs (the dashboard) see it too.
    mine = capture_broadcasts.frames(groups.agent_group(personas.alice.pk), "message")
    assert [f["body"] for f in mine][-1:] == ["On its way!"]


def test_posting_as_an_agent_who_does_not_have_the_chat_or_to_a_queued_one_is_409(api, personas):
    chat = open_chat(personas.v1)  # alice's
    for visitor in (personas.v2, personas.v3):
        open_chat(visitor)  # alice and bob full
    queued = open_chat(make_visitor(personas.acme)[0])

    as_bob = api.post(
        f"/conversations/{chat.pk}/messages",
        {"body": "hi", "client_msg_id": "b-1", "agent_id": personas.bob.pk},
    )
    to_queued = api.post(
        f"/conversations/{queued.pk}/messages", {"body": "hi", "client_msg_id": "q-1"}
    )

    assert as_bob.status_code == 409 and as_bob.json()["error"] == "not_assigned"
    assert to_queued.status_code == 409 and to_queued.json()["error"] == "not_assigned"
    assert Message.objects.filter(body="hi").count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"client_msg_id": "x"},
        {"body": "", "client_msg_id": "x"},
        {"body": "   ", "client_msg_id": "x"},
        {"body": "x" * (Message.MAX_BODY_CHARS + 1), "client_msg_id": "x"},
        {"body": "hi", "client_msg_id": ""},
        {"body": "hi", "client_msg_id": "x" * 65},
        {"body": 5, "client_msg_id": "x"},
        {"body": "a\u0000b", "client_msg_id": "x"},
        {"body": "a\ud800b", "client_msg_id": "x"},
        {"body": "hi", "client_msg_id": "x\u0000"},
        {"body": "hi", "client_msg_id": "x", "agent_id": 2**63},
        ["hi", "x"],
    ],
)
def test_a_bad_message_gets_400_json_and_stores_nothing(api, personas, body):
    chat = open_chat(personas.v1)

    response = api.post(f"/conversations/{chat.pk}/messages", body)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request" and response.json()["detail"]
    assert Message.objects.filter(conversation=chat).count() == 1


def test_an_id_past_64_bits_is_refused_with_400_not_a_server_error(api, personas):
    chat = open_chat(personas.v1)

    for path in (f"/conversations/{2**63}", f"/conversations/{chat.pk}/messages?after_seq={2**63}"):
        assert api.get(path).status_code == 400, path
    assert api.post(f"/conversations/{chat.pk}/transfer", {"agent_id": 2**70}).status_code == 400


def test_a_body_that_is_not_json_gets_400(api, personas):
    chat = open_chat(personas.v1)

    response = api.client.post(
        f"/api/v1/conversations/{chat.pk}/messages",
        "{not json",
        content_type="application/json",
        headers=api.headers,
    )

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


# --- visitors, agents, the site ---------------------------------------------------


def test_a_crm_sets_name_email_and_attributes_and_the_agent_sees_them(
    api, personas, capture_broadcasts
):
    open_chat(personas.v1)

    response = api.patch(
        f"/visitors/{personas.v1.pk}",
        {"name": "Ada", "email": "ada@example.com", "attributes": {"plan": "pro", "seats": 5}},
    )
    api.patch(
        f"/visitors/{personas.v1.pk}",
        {"attributes": {"seats": None, "vip": True, "zip": "007", "ratio": 0.5}},
    )

    assert response.status_code == 200
    body = api.get(f"/visitors/{personas.v1.pk}").json()
    assert body["name"] == "Ada" and body["email"] == "ada@example.com"
    assert body["attributes"] == {"plan": "pro", "vip": True, "zip": "007", "ratio": 0.5}
    told = capture_broadcasts.frames(groups.agent_group(personas.alice.pk), "visitor.context")
    assert told, "the agent of the visitor's chat hears of the change"


def test_bad_visitor_changes_get_400_and_change_nothing(api, personas):
    for changes in (
        {"attributes": {"nested": {"a": 1}}},
        {"attributes": {"k" * 65: 1}},
        {"attributes": {f"k{n}": n for n in range(51)}},
        {"attributes": {"code": "0" * 501}},
        {"name": "x" * 201},
    ):
        response = api.patch(f"/visitors/{personas.v1.pk}", changes)
        assert response.status_code == 400, changes

    assert api.get(f"/visitors/{personas.v1.pk}").json()["attributes"] == {}


def test_agents_with_presence_and_load(api, personas):
    open_chat(personas.v1)

    agents = {a["display_name"]: a for a in api.get("/agents").json()}

    assert agents["Alice"] | {"id": 0} == {
        "id": 0,
        "display_name": "Alice",
        "status": "available",
        "online": True,
        "load": 1,
        "capacity": 2,
    }
    assert agents["Bob"]["load"] == 0


# --- the documents ------------------------------------------------------------------


def test_openapi_document_is_public_and_names_every_endpoint(client):
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/api/v1/conversations",
        "/api/v1/conversations/{conversation_id}",
        "/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/conversations/{conversation_id}/close",
        "/api/v1/conversations/{conversation_id}/transfer",
        "/api/v1/visitors/{visitor_id}",
        "/api/v1/agents",
        "/api/v1/site",
        "/api/v1/visitor-sessions",
    }


def test_the_human_page_lists_the_endpoints_without_a_cdn(client):
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/v1/conversations/{conversation_id}/messages" in page
    assert "/api/v1/visitor-sessions" in page
    assert "Bearer" in page
    assert "cdn" not in page.lower()
