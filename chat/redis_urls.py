"""What `REDIS_URL` and `REDIS_CHANNEL_URLS` name, and how each user of Redis reaches it.

A URL names one Redis server (`redis://`, `rediss://`, `unix://`) or a master that Redis
Sentinel watches and fails over:

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]

(the form of the `limits` library's Sentinel storage, plus an optional database
number; a port left out is Sentinel's 26379). The credentials are the Redis servers'
(master and replicas); the sentinels themselves are asked without any.

Every client built here asks the sentinels where the master is each time it connects,
so after a failover its next connection goes to the promoted replica: the channel layer
(`channel_layer_host`), Django's cache (`CachePool`), the rate limits
(`limits_storage`) and the health check (`probe`).
"""

import dataclasses
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.backoff
import redis.retry
import redis.sentinel

SENTINEL_SCHEME = "redis+sentinel"
DIRECT_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_PORT = 26379
# How long a client waits for one sentinel before asking the next.
SENTINEL_TIMEOUT = 1.0


class BadRedisUrl(ValueError):
    """A Redis URL this project cannot use; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class RedisTarget:
    """One Redis a URL names: a server, or Sentinel's `service_name` master."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def via_sentinel(self) -> bool:
        return bool(self.sentinels)

    def __str__(self) -> str:
        """For logs and /healthz: never the password."""
        if self.via_sentinel:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"{SENTINEL_SCHEME}://{hosts}/{self.service_name}/{self.db}"
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


def parse(url: str) -> RedisTarget:
    """The Redis `url` names; `BadRedisUrl` if it names none this project can use."""
    url = url.strip()
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise BadRedisUrl(f"{url!r} is not a URL (redis://host:6379/0 or redis+sentinel://...)")
    if scheme in DIRECT_SCHEMES:
        return _direct(url)
    if scheme != SENTINEL_SCHEME:
        raise BadRedisUrl(
            f"{scheme}:// is not a Redis URL supportdesk reads: use "
            f"{', '.join(s + '://' for s in DIRECT_SCHEMES)} or {SENTINEL_SCHEME}://"
        )
    return _sentinel(url, rest)


def _direct(url: str) -> RedisTarget:
    parts = urlsplit(url)
    try:
        _port = parts.port  # urlsplit checks a port only when it is asked for it
    except ValueError as exc:
        raise BadRedisUrl(f"{url!r}: {exc}") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise BadRedisUrl(f"{url!r} names no host")
    db = parts.path.strip("/") if parts.scheme != "unix" else ""
    if db and not db.isdigit():
        raise BadRedisUrl(f"{url!r}: the path must be a database number, not {db!r}")
    return RedisTarget(
        url=url,
        db=int(db or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _sentinel(url: str, rest: str) -> RedisTarget:
    if "?" in rest or "#" in rest:
        raise BadRedisUrl(f"{url!r}: a Sentinel URL takes no query or fragment")
    netloc, _slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(url, entry) for entry in hosts.split(","))
    service_name, _slash, db = path.strip("/").partition("/")
    if not service_name:
        raise BadRedisUrl(f"{url!r} names no master: redis+sentinel://hosts/SERVICE_NAME/0")
    if db and not db.isdigit():
        raise BadRedisUrl(f"{url!r}: after the master's name comes a database number")
    return RedisTarget(
        url=url,
        sentinels=sentinels,
        service_name=service_name,
        db=int(db or 0),
        username=username,
        password=password,
    )


def _host_port(url: str, entry: str) -> tuple[str, int]:
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(\d+))?", entry.strip())
    if match is None:
        raise BadRedisUrl(f"{url!r}: {entry!r} is not host:port")
    host, port = match.group(1).strip("[]"), int(match.group(2) or SENTINEL_PORT)
    if not 0 < port < 65536:
        raise BadRedisUrl(f"{url!r}: port {port} is out of range")
    return host, port


def split_urls(value: str) -> list[str]:
    """A comma-separated list of Redis URLs (`REDIS_CHANNEL_URLS`). A Sentinel URL's
    own hosts are comma-separated too, so a piece that starts with no `scheme://`
    continues the URL before it."""
    urls: list[str] = []
    for piece in (piece.strip() for piece in value.split(",")):
        if not piece:
            continue
        if "://" in piece or not urls:
            urls.append(piece)
        else:
            urls[-1] += "," + piece
    return urls


# --- clients ----------------------------------------------------------------------------


def _retry(*, on_loop: bool = False, retries: int = 1) -> redis.retry.Retry:
    """One retry, at once: enough to replace a pooled connection that a failover or a
    restart broke, without redis-py's default backoff (three retries, 1 s doubling to
    10 s), which would hold a request or a rate-limit count for seconds while the master
    is gone. What calls again later (the next request, the channel layer's receive
    loop) is the real retry."""
    retry_class = redis.asyncio.retry.Retry if on_loop else redis.retry.Retry
    return retry_class(redis.backoff.NoBackoff(), retries)


def _sentinel_kwargs(timeout: float, *, on_loop: bool = False, retries: int = 1) -> dict:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": _retry(on_loop=on_loop, retries=retries),
    }


def _credentials(target: RedisTarget) -> dict:
    found = {"username": target.username, "password": target.password}
    return {name: value for name, value in found.items() if value is not None}


def channel_layer_host(target: RedisTarget, **options) -> dict:
    """One entry of channels-redis' `hosts` (`channels_redis.utils.create_pool`): an
    `address`, or the master's name and the sentinels with the connection `options`."""
    if not target.via_sentinel:
        return {"address": target.url, **options}
    return {
        "master_name": target.service_name,
        "sentinels": [list(pair) for pair in target.sentinels],
        "sentinel_kwargs": _sentinel_kwargs(SENTINEL_TIMEOUT, on_loop=True),
        "db": target.db,
        "retry": _retry(on_loop=True),
        **_credentials(target),
        **options,
    }


def _sentinel_manager(
    target: RedisTarget, timeout: float = SENTINEL_TIMEOUT, retries: int = 1
) -> redis.sentinel.Sentinel:
    return redis.sentinel.Sentinel(
        list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(timeout, retries=retries)
    )


class CachePool:
    """`pool_class` for Django's RedisCache: a plain pool for a server, a Sentinel pool
    (which finds the master at each new connection) for a Sentinel URL."""

    @classmethod
    def from_url(cls, url: str, **options) -> redis.ConnectionPool:
        target = parse(url)
        if not target.via_sentinel:
            return redis.ConnectionPool.from_url(url, **options)
        return redis.sentinel.SentinelConnectionPool(
            target.service_name,
            _sentinel_manager(target),
            db=target.db,
            **_credentials(target),
            **{"retry": _retry(), **options},
        )


class _BlockingSentinelPool(
    redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool
):
    """redis-py's asyncio Sentinel pool, waiting up to `timeout` for a free connection
    past `max_connections` instead of failing at once (BlockingConnectionPool's
    `get_connection`; the Sentinel pool overrides only where connections go)."""


def blocking_loop_pool(target: RedisTarget, **options) -> redis.asyncio.ConnectionPool:
    """An asyncio pool for the master `target` names (Sentinel only), that waits for a
    free connection: the rate limits' counts on the event loop."""
    manager = redis.asyncio.sentinel.Sentinel(
        list(target.sentinels),
        sentinel_kwargs=_sentinel_kwargs(SENTINEL_TIMEOUT, on_loop=True),
    )
    return _BlockingSentinelPool(
        target.service_name,
        manager,
        db=target.db,
        retry=_retry(on_loop=True),
        **_credentials(target),
        **options,
    )


def limits_storage(url: str) -> tuple[str, dict]:
    """(storage URI, options) for the `limits` library. Its Sentinel storage reads
    `redis+sentinel://hosts/service_name` (no database number) and, unless told,
    counts reads on replicas, which lag the master: the counts must be one truth."""
    target = parse(url)
    if not target.via_sentinel:
        return url, {}
    hosts = ",".join(f"{host}:{port}" for host, port in target.sentinels)
    options = {
        "db": target.db,
        "use_replicas": False,
        "retry": _retry(),
        "sentinel_kwargs": _sentinel_kwargs(SENTINEL_TIMEOUT),
        **_credentials(target),
    }
    return f"{SENTINEL_SCHEME}://{hosts}/{target.service_name}", options


# --- what a worker sees -------------------------------------------------------------------


def probe(target: RedisTarget, timeout: float = 1.0) -> dict:
    """What this process reaches through `target` now: the server's address, its role
    (`master` or `replica`) and `status` "ok" when it answers as a master (a replica
    refuses writes, so it is no use as the primary or as a channel-layer shard)."""
    seen: dict = {"url": str(target)}
    if target.via_sentinel:
        seen["sentinel_master"] = target.service_name
    # One attempt each, no retry: the answer is for now, and must come soon: the
    # sentinels share `timeout` (asked one after the other), then the server has its own.
    options = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": _retry(retries=0),
    }
    try:
        if target.via_sentinel:
            sentinels = _sentinel_manager(
                target, timeout=timeout / len(target.sentinels), retries=0
            )
            host, port = sentinels.discover_master(target.service_name)
            seen["address"] = f"{host}:{port}"
            client = redis.Redis(
                host=host,
                port=port,
                db=target.db,
                **_credentials(target),
                **options,
            )
        else:
            client = redis.Redis.from_url(target.url, **options)
            kwargs = client.connection_pool.connection_kwargs
            seen["address"] = kwargs.get("path") or f"{kwargs['host']}:{kwargs['port']}"
        try:
            role = client.execute_command("ROLE")[0]
        finally:
            client.close()
    except redis.RedisError as exc:
        return {**seen, "status": "unavailable", "error": str(exc) or type(exc).__name__}
    role = role.decode() if isinstance(role, bytes) else str(role)
    seen["role"] = "replica" if role == "slave" else role
    seen["status"] = "ok" if seen["role"] == "master" else "unavailable"
    return seen


def distinct(targets: Iterable[RedisTarget]) -> list[RedisTarget]:
    """`targets` without repeats, in order."""
    return list(dict.fromkeys(targets))
