"""Keep chats whole when an agent profile goes away."""

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from .models import AgentProfile


@receiver(pre_delete, sender=AgentProfile)
def requeue_chats_of_deleted_agent(sender, instance: AgentProfile, **kwargs) -> None:
    # Without this, SET_NULL would leave active chats without an agent, which the
    # database refuses (active_has_agent_queued_has_none); visitors go back to the queue.
    from chat import services

    services.release_agent(agent_id=instance.pk)
