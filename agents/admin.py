"""Admin for agent profiles: who answers chats, for which sites, how many at once.

Presence (status, heartbeat) belongs to the agent's own sockets and is shown read-only;
capacity and sites are edited here, and a change hands queued chats out at once
(chat/receivers.py).
"""

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from chat.models import Conversation

from . import services as agent_services
from .models import AgentProfile, CannedResponse


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = [
        "display_name",
        "user",
        "capacity",
        "active_chats",
        "status",
        "last_heartbeat",
    ]
    list_filter = ["status", "is_supervisor", "sites"]
    list_select_related = ["user"]
    search_fields = ["display_name", "user__username", "user__email"]
    fields = [
        "user",
        "display_name",
        "capacity",
        "sites",
        "is_supervisor",
        "status",
        "last_heartbeat",
        "last_assigned_at",
    ]
    filter_horizontal = ["sites"]
    autocomplete_fields = ["user"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                _active_chats=Count(
                    "conversations",
                    filter=Q(conversations__status=Conversation.Status.ACTIVE),
                )
            )
        )

    @admin.display(description="active chats", ordering="_active_chats")
    def active_chats(self, agent: AgentProfile) -> int:
        return agent._active_chats

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        # An admin's "available" would not reach the agent's dashboard and a stale
        # heartbeat would still keep the agent unrouted: presence is the agent's to set.
        readonly = ["status", "last_heartbeat", "last_assigned_at"]
        return readonly if obj is None else ["user", *readonly]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Deleting a profile sets its conversations' agent to NULL, which an active
        # conversation may not have (the database refuses it): close them first.
        if obj is not None and obj.conversations.filter(status=Conversation.Status.ACTIVE).exists():
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict:
        # The bulk delete skips the per-agent check above.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class SharedOrOwnFilter(admin.SimpleListFilter):
    title = "shared"
    parameter_name = "shared"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("yes", "Shared with every agent"), ("no", "An agent's own")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(owner__isnull=True)
        if self.value() == "no":
            return queryset.filter(owner__isnull=False)
        return queryset


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    """Shared snippets are the desk's and are kept here (supervisors may also edit them
    from the dashboard); an agent's own ones are shown for support, and editable."""

    list_display = ["__str__", "owner_or_shared", "short_body", "updated_at"]
    list_filter = [SharedOrOwnFilter, "owner"]
    list_select_related = ["owner"]
    search_fields = ["shortcut", "body", "owner__display_name", "owner__user__username"]
    autocomplete_fields = ["owner"]
    fields = ["owner", "shortcut", "body", "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]
    ordering = ["shortcut", "owner__display_name"]

    @admin.display(description="owner", ordering="owner__display_name")
    def owner_or_shared(self, response: CannedResponse) -> str:
        return response.owner.display_name if response.owner else "Shared"

    @admin.display(description="body")
    def short_body(self, response: CannedResponse) -> str:
        return response.body if len(response.body) <= 80 else response.body[:79] + "…"

    # Open dashboards hear of every change (the service rings after commit), whoever
    # owned the snippet before and after the change.
    def save_model(self, request: HttpRequest, obj: CannedResponse, form, change: bool) -> None:
        owners = {obj.owner_id}
        if change:
            owners |= set(CannedResponse.objects.filter(pk=obj.pk).values_list("owner", flat=True))
        super().save_model(request, obj, form, change)
        agent_services.announce_canned_change(owner_ids=owners)

    def delete_model(self, request: HttpRequest, obj: CannedResponse) -> None:
        owners = {obj.owner_id}
        super().delete_model(request, obj)
        agent_services.announce_canned_change(owner_ids=owners)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        owners = set(queryset.values_list("owner", flat=True))
        super().delete_queryset(request, queryset)
        agent_services.announce_canned_change(owner_ids=owners)
