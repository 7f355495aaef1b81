"""Changes to what agents own: their canned responses (and the desk's shared ones).

Plain functions with keyword-only arguments, one short transaction each. Every change
is announced (`signals.canned_responses_changed`): the chat core rings the affected
agents' sockets after commit, and they read their lists afresh, so the database stays
the only record.
"""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from wording import grouped_number, lazy_format

from . import signals
from .errors import (
    BadShortcut,
    BodyTooLong,
    DuplicateShortcut,
    EmptyBody,
    SharedResponsesForbidden,
    TooManyCannedResponses,
)
from .models import CannedResponse
from .selectors import canned_response_dict, canned_response_for_editing, may_edit_shared

# A guard against a runaway script filling the table (every change resends the whole
# list to each of the agent's tabs), not a business rule.
MAX_OWN_CANNED_RESPONSES = 200


def clean_shortcut(value: str) -> str:
    """`/Refund ` → `refund`; else `bad_shortcut`. The rule is the model field's, so the
    admin and the dashboard accept the same shortcuts."""
    shortcut = value.strip().removeprefix("/").lower()
    field = CannedResponse._meta.get_field("shortcut")
    try:
        if not shortcut or len(shortcut) > field.max_length:
            raise ValidationError("length")
        field.run_validators(shortcut)
    except ValidationError:
        raise BadShortcut(
            lazy_format(
                _(
                    "A shortcut is 1-%(limit)s lowercase letters, digits, - or _,"
                    " starting with a letter or digit (e.g. refund)."
                ),
                limit=field.max_length,
            )
        ) from None
    return shortcut


def clean_body(value: str) -> str:
    """Trimmed, 1-10,000 characters: the body becomes a message, with a message's limits."""
    body = value.strip()
    if not body:
        raise EmptyBody(_("body is empty."))
    if len(body) > CannedResponse.MAX_BODY_CHARS:
        raise BodyTooLong(
            lazy_format(
                _("body is over %(limit)s characters."),
                limit=grouped_number(CannedResponse.MAX_BODY_CHARS),
            )
        )
    return body


def _duplicate(shortcut: str) -> DuplicateShortcut:
    return DuplicateShortcut(
        lazy_format(
            _("There is already a response with the shortcut /%(shortcut)s."),
            shortcut=shortcut,
        )
    )


def _save(response: CannedResponse) -> None:
    """Save, turning the unique constraint's refusal into `duplicate_shortcut`.

    The exists() checks before it give the usual answer; this one covers the race they
    leave: two tabs saving the same shortcut at once both pass the check, and the
    constraint (canned_shortcut_unique_per_agent / _shared) refuses the second insert.
    The savepoint keeps the outer transaction usable after that refusal."""
    try:
        with transaction.atomic():
            response.save()
    except IntegrityError:
        raise _duplicate(response.shortcut) from None


def _ring(owner_id: int | None) -> None:
    announce_canned_change(owner_ids={owner_id})


def create_canned_response(
    *, agent_id: int, shortcut: str, body: str, shared: bool = False
) -> dict:
    """A new snippet of this agent's own, or (`shared`, supervisors only) a shared one."""
    shortcut = clean_shortcut(shortcut)
    body = clean_body(body)
    with transaction.atomic():
        if shared and not may_edit_shared(agent_id):
            raise SharedResponsesForbidden(
                _("Only a supervisor or an admin may add shared responses.")
            )
        owner_id = None if shared else agent_id
        siblings = CannedResponse.objects.filter(owner_id=owner_id)
        if siblings.filter(shortcut=shortcut).exists():
            raise _duplicate(shortcut)
        # Two tabs creating at once may both pass this count and end one past the cap;
        # it is a guard, not an invariant, so no lock is taken for it.
        if owner_id is not None and siblings.count() >= MAX_OWN_CANNED_RESPONSES:
            raise TooManyCannedResponses(
                lazy_format(
                    ngettext_lazy(
                        "You have %(count)s canned response; delete it first.",
                        "You have %(count)s canned responses; delete one first.",
                        MAX_OWN_CANNED_RESPONSES,
                    ),
                    count=MAX_OWN_CANNED_RESPONSES,
                )
            )
        response = CannedResponse(owner_id=owner_id, shortcut=shortcut, body=body)
        _save(response)
        _ring(owner_id)
    return canned_response_dict(response, editable=True)


def update_canned_response(*, agent_id: int, response_id: int, shortcut: str, body: str) -> dict:
    """Change the shortcut and body of a snippet this agent may edit (its own; shared
    ones for supervisors). Ownership never changes here."""
    shortcut = clean_shortcut(shortcut)
    body = clean_body(body)
    with transaction.atomic():
        # Locked: two tabs saving the same snippet are applied one after the other.
        response = canned_response_for_editing(agent_id, response_id, for_update=True)
        clash = CannedResponse.objects.filter(owner_id=response.owner_id, shortcut=shortcut)
        if clash.exclude(pk=response.pk).exists():
            raise _duplicate(shortcut)
        response.shortcut = shortcut
        response.body = body
        _save(response)
        _ring(response.owner_id)
    return canned_response_dict(response, editable=True)


def delete_canned_response(*, agent_id: int, response_id: int) -> None:
    """Delete a snippet this agent may edit."""
    with transaction.atomic():
        response = canned_response_for_editing(agent_id, response_id, for_update=True)
        owner_id = response.owner_id
        response.delete()
        _ring(owner_id)


def announce_canned_change(*, owner_ids: set[int | None]) -> None:
    """Say whose lists changed, inside the change's transaction: here, and for changes
    made elsewhere (the admin)."""
    signals.canned_responses_changed.send(sender=CannedResponse, owner_ids=owner_ids)
