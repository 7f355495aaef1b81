"""Admin for the email channel: the replies mailed (with their attempts and last error,
and "send again"), and the senders' addresses known as visitors. Sites' inbound
addresses are set on the site itself (chat/admin.py)."""

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .models import EmailContact, OutboundMail


@admin.register(OutboundMail)
class OutboundMailAdmin(admin.ModelAdmin):
    list_display = [
        "subject",
        "to_address",
        "conversation",
        "status",
        "attempts",
        "created_at",
        "sent_at",
    ]
    list_filter = ["status"]
    search_fields = ["to_address", "=message_id", "=conversation__id"]
    actions = ["send_again"]
    fields = [
        "conversation",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "sent_at",
        "next_attempt_at",
        "from_address",
        "to_address",
        "reply_to",
        "subject",
        "message_id",
        "in_reply_to",
        "references",
        "text",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made from agents' replies only

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description=_("Send again (at the next turn, under the same Message-ID)"))
    def send_again(self, request: HttpRequest, queryset) -> None:
        count = queryset.update(
            status=OutboundMail.Status.PENDING, next_attempt_at=timezone.now(), lease_until=None
        )
        again = ngettext(
            "%(count)s mail will be sent again.", "%(count)s mails will be sent again.", count
        )
        self.message_user(request, again % {"count": count}, messages.SUCCESS)


@admin.register(EmailContact)
class EmailContactAdmin(admin.ModelAdmin):
    list_display = ["address", "site", "visitor"]
    list_filter = ["site"]
    search_fields = ["address"]
    raw_id_fields = ["visitor"]
