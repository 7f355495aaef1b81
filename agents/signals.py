"""Keep chats whole when an agent profile goes away; end a deactivated login's sockets."""

from django.conf import settings
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver

from .models import AgentProfile


@receiver(pre_delete, sender=AgentProfile)
def requeue_chats_of_deleted_agent(sender, instance: AgentProfile, **kwargs) -> None:
    # Without this, SET_NULL would leave active chats without an agent, which the
    # database refuses (active_has_agent_queued_has_none); visitors go back to the queue.
    from chat import services

    services.release_agent(agent_id=instance.pk)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def close_sockets_of_deactivated_agent(sender, instance, **kwargs) -> None:
    # The dashboard of a login switched off (admin, shell, `user.save()`) is closed now,
    # not at its next heartbeat. A bulk `update(is_active=False)` sends no signal; the
    # heartbeat loop still closes those sockets within SUPPORTDESK_HEARTBEAT_INTERVAL.
    if instance.is_active:
        return
    from chat import services

    services.disconnect_agent(user_id=instance.pk)
