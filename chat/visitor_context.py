"""What the widget reports about a visitor for the agent (the page they are on, where
they came from, their time zone, their browser), cleaned before it is stored.

Everything here comes from the visitor's browser and may be a lie: it is capped,
checked for shape, and shown to agents only as text or as an http(s) link
(docs/security.md). Values that fail a check are dropped, never stored.
"""

import functools
import logging
import re
import threading
import unicodedata
import zoneinfo
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .models import Visitor

logger = logging.getLogger(__name__)

MAX_URL_CHARS = Visitor._meta.get_field("page_url").max_length
MAX_TITLE_CHARS = Visitor._meta.get_field("page_title").max_length
MAX_USER_AGENT_CHARS = Visitor._meta.get_field("user_agent").max_length
MAX_TIMEZONE_CHARS = Visitor._meta.get_field("timezone").max_length
# "Europe/Oslo", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT+2": never a path.
TIMEZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")
DEFAULT_PORTS = {"http": 80, "https": 443}


def _text(value: str, limit: int) -> str:
    """One line of printable text: control characters (newlines, bidi overrides) become
    spaces, runs of blanks one space, cut to `limit` characters."""
    cleaned = "".join(" " if unicodedata.category(c).startswith("C") else c for c in value)
    return " ".join(cleaned.split())[:limit]


def url_origin(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL as browsers write an Origin (default
    port left out), or None for anything else: another scheme, no host, credentials in
    the URL, a malformed port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def _http_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or len(url) > MAX_URL_CHARS or any(c.isspace() for c in url):
        return None
    return url if url_origin(url) is not None else None


def clean_page(page: Any, allowed_origins: list[str]) -> dict[str, str]:
    """The Visitor fields a reported page (`{"url", "title", "referrer"}`) may set.

    - `page_url` (and `page_title` with it) only for an http(s) URL on one of the
      site's allowed origins: the visitor is on the site, or we learn nothing.
    - `referrer` only for an http(s) URL of another origin: where the visitor came
      from. A referrer on the site itself is the previous page of the same visit and
      leaves the stored one (the way in) alone; so does an empty one.
    """
    if not isinstance(page, dict):
        return {}
    fields: dict[str, str] = {}
    url = _http_url(page.get("url"))
    if url is not None and url_origin(url) in allowed_origins:
        fields["page_url"] = url
        title = page.get("title")
        fields["page_title"] = _text(title, MAX_TITLE_CHARS) if isinstance(title, str) else ""
    referrer = _http_url(page.get("referrer"))
    if referrer is not None and url_origin(referrer) not in allowed_origins:
        fields["referrer"] = referrer
    return fields


def clean_timezone(value: Any) -> str | None:
    """An IANA time zone name this server knows, else None."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TIMEZONE_CHARS:
        return None
    if not TIMEZONE_NAME.fullmatch(value):
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    return value


def clean_user_agent(value: str | None) -> str:
    return _text(value or "", MAX_USER_AGENT_CHARS)


# --- browser and OS, for the agent ------------------------------------------------


@dataclass(frozen=True)
class Software:
    browser: str | None  # "Chrome 126"
    os: str | None  # "Windows 10"


def _name(family: str | None, major: str | None) -> str | None:
    if not family or family == "Other":
        return None
    return f"{family} {major}" if major else family


@functools.lru_cache(maxsize=512)
def describe_user_agent(user_agent: str) -> Software:
    """Browser and OS named by ua-parser (the uap-core rules, kept up to date upstream);
    None where it cannot tell. Cached: the same few browsers come back all day."""
    if not user_agent:
        return Software(None, None)
    from ua_parser import parse

    try:
        result = parse(user_agent)
    except Exception:
        # A parser bug must not cost an agent its list of chats: the raw string stays.
        logger.exception("could not parse the user agent %r", user_agent[:100])
        return Software(None, None)
    browser = result.user_agent
    system = result.os
    return Software(
        browser=_name(browser.family, browser.major) if browser else None,
        os=_name(system.family, system.major) if system else None,
    )


@functools.cache
def warm_up() -> None:
    """ua-parser compiles its rules on first use (about 0.2 s): do it on a thread of its
    own when a worker starts serving sockets, not on the database thread the first time
    an agent's list is built."""
    threading.Thread(
        target=describe_user_agent, args=("Mozilla/5.0",), name="ua-warm-up", daemon=True
    ).start()
