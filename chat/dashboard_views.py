"""The agent dashboard's page: its shell; everything live goes over /ws/agent/."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from agents.models import AgentProfile

from . import attachments, languages
from .csp import policy, websocket_sources, with_csp
from .dashboard_text import dashboard_text


def dashboard_csp(request: HttpRequest) -> str:
    """Scripts, styles and the socket from this host only; never framed (clickjacking
    a signed-in agent's "Close chat" button)."""
    return policy(
        connect_src=["'self'", *websocket_sources(request)],
        # (calls) The call's streams in <video>, from the camera and the visitor.
        media_src=["'self'", "mediastream:", "blob:"],
        form_action=["'self'"],
        frame_ancestors=["'none'"],
    )


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    agent = AgentProfile.objects.filter(user=request.user).first()
    if agent is None:
        response = render(request, "agents/not_an_agent.html", status=403)
    else:
        response = render(
            request,
            "agents/dashboard.html",
            {
                "agent": agent,
                # Checked again by the server; the dashboard says it before uploading.
                "attachment_max_bytes": settings.SUPPORTDESK_ATTACHMENT_MAX_BYTES,
                "attachment_accept": attachments.ACCEPT,
                # The script's strings in the agent's language (t() in dom.js).
                "text_json": languages.script_json(dashboard_text()),
            },
        )
    return with_csp(response, dashboard_csp(request))
