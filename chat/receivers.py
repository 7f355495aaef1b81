"""What the chat core does when rows it does not own change: an agent profile deleted,
a login switched off (Django's model signals, connected in ChatConfig.ready)."""

from django.conf import settings
from django.db.models.signals import post_save, pre_delete

from agents.models import AgentProfile

from .conversations import closing, presence


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


def connect() -> None:
    pre_delete.connect(requeue_chats_of_deleted_agent, sender=AgentProfile)
    post_save.connect(close_sockets_of_deactivated_agent, sender=settings.AUTH_USER_MODEL)
