from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KbConfig(AppConfig):
    """The knowledge base and its bot: articles per site, import_kb, the bot that answers
    a new chat first, plugged into the core through its domain events."""

    name = "kb"
    verbose_name = _("Knowledge base and bot")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import events, health
        from chat.conversations import bots as core_bots
        from chat.protocol import inbound
        from chat.transport import socket

        from . import bot, search
        from .assist import handler as assist

        core_bots.register_first_responder(bot.answers_first)
        events.subscribe(events.MessageCreated, bot.message_created)
        events.subscribe(events.BotHandedOff, bot.handed_off)
        # In the core's transaction: the verdict is stored with the check, or not at all.
        events.subscribe(events.BotAnswerRated, bot.answer_rated, in_transaction=True)
        health.register("bot", lambda: {"mode": search.mode()})
        socket.register_handler(inbound.AssistSuggest, assist.on_assist_suggest)
