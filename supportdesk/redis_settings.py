"""The settings that follow from `REDIS_URL` and `REDIS_CHANNEL_URLS` (docs/deploy.md):
Django's cache, the channel layer and the rate limits' storage.

What needs one truth stays on the primary, `REDIS_URL`: Django's cache (an agent's
latest input, which sites were last told "agents online", the queue basis last told)
and the shared rate limits. Only the channel layer may spread over several servers,
`REDIS_CHANNEL_URLS`: channels-redis hashes each group (and each socket's own channel)
to one of them, the same way on every worker as long as every worker lists them in the
same order.
"""

from django.core.exceptions import ImproperlyConfigured

from chat import redis_urls

# The channel layer's connections. redis-py 8 defaults socket_timeout to 5 s, the same as
# the core layer's blocking read, which makes idle consumers time out; set both
# explicitly. redis-py 8 raises MaxConnectionsError past the pool size instead of
# waiting; the pub/sub layer uses one connection per shard, the core layer one per
# concurrent command, so the bound is the core layer's.
CHANNEL_CONNECTION = {
    "socket_timeout": 15,
    "socket_connect_timeout": 3,
    "health_check_interval": 15,
    "max_connections": 1000,
}
CACHE_CONNECTION = {"socket_timeout": 2, "socket_connect_timeout": 2}


def targets(redis_url: str, channel_urls: str) -> tuple[redis_urls.RedisTarget | None, list]:
    """(the primary, the channel layer's shards), read from the two settings; the
    shards are the primary alone unless `channel_urls` lists others.
    ImproperlyConfigured names the setting that is wrong."""
    try:
        primary = redis_urls.parse(redis_url) if redis_url else None
    except redis_urls.BadRedisUrl as exc:
        raise ImproperlyConfigured(f"REDIS_URL: {exc}") from None
    try:
        shards = [redis_urls.parse(url) for url in redis_urls.split_urls(channel_urls)]
    except redis_urls.BadRedisUrl as exc:
        raise ImproperlyConfigured(f"REDIS_CHANNEL_URLS: {exc}") from None
    if shards and primary is None:
        raise ImproperlyConfigured(
            "REDIS_CHANNEL_URLS needs REDIS_URL: the cache and the rate limits live on it"
        )
    if len(set(shards)) != len(shards):
        raise ImproperlyConfigured("REDIS_CHANNEL_URLS names one server twice")
    return primary, shards or ([primary] if primary else [])


def build(redis_url: str, channel_urls: str, layer_kind: str) -> dict:
    """CACHES and CHANNEL_LAYERS for these settings (no Redis: Django's and Channels'
    in-memory defaults, one process only)."""
    primary, shards = targets(redis_url, channel_urls)
    if primary is None:
        return {"CHANNEL_LAYERS": {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}}
    hosts = [redis_urls.channel_layer_host(shard, **CHANNEL_CONNECTION) for shard in shards]
    if layer_kind == "core":
        layer = {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": hosts, "capacity": 1000, "expiry": 30},
        }
    elif layer_kind == "pubsub":
        layer = {
            # channels-redis' pub/sub layer, plus a report when its subscription to a
            # shard broke, so that shard's sockets resync (chat/realtime/layer.py).
            "BACKEND": "chat.realtime.layer.PubSubChannelLayer",
            "CONFIG": {"hosts": hosts},
        }
    else:
        raise ImproperlyConfigured(
            f"SUPPORTDESK_CHANNEL_LAYER is {layer_kind!r}: use 'pubsub' or 'core'"
        )
    return {
        # Django's cache holds small state every worker must agree on (an agent's latest
        # input for auto-away, which sites were last announced "agents online"), so with
        # several workers it lives on the primary. A list, not a string: Django splits a
        # LOCATION string at commas, and a Sentinel URL has some.
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": [primary.url],
                "KEY_PREFIX": "supportdesk",
                "OPTIONS": {"pool_class": "chat.redis_urls.CachePool", **CACHE_CONNECTION},
            }
        },
        "CHANNEL_LAYERS": {"default": layer},
    }
