"""Content-Security-Policy headers for our own pages (Django 5.2 has none built in).

Each page states its whole policy; nothing inline runs anywhere (`script-src 'self'`),
so injected markup in a chat message cannot execute even if it ever reached the DOM.
"""

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

BASE_POLICY = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def websocket_sources(request: HttpRequest) -> list[str]:
    """Same-host WebSocket URLs, spelled out: older browsers do not let 'self' cover ws:."""
    host = request.get_host()
    return [f"ws://{host}", f"wss://{host}"]


def policy(**overrides: list[str]) -> str:
    """A header value: BASE_POLICY with whole directives replaced (`frame_ancestors=[...]`)."""
    directives = dict(BASE_POLICY)
    for name, sources in overrides.items():
        directives[name.replace("_", "-")] = sources
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def with_csp(response: HttpResponse, header: str) -> HttpResponse:
    response["Content-Security-Policy"] = header
    return response


class DenyFramingByDefault(MiddlewareMixin):
    """Middleware: a response that states no CSP of its own (the admin, the login page)
    gets `frame-ancestors 'none'`, the modern twin of X-Frame-Options DENY, so no page of
    ours can be framed unless it says who may frame it (the widget frame does)."""

    HEADER = "Content-Security-Policy"

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if self.HEADER not in response and not getattr(response, "xframe_options_exempt", False):
            response[self.HEADER] = "frame-ancestors 'none'"
        return response
