"""Browser Origin checks for sockets and the visitor-session API."""

from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.translation import gettext_lazy as _


class NotAnOrigin(ValueError):
    """A value that is not an origin like https://shop.example."""


# Said in the active language (the admin's, on the site form; English on the command line).
_NOT_AN_ORIGIN = _("%(value)s is not an origin like https://shop.example")


def normalise_origin(value: str) -> str:
    """`https://Shop.example/` -> `https://shop.example`; `NotAnOrigin` for anything else
    (a path, a query, another scheme)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise NotAnOrigin(_NOT_AN_ORIGIN % {"value": repr(value)})
    if parts.query or parts.fragment:
        raise NotAnOrigin(_NOT_AN_ORIGIN % {"value": repr(value)})
    return f"{parts.scheme}://{parts.netloc.lower()}"


def header(scope: dict, name: bytes) -> str | None:
    """One request header of an ASGI scope. Sent more than once, its values are joined
    with ", " as HTTP (and Django) does, so a second `Origin` smuggled in next to an
    allowed one makes a value that matches no origin instead of being overlooked."""
    values = [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]
    return ", ".join(values) if values else None


def is_own_origin(origin: str, host: str | None) -> bool:
    """True when `origin` is this app itself: same host and port as the request's Host,
    and that host is one we serve. The scheme is not compared, so a TLS-terminating
    proxy in front of plain-HTTP workers still matches."""
    if not host or not origin:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
        return False
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def visitor_origin_allowed(
    origin: str | None, host: str | None, allowed_origins: list[str]
) -> bool:
    """Visitor traffic may come from one of the site's origins or from the widget frame
    (the app's own origin). No Origin at all means a non-browser client, which a
    browser-origin check cannot judge."""
    if origin is None:
        return True
    return origin in allowed_origins or is_own_origin(origin, host)
