"""Visitor context for the agent: the page the visitor is on, where they came from, their
browser and time zone, and their earlier chats. What the widget reports is checked and
capped (a visitor can claim anything), written only when it changed, and heard live by
the agent of the visitor's chat; earlier chats are readable only by an agent who serves
the site and served the visitor."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import AgentProfile
from chat import errors, selectors, visitor_context, visitor_history
from chat.conversations import closing, sending, sessions
from chat.conversations.actors import Actor
from chat.models import Conversation, Site, Visitor
from chat.realtime import groups, resume
from supportdesk.asgi import application
from tests import ws
from tests.conftest import make_agent, make_visitor

pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://acme.example"
CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


def report(visitor, **kwargs) -> list[str]:
    return sessions.report_visitor_context(visitor_id=visitor.id, allowed_origins=[SHOP], **kwargs)


def stored(visitor) -> dict:
    return Visitor.objects.filter(pk=visitor.pk).values(
        "page_url", "page_title", "referrer", "user_agent", "timezone"
    )[0]


def chat(visitor, body: str = "Hello", *, close: bool = False) -> int:
    posted = sending.post_message(
        Actor.visitor(visitor.id), client_msg_id=f"c-{body[:20]}", body=body
    )
    if close:
        closing.close_conversation(Actor.visitor(visitor.id))
    return posted.message["conversation"]


# --- what is stored ----------------------------------------------------------------


def test_a_page_on_the_site_is_stored_with_its_title_the_way_in_and_the_time_zone(personas):
    changed = report(
        personas.v1,
        page={
            "url": "https://acme.example/kettles?colour=red",
            "title": "Kettles - Acme",
            "referrer": "https://www.search.example/?q=kettle",
        },
        timezone_name="Europe/Oslo",
        user_agent=CHROME_ON_WINDOWS,
    )

    assert sorted(changed) == ["page_title", "page_url", "referrer", "timezone", "user_agent"]
    assert stored(personas.v1) == {
        "page_url": "https://acme.example/kettles?colour=red",
        "page_title": "Kettles - Acme",
        "referrer": "https://www.search.example/?q=kettle",
        "user_agent": CHROME_ON_WINDOWS,
        "timezone": "Europe/Oslo",
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/phish",  # another origin: the visitor is not on the site
        "javascript:alert(1)//acme.example",
        "data:text/html,<script>alert(1)</script>",
        "https://user:pass@acme.example/",  # credentials in the URL
        "https://acme.example:99999/",  # not a port
        "//acme.example/kettles",  # no scheme
        "https://acme.example/" + "a" * 2000,  # longer than the column
        "https://acme.example/two words",
    ],
)
def test_a_page_url_that_is_not_an_http_url_of_the_site_is_dropped_with_its_title(personas, url):
    changed = report(personas.v1, page={"url": url, "title": "Trust me"})

    assert changed == []
    assert stored(personas.v1)["page_url"] == ""
    assert stored(personas.v1)["page_title"] == ""


def test_the_default_port_and_the_hosts_case_do_not_hide_the_sites_origin(personas):
    report(personas.v1, page={"url": "https://ACME.example:443/cart", "title": ""})
    assert stored(personas.v1)["page_url"] == "https://ACME.example:443/cart"


def test_a_title_is_one_line_of_text_capped_at_300_characters(personas):
    report(
        personas.v1,
        page={"url": f"{SHOP}/", "title": "Sale\n\u202eevil\u0000 " + "x" * 400},
    )
    title = stored(personas.v1)["page_title"]
    assert title.startswith("Sale evil x")
    assert len(title) == 300
    assert not any(c in title for c in "\n\u202e\u0000")


def test_a_referrer_on_the_site_itself_keeps_the_way_in(personas):
    report(personas.v1, page={"url": f"{SHOP}/", "referrer": "https://news.example/story"})
    report(personas.v1, page={"url": f"{SHOP}/cart", "referrer": f"{SHOP}/"})
    report(personas.v1, page={"url": f"{SHOP}/pay", "referrer": ""})

    assert stored(personas.v1)["referrer"] == "https://news.example/story"
    assert stored(personas.v1)["page_url"] == f"{SHOP}/pay"


@pytest.mark.parametrize(
    ("zone", "kept"),
    [
        ("America/Argentina/Buenos_Aires", True),
        ("UTC", True),
        ("Mars/Olympus_Mons", False),
        ("../../../etc/passwd", False),
        ("Europe/Oslo\n", False),
        (42, False),
    ],
)
def test_a_time_zone_must_be_an_iana_name_the_server_knows(personas, zone, kept):
    report(personas.v1, timezone_name=zone)
    assert stored(personas.v1)["timezone"] == (zone if kept else "")


def test_the_user_agent_is_capped_and_named_as_browser_and_os(personas):
    report(personas.v1, user_agent=CHROME_ON_WINDOWS + " x" * 400)
    assert len(stored(personas.v1)["user_agent"]) == 500
    software = visitor_context.describe_user_agent(CHROME_ON_WINDOWS)
    assert (software.browser, software.os) == ("Chrome 126", "Windows 10")
    assert visitor_context.describe_user_agent("") == visitor_context.Software(None, None)


def test_an_unchanged_report_costs_no_query_and_a_change_writes_only_its_field(
    personas, django_assert_num_queries
):
    page = {"url": f"{SHOP}/kettles", "title": "Kettles"}
    report(personas.v1, page=page, timezone_name="Europe/Oslo")
    known = Visitor.objects.get(pk=personas.v1.pk)

    with django_assert_num_queries(0):
        assert report(personas.v1, page=page, timezone_name="Europe/Oslo", known=known) == []

    with CaptureQueriesContext(connection) as queries:
        changed = report(
            personas.v1,
            page={**page, "title": "Kettles (2 in cart)"},
            timezone_name="Europe/Oslo",
            known=known,
        )
    assert changed == ["page_title"]
    [update] = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert '"page_title"' in update
    assert '"page_url"' not in update and '"timezone"' not in update


def test_the_agent_of_the_visitors_chat_hears_a_change_and_nobody_hears_a_repeat(
    personas, capture_broadcasts
):
    conversation = chat(personas.v1)  # assigned to alice (least loaded, idle longest)
    assert Conversation.objects.get(pk=conversation).agent_id == personas.alice.id
    capture_broadcasts.clear()

    report(personas.v1, page={"url": f"{SHOP}/cart", "title": "Your cart"})
    report(personas.v1, page={"url": f"{SHOP}/cart", "title": "Your cart"})

    [frame] = capture_broadcasts.frames(groups.agent_group(personas.alice.id), "visitor.context")
    assert frame["conversation"] == conversation
    assert frame["visitor"] == {"id": personas.v1.id}
    assert frame["visitor_context"]["page_url"] == f"{SHOP}/cart"
    assert frame["visitor_context"]["page_title"] == "Your cart"
    assert capture_broadcasts.frames(groups.visitor_group(personas.v1.id), "visitor.context") == []


def test_a_visitor_without_an_active_chat_is_stored_silently(personas, capture_broadcasts):
    report(personas.v1, page={"url": f"{SHOP}/", "title": "Home"})
    assert stored(personas.v1)["page_title"] == "Home"
    assert [e for _g, e in capture_broadcasts if e.get("frame", {}).get("type")] == []


# --- what the agent gets -------------------------------------------------------------


def test_the_agents_ready_carries_each_visitors_context_at_no_extra_query_per_chat(
    personas, django_assert_max_num_queries
):
    AgentProfile.objects.filter(pk=personas.bob.pk).update(status=AgentProfile.Status.AWAY)
    report(personas.v1, page={"url": f"{SHOP}/a", "title": "A"}, user_agent=CHROME_ON_WINDOWS)
    chat(personas.v1)
    with CaptureQueriesContext(connection) as one_chat:
        resume.agent_ready(personas.alice.id)[0]
    chat(personas.v2)

    with django_assert_max_num_queries(len(one_chat)):
        ready = resume.agent_ready(personas.alice.id)[0]

    first, second = ready["conversations"]
    assert first["visitor"] == {"id": personas.v1.id}
    assert first["visitor_context"]["page_title"] == "A"
    assert first["visitor_context"]["browser"] == "Chrome 126"
    assert first["visitor_context"]["os"] == "Windows 10"
    assert second["visitor_context"]["page_url"] is None


def test_earlier_chats_are_counted_and_the_latest_five_listed_with_their_first_words(personas):
    for n in range(6):
        chat(personas.v1, f"Question number {n}  about\nkettles " + "x" * 200, close=True)
    current = chat(personas.v1, "And now?")
    chat(personas.v2, "Someone else's chat", close=True)

    profile = visitor_history.visitor_profile(personas.alice.id, current)

    assert profile["visitor"] == {"id": personas.v1.id}
    previous = profile["previous"]
    assert previous["count"] == 6
    assert [c["first_message"][:17] for c in previous["conversations"]] == [
        f"Question number {n}" for n in (5, 4, 3, 2, 1)
    ]
    first = previous["conversations"][0]
    assert first["status"] == "closed" and first["closed_at"] is not None
    assert first["first_message"].startswith("Question number 5 about kettles xx")
    assert len(first["first_message"]) == selectors.SNIPPET_CHARS
    assert first["first_message"].endswith("…")


def test_a_first_chat_has_no_earlier_ones(personas):
    current = chat(personas.v1)
    assert visitor_history.visitor_profile(personas.alice.id, current)["previous"] == {
        "count": 0,
        "conversations": [],
    }


def test_an_agent_reads_an_earlier_chat_of_a_visitor_they_serve_without_its_notes(personas):
    earlier = chat(personas.v1, "My kettle leaks", close=False)
    sending.post_note(
        agent_id=personas.alice.id, conversation_id=earlier, client_msg_id="n1", body="VIP"
    )
    closing.close_conversation(Actor.visitor(personas.v1.id))
    chat(personas.v1, "Back again")

    history = visitor_history.conversation_history(personas.alice.id, earlier)

    assert history["conversation"] == earlier
    assert [m["body"] for m in history["messages"]] == ["My kettle leaks"]
    assert "notes" not in history and "VIP" not in repr(history)


def test_an_agent_of_another_site_cannot_read_the_visitors_earlier_chats(personas):
    earlier = chat(personas.v1, "My kettle leaks", close=True)  # served by alice
    globex = Site.objects.create(name="globex", allowed_origins=["https://globex.example"])
    personas.alice.sites.set([globex])  # alice now serves only globex

    with pytest.raises(errors.NotFound):
        visitor_history.conversation_history(personas.alice.id, earlier)


def test_an_agent_who_never_served_the_visitor_cannot_read_its_chats(personas):
    earlier = chat(personas.v1, "My kettle leaks", close=True)  # served by alice
    assert Conversation.objects.get(pk=earlier).agent_id == personas.alice.id

    with pytest.raises(errors.NotFound):
        visitor_history.conversation_history(personas.bob.id, earlier)
    with pytest.raises(errors.NotFound):
        visitor_history.visitor_profile(personas.bob.id, earlier)
    with pytest.raises(errors.NotFound):
        visitor_history.conversation_history(personas.alice.id, earlier + 1000)


# --- sockets -----------------------------------------------------------------------


async def visitor_with_browser(sockets, personas, visitor, **hello_fields):
    """A visitor socket whose handshake carries a browser's User-Agent, past `hello`."""
    headers = [
        (b"host", ws.APP_HOST.encode()),
        (b"origin", ws.ACME_ORIGIN.encode()),
        (b"user-agent", CHROME_ON_WINDOWS.encode()),
    ]
    socket = sockets.track(ws.WebsocketCommunicator(application, "/ws/visitor/", headers=headers))
    connected, _ = await socket.connect(timeout=ws.TIMEOUT)
    assert connected
    frame = ws.hello(personas.acme.key, personas.token(visitor))
    await socket.send_json_to({**frame, **hello_fields})
    return socket, await ws.receive_until(socket, "ready")


async def test_the_agent_gets_the_page_from_hello_and_each_page_view_live(personas, sockets):
    visitor, _ready = await visitor_with_browser(
        sockets,
        personas,
        personas.v1,
        page={"url": f"{SHOP}/kettles", "title": "Kettles", "referrer": "https://ads.example/"},
        timezone="Asia/Tokyo",
    )
    alice, _ = await sockets.agent(personas.alice)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "Hi"})

    assigned = await ws.receive_until(alice, "conversation.assigned")
    context = assigned["conversation"]["visitor_context"]
    assert context["page_url"] == f"{SHOP}/kettles"
    assert context["page_title"] == "Kettles"
    assert context["referrer"] == "https://ads.example/"
    assert context["timezone"] == "Asia/Tokyo"
    assert (context["browser"], context["os"]) == ("Chrome 126", "Windows 10")

    await visitor.send_json_to(
        {"type": "page.view", "page": {"url": f"{SHOP}/cart", "title": "Cart", "referrer": ""}}
    )
    live = await ws.receive_until(alice, "visitor.context")
    assert live["conversation"] == assigned["conversation"]["id"]
    assert live["visitor_context"]["page_title"] == "Cart"
    assert live["visitor_context"]["referrer"] == "https://ads.example/"  # the way in stays


async def test_a_lying_page_is_dropped_quietly_and_a_malformed_one_is_refused(personas, sockets):
    visitor, ready = await visitor_with_browser(
        sockets, personas, personas.v1, page={"url": "javascript:alert(1)"}, timezone=["x"]
    )
    assert ready["type"] == "ready"  # a bad context never costs the hello
    alice, _ = await sockets.agent(personas.alice)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "Hi"})
    await ws.receive_until(alice, "conversation.assigned")

    await visitor.send_json_to({"type": "page.view", "page": {"url": "https://evil.example/"}})
    assert not [f for f in await ws.frames_before_pong(visitor) if f["type"] == "error"]
    await visitor.send_json_to({"type": "page.view", "page": "https://acme.example/"})
    assert (await ws.receive_until(visitor, "error"))["code"] == "bad_frame"
    await visitor.send_json_to({"type": "page.view", "page": {"url": 7}})
    assert (await ws.receive_until(visitor, "error"))["code"] == "bad_frame"

    assert not [f for f in await ws.frames_before_pong(alice) if f["type"] == "visitor.context"]
    row = await ws.db(stored, personas.v1)
    assert (row["page_url"], row["timezone"]) == ("", "")
    assert row["user_agent"] == CHROME_ON_WINDOWS


async def test_an_agent_reads_the_visitors_earlier_chats_and_others_get_not_found(
    personas, sockets
):
    await ws.db(
        AgentProfile.objects.filter(pk=personas.bob.pk).update, status=AgentProfile.Status.AWAY
    )
    earlier = await ws.db(chat, personas.v1, "Where is order 1041?", close=True)
    current = await ws.db(chat, personas.v1, "Order 1042 now")
    alice, _ = await sockets.agent(personas.alice)

    await alice.send_json_to({"type": "visitor.profile", "conversation": current})
    profile = await ws.receive_until(alice, "visitor.profile")
    assert profile["previous"]["count"] == 1
    assert profile["previous"]["conversations"][0]["id"] == earlier
    await alice.send_json_to({"type": "conversation.history", "conversation": earlier})
    history = await ws.receive_until(alice, "conversation.history")
    assert [m["body"] for m in history["messages"]] == ["Where is order 1041?"]

    # Carol serves only another site: acme's visitor and its chats are not hers.
    globex = await ws.db(Site.objects.create, name="globex", allowed_origins=[])
    carol = await ws.db(make_agent, "carol", 2)
    await ws.db(carol.sites.set, [globex])
    carol_socket, _ = await sockets.agent(carol)
    for frame_type, conversation_id in [
        ("visitor.profile", current),
        ("conversation.history", earlier),
        ("conversation.history", current),
    ]:
        await carol_socket.send_json_to({"type": frame_type, "conversation": conversation_id})
        error = await ws.receive_until(carol_socket, "error")
        assert error["code"] == "not_found", frame_type
    # Alice asking for a chat of a visitor she never served gets the same answer.
    stranger, _token = await ws.db(make_visitor, personas.acme)
    theirs = await ws.db(chat, stranger, "Private", close=True)
    await ws.db(Conversation.objects.filter(pk=theirs).update, agent=None)
    await alice.send_json_to({"type": "conversation.history", "conversation": theirs})
    assert (await ws.receive_until(alice, "error"))["code"] == "not_found"
