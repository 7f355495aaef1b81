"""Admin for canned responses, the desk's shared ones and agents' own.

Agent profiles are edited in the chat core's admin (chat/admin.py): what it shows of an
agent, active chats and whether it may be deleted, is about conversations.
"""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import services as agent_services
from .models import CannedResponse


class SharedOrOwnFilter(admin.SimpleListFilter):
    title = _("shared")
    parameter_name = "shared"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("yes", _("Shared with every agent")), ("no", _("An agent's own"))]

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

    @admin.display(description=_("owner"), ordering="owner__display_name")
    def owner_or_shared(self, response: CannedResponse) -> str:
        return response.owner.display_name if response.owner else gettext("Shared")

    @admin.display(description=_("body"))
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
