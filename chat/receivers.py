"""What the chat core does when rows it does not own change: an agent profile edited or
deleted, a login switched off (Django's model signals), canned responses changed (the
agents app's own signal); connected in ChatConfig.ready. The agents app knows nothing of
chats; the chat core listens."""

from django.conf import settings
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save, pre_delete

from agents import signals as agent_signals
from agents.models import AgentProfile, CannedResponse

from . import events, selectors
from .conversations import closing, presence, routing


def route_after_a_profile_was_saved(sender, instance: AgentProfile, created: bool, **kwargs):
    # A raised capacity frees slots for the queue (the admin, the shell). A profile just
    # created has no heartbeat yet: its first socket routes for it.
    if not created:
        _route_on_commit(lambda: selectors.agent_site_ids(instance.pk))


def route_after_sites_changed(sender, instance, action: str, reverse: bool, **kwargs) -> None:
    # A new site for an agent (or an agent for a site) may have chats waiting.
    if action in ("post_add", "post_remove", "post_clear"):
        if reverse:  # edited from the site's side: `instance` is the site
            _route_on_commit(lambda: [instance.pk])
        else:
            _route_on_commit(lambda: selectors.agent_site_ids(instance.pk))


def _route_on_commit(site_ids) -> None:
    # Saved in a transaction (the admin's): route once it has committed.
    transaction.on_commit(lambda: routing.assign_queued(site_ids=site_ids()))


def requeue_chats_of_deleted_agent(sender, instance: AgentProfile, **kwargs) -> None:
    # Without this, SET_NULL would leave active chats without an agent, which the
    # database refuses (active_has_agent_queued_has_none); visitors go back to the queue.
    closing.release_agent(agent_id=instance.pk)


def close_sockets_of_deactivated_agent(sender, instance, **kwargs) -> None:
    # The dashboard of a login switched off (admin, shell, `user.save()`) is closed now,
    # not at its next heartbeat. A bulk `update(is_active=False)` sends no signal; the
    # heartbeat loop still closes those sockets within SUPPORTDESK_HEARTBEAT_INTERVAL.
    if not instance.is_active:
        presence.disconnect_agent(user_id=instance.pk)


def ring_dashboards_after_canned_responses_changed(
    sender, owner_ids: set[int | None], **kwargs
) -> None:
    # Sent inside the change's transaction: the ring waits for the commit, so a change
    # rolled back after it was announced rings nobody.
    for owner_id in owner_ids:
        events.emit_on_commit(events.CannedResponsesChanged(owner_id=owner_id))


def connect() -> None:
    post_save.connect(route_after_a_profile_was_saved, sender=AgentProfile)
    m2m_changed.connect(route_after_sites_changed, sender=AgentProfile.sites.through)
    pre_delete.connect(requeue_chats_of_deleted_agent, sender=AgentProfile)
    post_save.connect(close_sockets_of_deactivated_agent, sender=settings.AUTH_USER_MODEL)
    agent_signals.canned_responses_changed.connect(
        ring_dashboards_after_canned_responses_changed, sender=CannedResponse
    )
