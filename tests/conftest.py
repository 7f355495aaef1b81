"""Shared fixtures: the personas (site acme, agents alice cap 2 and bob cap 1, visitors
v1..v3) and a capture of what the services broadcast."""

import gc
from dataclasses import dataclass

import pytest
from asgiref.sync import SyncToAsync
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connections
from django.utils import timezone, translation

from agents.models import AgentProfile
from chat import ratelimits
from chat.conversations import queue, sessions, visitor_sockets
from chat.models import Site, Visitor
from chat.realtime import groups, outbox
from chat.store import loop as loop_db
from chat.transport import broadcasting, orm
from kb import bot
from kb.assist import handler as assist_handler
from tests import ws


@pytest.fixture(scope="session", autouse=True)
def _orm_threads_closed_before_teardown(django_db_setup):
    """Socket tests run their queries on other threads (the consumers' ORM threads,
    database_sync_to_async's), each with a connection of its own: close those before
    the test database is dropped, which PostgreSQL refuses while anyone is connected."""
    yield
    # database_sync_to_async's own thread (tests/ws.py), and the consumers' pool.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
    orm.forget_threads()
    bot.stop_threads()  # the knowledge-base bot's answer threads
    assist_handler.stop_thread()  # agent assist's thread
    gc.collect()  # a finished thread's connection closes when collected


@pytest.fixture(autouse=True)
def _loop_connections_closed():
    """A test's event loop ends with it: close the connections its sends opened on it
    (PostgreSQL, chat/store/loop.py)."""
    yield
    loop_db.close_all()


@pytest.fixture(autouse=True)
def _language_reset():
    """Django's LocaleMiddleware activates a request's language on the thread that served
    it and leaves it there (the next request activates its own): a test client's Arabic
    request must not speak for the next test's code on this thread."""
    yield
    translation.deactivate()


@pytest.fixture
async def sockets():
    """WebSocket communicators for one test, closed at its end (tests/ws.py)."""
    pool = ws.Sockets()
    yield pool
    await pool.close_all()
    # Queue readings the sockets asked for run on this loop after their service:
    # none may still be reading when the test's database is flushed.
    await broadcasting.queue_readings().settled()


@pytest.fixture(autouse=True)
def _quiet_background(settings):
    # No sweeper task inside test processes: tests call closing.sweep() themselves.
    settings.SUPPORTDESK_SWEEP_INTERVAL = 0
    # Nor a webhook sender: tests run its turns themselves (integrations/delivery.py).
    settings.SUPPORTDESK_WEBHOOK_INTERVAL = 0
    # Nor a mail sender: tests run its turns themselves (inbox/outbound.py).
    settings.SUPPORTDESK_MAIL_INTERVAL = 0
    # Nor the visitor sockets' heartbeat: a test's sockets count for the whole TTL. A
    # closed one stops counting at once unless a test gives it a grace period.
    settings.SUPPORTDESK_VISITOR_SOCKET_HEARTBEAT = 0
    settings.SUPPORTDESK_VISITOR_SOCKET_GRACE = 0
    # Hashing the personas' passwords properly is most of each test's setup time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # The shared rate limits count in this process's memory: each test starts from zero.
    settings.SUPPORTDESK_RATE_LIMIT_STORAGE = "memory://"
    ratelimits.reset()
    # Per-process memories keyed by ids a new test may reuse: the cache (what visitors
    # were last told about agents online and their waits, agents' last input) and the
    # queues' recently read wait bases.
    cache.clear()
    queue.forget_recent_bases()
    visitor_sockets.forget_beat()


@dataclass
class Personas:
    acme: Site
    alice: AgentProfile
    bob: AgentProfile
    v1: Visitor
    v2: Visitor
    v3: Visitor
    tokens: dict[str, str]

    def token(self, visitor: Visitor) -> str:
        return self.tokens[visitor.pk]


def make_agent(username: str, capacity: int, *, available: bool = True) -> AgentProfile:
    user = get_user_model().objects.create_user(username, password=f"{username}-pass")
    return AgentProfile.objects.create(
        user=user,
        display_name=username.capitalize(),
        capacity=capacity,
        status=AgentProfile.Status.AVAILABLE if available else AgentProfile.Status.AWAY,
        last_heartbeat=timezone.now() if available else None,
    )


def make_visitor(site: Site) -> tuple[Visitor, str]:
    return sessions.create_visitor_session(site_key=site.key, visitor_token=None)


@pytest.fixture
def personas(db) -> Personas:
    acme = Site.objects.create(name="acme", allowed_origins=["https://acme.example"])
    alice = make_agent("alice", 2)
    bob = make_agent("bob", 1)
    visitors = [make_visitor(acme) for _ in range(3)]
    return Personas(
        acme=acme,
        alice=alice,
        bob=bob,
        v1=visitors[0][0],
        v2=visitors[1][0],
        v3=visitors[2][0],
        tokens={v.pk: token for v, token in visitors},
    )


class Broadcasts(list):
    """(group, event) pairs, in the order the services broadcast them."""

    def frames(self, group: str, frame_type: str | None = None) -> list[dict]:
        return [
            event["frame"]
            for g, event in self
            if g == group
            and event["type"] == groups.FRAME_EVENT
            and (frame_type is None or event["frame"]["type"] == frame_type)
        ]


@pytest.fixture
def capture_broadcasts():
    """Collect broadcasts instead of sending them. Use with transactional tests
    (`@pytest.mark.django_db(transaction=True)`): broadcasts happen only on commit."""
    events = Broadcasts()
    token = outbox._outbox.set(events)
    yield events
    outbox._outbox.reset(token)


def pytest_collection_modifyitems(items):
    # Browser tests run last: sync Playwright needs DJANGO_ALLOW_ASYNC_UNSAFE, which
    # must not leak into the tests that check Django's async safety.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
