"""Project settings, read once from the environment.

Environment: DATABASE_URL (default: a SQLite file), REDIS_URL (set: channels-redis
layer, shared cache and rate limits; unset: in memory, one process only),
REDIS_CHANNEL_URLS (the channel layer's own shards), SECRET_KEY, ALLOWED_HOSTS, DEBUG,
plus the SUPPORTDESK_* tunables below.
"""

import os
import tempfile
from pathlib import Path

import dj_database_url

from supportdesk import redis_settings

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


DEBUG = _env_bool("DEBUG", False)
# The fallback key is only good for development: `check --deploy` flags its prefix.
SECRET_KEY = os.environ.get("SECRET_KEY") or "django-insecure-supportdesk-development-only"
ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
    "agents",
    "integrations",
    # The email channel: mail in (receive_mail, providers' webhooks) and replies out.
    "anymail",
    "inbox",
    "kb",
    # The project's own commands: the process launchers (serve_demo, run_cluster).
    "supportdesk",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language of every page: an agent's choice (the language cookie set_language
    # writes), else the browser's Accept-Language, else LANGUAGE_CODE. The widget's frame
    # overrides it from the site's setting or the embed's data-lang (chat/languages.py).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chat.csp.DenyFramingByDefault",
]

ROOT_URLCONF = "supportdesk.urls"
ASGI_APPLICATION = "supportdesk.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=600,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes SQLite's write lock at BEGIN, so two workers' read-then-write
        # transactions (seq allocation, routing) queue up instead of failing to upgrade.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, never SQLite's in-memory database (the consumers' database thread must
    # see what the test wrote), and one per test run so parallel runs don't collide.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("SQLITE_TEST_NAME")
        or str(Path(tempfile.gettempdir()) / f"supportdesk-test-{os.getpid()}.sqlite3")
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The primary Redis: a server, or a master Redis Sentinel fails over
# (redis+sentinel://host:26379,host:26379/mymaster/0; docs/deploy.md). Unset: the
# in-memory layer and cache, one process only.
REDIS_URL = os.environ.get("REDIS_URL", "")
# Servers the channel layer alone spreads over (comma-separated URLs, in the same order
# on every worker); unset: the channel layer is on REDIS_URL too.
REDIS_CHANNEL_URLS = os.environ.get("REDIS_CHANNEL_URLS", "")
# "pubsub" (one PUBLISH per group send, nothing to drop at a capacity) or "core"
# (channels-redis' list-based layer); see docs/deploy.md for the measurement.
CHANNEL_LAYER_KIND = os.environ.get("SUPPORTDESK_CHANNEL_LAYER", "pubsub")
# The channel layer, and Django's cache on the primary (supportdesk/redis_settings.py).
_redis = redis_settings.build(REDIS_URL, REDIS_CHANNEL_URLS, CHANNEL_LAYER_KIND)
CHANNEL_LAYERS = _redis["CHANNEL_LAYERS"]
if "CACHES" in _redis:
    CACHES = _redis["CACHES"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/agent/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
# The languages shipped complete (docs/languages.md): every visitor- and agent-facing
# string is translated in locale/<code>/ (tests/test_translations.py checks it).
LANGUAGES = [
    ("en", "English"),
    ("de", "Deutsch"),
    ("fr", "Français"),
    ("es", "Español"),
    ("pt", "Português"),
    ("ar", "العربية"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

STATIC_URL = "static/"
# From the environment so test servers can collect into a throwaway folder.
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = DEBUG

# Production hardening; `manage.py check --deploy` is clean with DEBUG=0, a real
# SECRET_KEY and HTTPS in front.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Cookies over HTTPS only, unless told otherwise (plain-HTTP test servers on loopback).
SESSION_COOKIE_SECURE = _env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# On in production (docs/deploy.md) unless the proxy in front already redirects.
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = 0 if DEBUG else 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Request bodies Django reads into memory (admin forms, the JSON API); bigger is a 400.
# Daphne itself buffers whole bodies, so the proxy in front bounds them first.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", "")
# JSON for a program under /api/, Django's page for a person elsewhere.
CSRF_FAILURE_VIEW = "chat.views.csrf_failure"

# --- supportdesk tunables (seconds unless named otherwise) ---
# An agent is routed new chats only while its heartbeat is younger than this.
SUPPORTDESK_HEARTBEAT_TIMEOUT = _env_float("SUPPORTDESK_HEARTBEAT_TIMEOUT", 30)
# How often a connected agent socket refreshes its heartbeat.
SUPPORTDESK_HEARTBEAT_INTERVAL = _env_float("SUPPORTDESK_HEARTBEAT_INTERVAL", 10)
# An agent whose heartbeat lapsed (no socket) keeps its open chats this much longer
# before they are re-queued. "Away" only stops new chats; current ones stay.
SUPPORTDESK_AGENT_GRACE = _env_float("SUPPORTDESK_AGENT_GRACE", 60)
# An open conversation nobody wrote in for this long is closed by the system.
SUPPORTDESK_INACTIVITY_TIMEOUT = _env_float("SUPPORTDESK_INACTIVITY_TIMEOUT", 30 * 60)
# How often each worker sweeps for lapsed agents, idle chats and stranded queues.
SUPPORTDESK_SWEEP_INTERVAL = _env_float("SUPPORTDESK_SWEEP_INTERVAL", 5)
# An available agent whose dashboard reports no input (keys, pointer, focus) for this
# long is put away automatically, and made available again by their next input; 0 = never.
SUPPORTDESK_AUTO_AWAY_SECONDS = _env_float("SUPPORTDESK_AUTO_AWAY_SECONDS", 600)
# Threads (each with its own database connection) that run the sockets' ORM calls in a
# worker; 1 is Channels' single database thread. See docs/performance.md.
# How often each worker looks for webhook deliveries due (seconds; 0: never, e.g. in
# the in-process tests, which run the turns themselves).
SUPPORTDESK_WEBHOOK_INTERVAL = _env_float("SUPPORTDESK_WEBHOOK_INTERVAL", 1.0)
# The email channel (inbox/): how often each worker looks for agents' replies to mail
# (an agent's message also wakes it at once; 0: never, e.g. in the in-process tests).
SUPPORTDESK_MAIL_INTERVAL = _env_float("SUPPORTDESK_MAIL_INTERVAL", 2.0)
# Bytes one inbound mail may have (receive_mail says SIZE in EHLO, answers 552 past it).
SUPPORTDESK_MAIL_MAX_BYTES = int(os.environ.get("SUPPORTDESK_MAIL_MAX_BYTES", 25 * 1024 * 1024))
# Whose Authentication-Results header to believe about a sender (the authserv-id your
# mail server writes, e.g. mx.example.com); empty: the topmost one, the closest hop's.
SUPPORTDESK_MAIL_AUTHSERV_ID = os.environ.get("SUPPORTDESK_MAIL_AUTHSERV_ID", "")
# Inbound mails per sender address and site, and per site (a 451 past them).
SUPPORTDESK_LIMIT_MAIL_SENDER = os.environ.get("SUPPORTDESK_LIMIT_MAIL_SENDER", "20 per hour")
SUPPORTDESK_LIMIT_MAIL_SITE = os.environ.get("SUPPORTDESK_LIMIT_MAIL_SITE", "2000 per hour")
# Providers' inbound webhooks (django-anymail): the Mailgun signing key, and the basic
# auth "user:password" put in the webhook's URL (https://user:password@host/anymail/...).
ANYMAIL = {
    "MAILGUN_WEBHOOK_SIGNING_KEY": os.environ.get("MAILGUN_WEBHOOK_SIGNING_KEY", ""),
    "WEBHOOK_SECRET": os.environ.get("ANYMAIL_WEBHOOK_SECRET") or None,
}
# The knowledge-base bot (kb/bot.py): an answer not ready within this many seconds is
# dropped and the chat handed to a person; the sweep hands off chats whose answer was
# lost (a worker died) after twice this.
SUPPORTDESK_BOT_DEADLINE = _env_float("SUPPORTDESK_BOT_DEADLINE", 3.0)
SUPPORTDESK_BOT_THREADS = int(os.environ.get("SUPPORTDESK_BOT_THREADS", 2))
# 0: the bot uses keyword search alone even where requirements-ai.txt is installed.
SUPPORTDESK_BOT_MODEL = _env_bool("SUPPORTDESK_BOT_MODEL", True)
# Requests per minute one API key may make.
SUPPORTDESK_LIMIT_API_KEY = os.environ.get("SUPPORTDESK_LIMIT_API_KEY", "600 per minute")
# `make run`'s demo shop (serve_demo sets it), linked from the landing page.
SUPPORTDESK_DEMO_SHOP_URL = os.environ.get("SUPPORTDESK_DEMO_SHOP_URL", "")
SUPPORTDESK_DB_THREADS = int(os.environ.get("SUPPORTDESK_DB_THREADS", 4))
# PostgreSQL: the everyday message send runs its one statement on the worker's event
# loop, on connections of its own (as many as SUPPORTDESK_DB_THREADS), instead of on an
# ORM thread (chat/store/loop.py). See docs/performance.md, change 14.
SUPPORTDESK_SEND_ON_LOOP = _env_bool("SUPPORTDESK_SEND_ON_LOOP", True)
# PostgreSQL: a visitor's `hello` reads the visitor and what `ready` carries on those
# connections too, in two statements, instead of on ORM threads (docs/performance.md,
# change 23: the reconnect storm after a deploy).
SUPPORTDESK_HELLO_ON_LOOP = _env_bool("SUPPORTDESK_HELLO_ON_LOOP", True)
# PostgreSQL: the message send path's statements are prepared once per connection
# (chat/store/sql.py `hot_cursor`). Off for a pooler that cannot keep prepared statements
# (PgBouncer before 1.21 in transaction mode); see docs/deploy.md.
SUPPORTDESK_PREPARED_STATEMENTS = _env_bool("SUPPORTDESK_PREPARED_STATEMENTS", True)
# Bytes a WebSocket client may leave unread in the worker's send buffer before it is
# disconnected (it resumes by seq when it reconnects); see docs/deploy.md.
SUPPORTDESK_WS_SEND_BUFFER = int(os.environ.get("SUPPORTDESK_WS_SEND_BUFFER", 4 * 1024 * 1024))
# Token buckets per socket: (burst, frames per second).
SUPPORTDESK_VISITOR_RATE = (
    int(os.environ.get("SUPPORTDESK_VISITOR_BURST", 30)),
    _env_float("SUPPORTDESK_VISITOR_RATE", 5),
)
SUPPORTDESK_AGENT_RATE = (
    int(os.environ.get("SUPPORTDESK_AGENT_BURST", 120)),
    _env_float("SUPPORTDESK_AGENT_RATE", 30),
)
# Limits shared by every worker, on top of the buckets (chat/ratelimits.py,
# docs/security.md): "N per [M] second|minute|hour", several joined by ";"; empty = none.
# Counted in Redis when REDIS_URL is set (one count for all workers, on the primary even
# when the channel layer has shards of its own), else in memory.
SUPPORTDESK_RATE_LIMIT_STORAGE = (
    os.environ.get("SUPPORTDESK_RATE_LIMIT_STORAGE") or REDIS_URL or "memory://"
)
SUPPORTDESK_LIMIT_VISITOR_MESSAGES = os.environ.get(
    "SUPPORTDESK_LIMIT_VISITOR_MESSAGES", "20 per 10 seconds"
)
SUPPORTDESK_LIMIT_IP_MESSAGES = os.environ.get(
    "SUPPORTDESK_LIMIT_IP_MESSAGES", "120 per 10 seconds"
)
SUPPORTDESK_LIMIT_VISITOR_CONVERSATIONS = os.environ.get(
    "SUPPORTDESK_LIMIT_VISITOR_CONVERSATIONS", "5 per minute"
)
SUPPORTDESK_LIMIT_IP_CONVERSATIONS = os.environ.get(
    "SUPPORTDESK_LIMIT_IP_CONVERSATIONS", "30 per minute"
)
# Requests that issue a visitor token (a new visitor, or a rotation); known tokens are free.
SUPPORTDESK_LIMIT_IP_SESSIONS = os.environ.get("SUPPORTDESK_LIMIT_IP_SESSIONS", "60 per minute")
# Chat transcripts a visitor asks to be mailed (to any address it types).
SUPPORTDESK_LIMIT_CONVERSATION_TRANSCRIPTS = os.environ.get(
    "SUPPORTDESK_LIMIT_CONVERSATION_TRANSCRIPTS", "3 per hour"
)
SUPPORTDESK_LIMIT_IP_TRANSCRIPTS = os.environ.get("SUPPORTDESK_LIMIT_IP_TRANSCRIPTS", "10 per hour")
# Attachment uploads (POST /api/v1/attachments), per visitor, per client address, per agent.
SUPPORTDESK_LIMIT_VISITOR_UPLOADS = os.environ.get(
    "SUPPORTDESK_LIMIT_VISITOR_UPLOADS", "10 per minute; 60 per hour"
)
SUPPORTDESK_LIMIT_IP_UPLOADS = os.environ.get("SUPPORTDESK_LIMIT_IP_UPLOADS", "30 per minute")
SUPPORTDESK_LIMIT_AGENT_UPLOADS = os.environ.get("SUPPORTDESK_LIMIT_AGENT_UPLOADS", "30 per minute")

# A visitor socket counts as open while its worker refreshed it this recently; its
# worker refreshes all its visitor sockets every SUPPORTDESK_VISITOR_SOCKET_HEARTBEAT
# seconds (0: never, for tests). A worker killed with kill -9 stops refreshing, so its
# sockets stop counting after the TTL (chat/conversations/visitor_sockets.py).
SUPPORTDESK_VISITOR_SOCKET_TTL = _env_float("SUPPORTDESK_VISITOR_SOCKET_TTL", 15)
SUPPORTDESK_VISITOR_SOCKET_HEARTBEAT = _env_float("SUPPORTDESK_VISITOR_SOCKET_HEARTBEAT", 5)
# A closed visitor socket still counts this many seconds: the next page of a reload, or
# of a link followed on the site, says hello within them, and a call ringing for the
# visitor rings on into it. After them, a visitor with no socket left is gone.
SUPPORTDESK_VISITOR_SOCKET_GRACE = _env_float("SUPPORTDESK_VISITOR_SOCKET_GRACE", 3)

# --- calls (chat/conversations/calls.py, docs/calls.md) ---
# An invitation nobody answered within this many seconds ends with reason "timeout".
SUPPORTDESK_CALL_RING_TIMEOUT = _env_float("SUPPORTDESK_CALL_RING_TIMEOUT", 30)
# ICE servers handed to both browsers with each call (comma-separated URLs). No STUN
# server by default: nothing here contacts a third party unless the operator says so.
SUPPORTDESK_STUN_URLS = _env_list("SUPPORTDESK_STUN_URLS", "")
SUPPORTDESK_TURN_URLS = _env_list("SUPPORTDESK_TURN_URLS", "")
# coturn's `use-auth-secret` / `static-auth-secret`: each call gets a TURN username
# "EXPIRY:supportdesk-c<conversation>" and the credential base64(HMAC-SHA1(secret,
# username)), valid for SUPPORTDESK_TURN_TTL seconds. Without a secret no TURN entry
# is handed out (a TURN server that needs none is an open relay).
SUPPORTDESK_TURN_SECRET = os.environ.get("SUPPORTDESK_TURN_SECRET", "")
SUPPORTDESK_TURN_TTL = int(os.environ.get("SUPPORTDESK_TURN_TTL", 24 * 3600))
# Calls placed per conversation, and call signals (SDP, ICE candidates) per participant
# across its sockets and workers (chat/ratelimits.py notation).
SUPPORTDESK_LIMIT_CALL_INVITES = os.environ.get(
    "SUPPORTDESK_LIMIT_CALL_INVITES", "3 per minute; 20 per hour"
)
SUPPORTDESK_LIMIT_CALL_SIGNALS = os.environ.get("SUPPORTDESK_LIMIT_CALL_SIGNALS", "300 per minute")

# --- attachments (chat/attachments.py, docs/security.md) ---
# Where uploaded files live. Never served as static files: every download goes through
# the participant check in chat/attachment_views.py. Keep it out of STATIC_ROOT.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")
# Files go through Django's storage API only, so another backend (e.g. a private S3
# bucket via django-storages) can replace FileSystemStorage here; it must not be public.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# The largest file a visitor or agent may attach, in bytes (10 MB).
SUPPORTDESK_ATTACHMENT_MAX_BYTES = int(
    os.environ.get("SUPPORTDESK_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
)
# An upload no message named within this long is deleted, with its file, by the sweep.
SUPPORTDESK_ATTACHMENT_PENDING_TTL = _env_float("SUPPORTDESK_ATTACHMENT_PENDING_TTL", 24 * 3600)
# Uploads larger than this are spooled to a temporary file instead of memory (Django's
# default, spelled out); the file-size limit above is checked on the spooled file.
# DATA_UPLOAD_MAX_MEMORY_SIZE (above) bounds the form fields only, never the file.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_PERMISSIONS = 0o640

# Mail (offline messages to agents, transcripts to visitors): the console in DEBUG,
# SMTP from EMAIL_* otherwise; tests use Django's locmem backend.
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", False)
# Seconds an SMTP exchange may take: mail is sent on a thread of its own, which a server
# that never answers would otherwise hold forever.
EMAIL_TIMEOUT = _env_float("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "supportdesk@localhost")
# For django.core.mail.backends.filebased.EmailBackend (one file per message).
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH") or None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
