"""What REDIS_URL and REDIS_CHANNEL_URLS may say (a server, a Sentinel master, shards for
the channel layer), the settings built from them, and what a worker reports and does
per shard. The failovers and shard outages themselves are in
tests/test_chaos_redis_topologies.py (real processes, `make chaos`)."""

import asyncio
import time

import pytest
import redis
import redis.asyncio.sentinel
import redis.sentinel
from channels_redis.utils import create_pool
from django.core.exceptions import ImproperlyConfigured

from chat import protocol, ratelimits, redis_urls
from chat.realtime import groups, layer
from devstack import RedisServer, SentinelServer, redis_installed, sentinel_installed
from supportdesk import redis_settings
from tests import ws

SENTINEL_URL = "redis+sentinel://:s3cret@10.0.0.3:26379,10.0.0.4,[::1]:26380/mymaster/2"


# --- URLs -----------------------------------------------------------------------------


def test_a_sentinel_url_names_its_sentinels_master_database_and_password():
    target = redis_urls.parse(SENTINEL_URL)

    assert target.via_sentinel
    assert target.sentinels == (("10.0.0.3", 26379), ("10.0.0.4", 26379), ("::1", 26380))
    assert (target.service_name, target.db, target.password) == ("mymaster", 2, "s3cret")
    # What logs and /healthz show never carries the password.
    assert "s3cret" not in str(target)


def test_a_sentinel_url_without_a_database_uses_database_0():
    target = redis_urls.parse("redis+sentinel://sentinel.internal/mymaster")

    assert (target.sentinels, target.service_name, target.db) == (
        (("sentinel.internal", 26379),),
        "mymaster",
        0,
    )


def test_a_server_url_is_a_server():
    target = redis_urls.parse("redis://user:pw@redis.internal:6380/3")

    assert not target.via_sentinel
    assert (target.db, target.username, target.password) == (3, "user", "pw")
    assert str(target) == "redis://redis.internal:6380/3"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis.internal:6379", "is not a URL"),
        ("http://redis.internal/0", "http:// is not a Redis URL"),
        ("redis+sentinel://10.0.0.3:26379", "names no master"),
        ("redis+sentinel://10.0.0.3:26379/mymaster/zero", "database number"),
        ("redis+sentinel://10.0.0.3:99999/mymaster", "out of range"),
        ("redis+sentinel://10.0.0.3:26379/mymaster?db=1", "no query"),
        ("redis://redis.internal:port/0", "redis.internal:port"),
        ("redis://redis.internal/cache", "database number"),
    ],
)
def test_a_url_that_names_no_usable_redis_is_refused_with_the_reason(url, complaint):
    with pytest.raises(redis_urls.BadRedisUrl, match=complaint):
        redis_urls.parse(url)


def test_a_list_of_urls_keeps_each_sentinel_urls_own_commas():
    listed = "redis://a:6379/0, redis+sentinel://s1:26379,s2:26379/shard2/0,redis://c:6379/0"

    assert redis_urls.split_urls(listed) == [
        "redis://a:6379/0",
        "redis+sentinel://s1:26379,s2:26379/shard2/0",
        "redis://c:6379/0",
    ]
    assert redis_urls.split_urls(" ") == []


# --- settings -------------------------------------------------------------------------


def test_without_redis_the_layer_and_cache_stay_in_memory():
    built = redis_settings.build("", "", "pubsub")

    assert built == {
        "CHANNEL_LAYERS": {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    }


def test_a_sentinel_primary_carries_the_channel_layer_cache_and_rate_limits():
    built = redis_settings.build(SENTINEL_URL, "", "pubsub")

    (host,) = built["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"]
    assert host["master_name"] == "mymaster"
    assert host["sentinels"] == [["10.0.0.3", 26379], ["10.0.0.4", 26379], ["::1", 26380]]
    assert (host["db"], host["password"], host["socket_timeout"]) == (2, "s3cret", 15)
    cache = built["CACHES"]["default"]
    # A list: a LOCATION string would be split at the sentinels' commas.
    assert cache["LOCATION"] == [SENTINEL_URL]
    assert cache["OPTIONS"]["pool_class"] == "chat.redis_urls.CachePool"
    uri, options = redis_urls.limits_storage(SENTINEL_URL)
    assert uri == "redis+sentinel://10.0.0.3:26379,10.0.0.4:26379,::1:26380/mymaster"
    assert (options["db"], options["password"], options["use_replicas"]) == (2, "s3cret", False)


def test_channel_shards_carry_the_channel_layer_alone_and_the_cache_stays_on_the_primary():
    built = redis_settings.build(
        "redis://primary:6379/0", "redis://shard-a:6379/0,redis://shard-b:6379/0", "core"
    )

    layer_config = built["CHANNEL_LAYERS"]["default"]
    assert layer_config["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert [h["address"] for h in layer_config["CONFIG"]["hosts"]] == [
        "redis://shard-a:6379/0",
        "redis://shard-b:6379/0",
    ]
    assert built["CACHES"]["default"]["LOCATION"] == ["redis://primary:6379/0"]


@pytest.mark.parametrize(
    ("redis_url", "channel_urls", "kind", "complaint"),
    [
        ("", "redis://a:6379/0", "pubsub", "REDIS_CHANNEL_URLS needs REDIS_URL"),
        ("redis://p/0", "redis://a:6379/0,redis://a:6379/0", "pubsub", "one server twice"),
        ("redis+sentinel://s1/", "", "pubsub", "REDIS_URL: .* names no master"),
        ("redis://p/0", "redis://a/0,ftp://b", "pubsub", "REDIS_CHANNEL_URLS: ftp://"),
        ("redis://p/0", "", "lists", "SUPPORTDESK_CHANNEL_LAYER is 'lists'"),
    ],
)
def test_settings_that_cannot_work_stop_the_worker_naming_the_setting(
    redis_url, channel_urls, kind, complaint
):
    with pytest.raises(ImproperlyConfigured, match=complaint):
        redis_settings.build(redis_url, channel_urls, kind)


def test_each_client_of_a_sentinel_url_asks_the_sentinels_for_the_master():
    cache_pool = redis_urls.CachePool.from_url(SENTINEL_URL, socket_timeout=2)
    assert isinstance(cache_pool, redis.sentinel.SentinelConnectionPool)
    assert (cache_pool.service_name, cache_pool.is_master) == ("mymaster", True)
    assert cache_pool.connection_kwargs["db"] == 2

    host = redis_urls.channel_layer_host(redis_urls.parse(SENTINEL_URL), socket_timeout=15)
    layer_pool = create_pool(host)  # what channels-redis does with it
    assert isinstance(layer_pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert layer_pool.service_name == "mymaster"

    plain = redis_urls.CachePool.from_url("redis://127.0.0.1:6379/1")
    assert type(plain) is redis.ConnectionPool


def test_rate_limits_on_an_unreachable_sentinel_fail_open(settings):
    # Nothing listens on port 1: every sentinel refuses at once.
    settings.SUPPORTDESK_RATE_LIMIT_STORAGE = "redis+sentinel://127.0.0.1:1/mymaster/0"
    settings.SUPPORTDESK_LIMIT_IP_SESSIONS = "1 per minute"

    for _ in range(3):
        ratelimits.new_session("192.0.2.1")  # not refused: the outage lets it through


async def test_rate_limit_counts_on_the_loop_fail_open_at_once_without_a_sentinel(settings):
    settings.SUPPORTDESK_RATE_LIMIT_STORAGE = "redis+sentinel://127.0.0.1:1/mymaster/0"
    settings.SUPPORTDESK_LIMIT_IP_MESSAGES = "1 per minute"
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = ""
    limits = ratelimits.VisitorLimits(visitor_id=1, client="192.0.2.1")

    started = time.monotonic()
    for _ in range(3):
        await limits.message()  # not refused: the outage lets it through

    # The first count finds no master; the others rest instead of asking again.
    assert time.monotonic() - started < ratelimits.REDIS_TIMEOUT * 2


@pytest.fixture
def sentinel_master(tmp_path):
    """A redis-server and one redis-sentinel watching it as `mymaster`."""
    if not (redis_installed() and sentinel_installed()):
        pytest.skip("redis-server and redis-sentinel are needed (apt-get install ...)")
    master = RedisServer.start_new(tmp_path, name="master")
    sentinel = SentinelServer.start_new(tmp_path, "sentinel", "mymaster", master.port)
    yield f"redis+sentinel://{sentinel.address}/mymaster/0", master
    sentinel.stop()
    master.stop()


@pytest.mark.parametrize("on_loop", [True, False], ids=["event-loop", "thread"])
async def test_rate_limits_count_on_the_master_a_sentinel_names(settings, sentinel_master, on_loop):
    url, master = sentinel_master
    settings.SUPPORTDESK_RATE_LIMIT_STORAGE = url
    settings.SUPPORTDESK_LIMIT_IP_MESSAGES = "1 per minute"
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = ""
    client = f"192.0.2.{int(on_loop)}"

    async def one_message() -> None:
        if on_loop:
            await ratelimits.count_on_loop((ratelimits.IP_MESSAGES, client))
        else:
            await asyncio.to_thread(ratelimits.count, (ratelimits.IP_MESSAGES, client))

    await one_message()
    with pytest.raises(ratelimits.RateLimited):
        await one_message()
    keys = redis.Redis(port=master.port).keys(f"*ip-messages/{client}*")
    assert len(keys) == 1


@pytest.mark.django_db
def test_healthz_names_the_master_the_sentinels_name(client, settings, sentinel_master):
    url, master = sentinel_master
    settings.REDIS_URL = url
    settings.REDIS_CHANNEL_URLS = ""

    answer = client.get("/healthz")

    assert answer.status_code == 200
    primary = answer.json()["redis_primary"]
    assert (primary["address"], primary["role"], primary["status"]) == (
        master.address,
        "master",
        "ok",
    )
    assert (primary["sentinel_master"], primary["url"]) == ("mymaster", url)
    assert answer.json()["redis_channel_shards"] == [{"shard": 0, **primary}]


# --- what a worker reports and does per shard -------------------------------------------


@pytest.fixture
def two_redis(tmp_path):
    if not redis_installed():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    servers = [RedisServer.start_new(tmp_path, name=f"redis{n}") for n in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.django_db
def test_healthz_names_the_primary_and_each_shard_with_its_role(client, settings, two_redis):
    primary, shard = two_redis
    settings.REDIS_URL = primary.url
    settings.REDIS_CHANNEL_URLS = f"{primary.url},{shard.url}"

    answer = client.get("/healthz")

    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["redis"]) == ("ok", "ok")
    assert body["redis_primary"]["address"] == primary.address
    assert body["redis_primary"]["role"] == "master"
    assert [(s["shard"], s["address"], s["role"]) for s in body["redis_channel_shards"]] == [
        (0, primary.address, "master"),
        (1, shard.address, "master"),
    ]


@pytest.mark.django_db
def test_healthz_answers_503_naming_the_shard_that_is_down(client, settings, two_redis):
    primary, shard = two_redis
    settings.REDIS_URL = primary.url
    settings.REDIS_CHANNEL_URLS = f"{primary.url},{shard.url}"
    shard.stop()

    answer = client.get("/healthz")

    assert answer.status_code == 503
    body = answer.json()
    assert (body["status"], body["database"], body["redis"]) == ("unavailable", "ok", "unavailable")
    assert body["redis_primary"]["status"] == "ok"
    assert [s["status"] for s in body["redis_channel_shards"]] == ["ok", "unavailable"]


@pytest.mark.django_db
def test_healthz_calls_a_replica_unavailable_as_the_primary(client, settings, two_redis):
    master, _other = two_redis
    replica = RedisServer.start_new(master.log.parent, name="replica", replica_of=master.port)
    try:
        settings.REDIS_URL = replica.url
        settings.REDIS_CHANNEL_URLS = ""

        answer = client.get("/healthz")
    finally:
        replica.stop()

    assert answer.status_code == 503
    assert answer.json()["redis_primary"]["role"] == "replica"


class FakeSocket:
    def __init__(self, *groups: str) -> None:
        self.joined = set(groups)
        self.told = False

    def events_may_be_lost(self, groups: set[str] | None = None) -> None:
        self.told = True


async def test_a_returning_shard_resyncs_only_the_sockets_with_a_group_on_it():
    channel_layer = layer.PubSubChannelLayer(
        hosts=[{"address": "redis://127.0.0.1:1/0"}, {"address": "redis://127.0.0.1:2/0"}]
    )
    loop_layer = channel_layer._get_layer()
    shard_of = {}
    for n in range(40):
        group = f"visitor.{n}"
        shard_of[group] = loop_layer._shards.index(
            loop_layer._get_shard(loop_layer._get_group_channel_name(group))
        )
    on_first = [FakeSocket(g) for g, shard in shard_of.items() if shard == 0]
    on_second = [FakeSocket(g) for g, shard in shard_of.items() if shard == 1]
    both = FakeSocket(
        next(g for g, s in shard_of.items() if s == 0),
        next(g for g, s in shard_of.items() if s == 1),
    )
    assert on_first and on_second  # 40 groups hash to both shards
    sockets = [*on_first, *on_second, both]
    for socket in sockets:
        layer.watch_subscription(socket)
    try:
        layer.subscription_restored(loop_layer._shards[1])
    finally:
        for socket in sockets:
            layer.unwatch_subscription(socket)

    assert [s.told for s in on_second] == [True] * len(on_second)
    assert [s.told for s in on_first] == [False] * len(on_first)
    assert both.told


@pytest.mark.django_db
def test_healthz_answers_503_at_once_when_no_sentinel_answers(client, settings):
    settings.REDIS_URL = "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/0"
    settings.REDIS_CHANNEL_URLS = ""

    started = time.monotonic()
    answer = client.get("/healthz")

    assert time.monotonic() - started < 1.0
    assert answer.status_code == 503
    primary = answer.json()["redis_primary"]
    assert (primary["sentinel_master"], primary["status"]) == ("mymaster", "unavailable")
    assert "No master found for 'mymaster'" in primary["error"]


# --- a socket told its shard came back --------------------------------------------------


class ShardOf:
    """A shard that carries exactly `groups`."""

    def __init__(self, *groups: str) -> None:
        self.groups = set(groups)

    def carries(self, group: str) -> bool:
        return group in self.groups


async def visitor_and_alice(sockets, personas):
    alice, _ready = await sockets.agent(personas.alice)
    tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    return tab, alice


@pytest.mark.django_db(transaction=True)
async def test_a_returning_shard_of_shared_groups_refreshes_their_state_without_a_reconnect(
    personas, sockets
):
    tab, alice = await visitor_and_alice(sockets, personas)
    # What the tab showed last is stale: every agent went away while the shard was away
    # (the rows change here without the broadcast, which the shard's outage swallowed).
    await ws.db(type(personas.alice).objects.update, status="away")

    layer.subscription_restored(
        ShardOf(groups.AGENTS_GROUP, groups.site_visitors_group(personas.acme.id))
    )

    online = await ws.receive_until(tab, "agents.online")
    assert online["online"] is False
    assert "responses" in await ws.receive_until(alice, "canned")
    # Both sockets stay open and keep serving.
    await tab.send_json_to({"type": "message.send", "client_msg_id": "after", "body": "Hi"})
    assert (await ws.receive_until(tab, "message.ack"))["client_msg_id"] == "after"


@pytest.mark.django_db(transaction=True)
async def test_a_returning_shard_of_a_visitors_own_group_closes_that_socket_alone_with_4503(
    personas, sockets
):
    tab, alice = await visitor_and_alice(sockets, personas)

    layer.subscription_restored(ShardOf(groups.visitor_group(personas.v1.id)))

    code, _frames = await ws.receive_close(tab)
    assert code == protocol.CLOSE_UNAVAILABLE
    assert [f["type"] for f in await ws.frames_before_pong(alice)] == []


# --- one connection, one connector ---------------------------------------------------------


class SubscriptionConnection:
    """The shard's subscription connection, reconnecting until `done` is set."""

    def __init__(self) -> None:
        self.is_connected = False
        self.done = asyncio.Event()
        self.connects = 0

    async def connect(self) -> None:
        self.connects += 1
        await self.done.wait()
        self.is_connected = True


async def test_no_socket_connects_the_subscription_while_the_receive_loop_reconnects_it():
    channel_layer = layer.PubSubChannelLayer(hosts=[{"address": "redis://127.0.0.1:1/0"}])
    shard = channel_layer._get_layer()._shards[0]
    shard._ensure_redis()
    connection = shard._pubsub.connection = SubscriptionConnection()
    shard._guard_connects()
    shard._pubsub.channels = {b"asgi__group__visitor.1": None}  # what it must restore
    shard._subscribed_to.add("asgi__group__visitor.1")
    shard._receive_task = asyncio.get_running_loop().create_future()  # no loop here

    # Down, with subscriptions to restore: the receive loop reconnects, nobody else.
    with pytest.raises(redis.exceptions.ConnectionError, match="re-connecting"):
        await shard.subscribe("asgi.specific.a")
    reconnecting = asyncio.ensure_future(connection.connect())  # as the loop does
    await asyncio.sleep(0)  # it has started; `done` is not set yet
    # Mid-handshake it counts as connected, and is still not to be touched.
    connection.is_connected = True
    with pytest.raises(redis.exceptions.ConnectionError, match="re-connecting"):
        await shard.unsubscribe("asgi__group__visitor.1")
    connection.done.set()
    await reconnecting

    assert connection.connects == 1
    assert not shard._connecting
    shard._pubsub.connection = shard._receive_task = None


async def test_a_count_on_a_connection_closed_under_it_fails_open_and_rests(settings):
    """uvloop answers a write on a connection a killed master closed with RuntimeError,
    not ConnectionError: the message is still taken (fail open), not its socket failed."""
    settings.SUPPORTDESK_LIMIT_IP_MESSAGES = "1 per minute"

    async def closed_under_us(*args):
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    counter = ratelimits._LoopCounter("redis://127.0.0.1:1/0")
    counter.acquire_in_order = closed_under_us

    await counter.count(((ratelimits.IP_MESSAGES, "192.0.2.9"),))

    assert counter.resting_until > asyncio.get_running_loop().time()
