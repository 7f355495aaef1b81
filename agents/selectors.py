"""Reads of what agents own: the canned responses an agent may use and may edit.

Canned responses belong to agents (their own) or to the desk (shared); they have nothing
to do with a conversation, so they live here rather than in chat/selectors.py.
"""

from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .errors import CannedResponseNotFound, SharedResponsesForbidden
from .models import AgentProfile, CannedResponse


def may_edit_shared(agent_id: int) -> bool:
    """Supervisors (with an active login) look after the desk's shared snippets from the
    dashboard; everyone else only reads them (operators also edit them in the admin)."""
    return AgentProfile.objects.filter(
        pk=agent_id, is_supervisor=True, user__is_active=True
    ).exists()


def canned_response_dict(response: CannedResponse, *, editable: bool) -> dict:
    return {
        "id": response.id,
        "shortcut": response.shortcut,
        "body": response.body,
        "shared": response.owner_id is None,
        "editable": editable,
    }


def usable_canned_responses(agent_id: int, *, can_edit_shared: bool = False) -> list[dict]:
    """The snippets this agent may expand, by shortcut: its own and the shared ones, an
    own one hiding a shared one with the same shortcut. Other agents' snippets never
    appear. One query."""
    rows = CannedResponse.objects.filter(Q(owner_id=agent_id) | Q(owner__isnull=True))
    by_shortcut: dict[str, CannedResponse] = {}
    for response in rows:
        kept = by_shortcut.get(response.shortcut)
        if kept is None or kept.owner_id is None:
            by_shortcut[response.shortcut] = response
    return [
        canned_response_dict(response, editable=response.owner_id is not None or can_edit_shared)
        for _shortcut, response in sorted(by_shortcut.items())
    ]


def canned_for(agent_id: int) -> tuple[list[dict], bool]:
    """What the dashboard expands and lists in its manager: the usable snippets, and
    whether this agent may edit the shared ones."""
    can_edit_shared = may_edit_shared(agent_id)
    return usable_canned_responses(agent_id, can_edit_shared=can_edit_shared), can_edit_shared


def canned_response_for_editing(
    agent_id: int, response_id: int, *, for_update: bool = False
) -> CannedResponse:
    """The one access check for changing a canned response: the agent's own, or a shared
    one if the agent may edit shared ones (`forbidden` otherwise: every agent sees shared
    snippets, so there is nothing to hide). Another agent's snippet, or none, is
    `not_found`, the same answer either way, so ids cannot be probed."""
    rows = CannedResponse.objects.filter(Q(owner_id=agent_id) | Q(owner__isnull=True))
    if for_update:
        rows = rows.select_for_update()
    response = rows.filter(pk=response_id).first()
    if response is None:
        raise CannedResponseNotFound(_("No such canned response."))
    if response.owner_id is None and not may_edit_shared(agent_id):
        raise SharedResponsesForbidden(
            _("Only a supervisor or an admin may change shared responses.")
        )
    return response
