"""Admin for sites, visitors and conversations. Transcripts are records: conversation
pages are read-only, and the one change an operator makes, closing, goes through services."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db.models import QuerySet
from django.http import HttpRequest

from . import services
from .management.commands.create_site import normalise_origin
from .models import Conversation, Message, Site, Visitor


class SiteForm(forms.ModelForm):
    """Allowed origins edited one per line instead of as raw JSON, normalised the way
    `create_site` does it, so the admin cannot store an origin no browser will send."""

    allowed_origins = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        required=False,
        help_text="One origin per line, e.g. https://shop.example (scheme and host, "
        "port if not the default; no path).",
    )

    class Meta:
        model = Site
        fields = [
            "name",
            "allowed_origins",
            "enabled",
            "widget_color",
            "widget_greeting",
            "widget_position",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        initial = self.initial.get("allowed_origins")
        if isinstance(initial, list):
            self.initial["allowed_origins"] = "\n".join(initial)

    def clean_allowed_origins(self) -> list[str]:
        origins, errors = [], []
        for line in self.cleaned_data["allowed_origins"].splitlines():
            if not line.strip():
                continue
            try:
                origins.append(normalise_origin(line))
            except CommandError as exc:
                errors.append(str(exc))
        if errors:
            raise ValidationError(errors)
        return list(dict.fromkeys(origins))


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    form = SiteForm
    list_display = ["name", "key", "enabled", "origins", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "=key"]
    readonly_fields = ["key", "created_at"]
    fieldsets = [
        (None, {"fields": ["name", "key", "allowed_origins", "enabled", "created_at"]}),
        ("Widget", {"fields": ["widget_color", "widget_greeting", "widget_position"]}),
    ]

    @admin.display(description="allowed origins")
    def origins(self, site: Site) -> str:
        return ", ".join(site.allowed_origins)


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    # token_hash is never shown: it is not in `fields`, the list or the search.
    list_display = ["id", "name", "email", "site", "first_seen", "last_seen"]
    list_filter = ["site"]
    list_select_related = ["site"]
    search_fields = ["id__exact", "name", "email"]
    fields = ["site", "name", "email", "first_seen", "last_seen"]
    readonly_fields = ["site", "first_seen", "last_seen"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Visitors come from the widget's session API, which issues their token.
        return False


class MessageInline(admin.TabularInline):
    """The transcript, oldest first; nothing in it can be added, changed or removed."""

    model = Message
    fields = ["seq", "sender", "sender_agent", "body", "created_at"]
    readonly_fields = fields
    ordering = ["seq"]
    extra = 0
    can_delete = False
    verbose_name = "message"
    verbose_name_plural = "transcript"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("sender_agent")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "site",
        "visitor",
        "agent",
        "status",
        "created_at",
        "assigned_at",
        "closed_at",
        "last_seq",
    ]
    list_filter = ["status", "site", "agent"]
    list_select_related = ["site", "visitor", "agent"]
    date_hierarchy = "created_at"
    search_fields = ["id__exact", "visitor__name", "visitor__email", "messages__body"]
    ordering = ["-created_at", "-id"]
    fields = [
        "site",
        "visitor",
        "agent",
        "status",
        "closed_by",
        "created_at",
        "queued_at",
        "assigned_at",
        "closed_at",
        "last_activity_at",
        "last_seq",
        "visitor_read_seq",
        "agent_read_seq",
        "agent_unread",
    ]
    readonly_fields = fields
    inlines = [MessageInline]
    actions = ["close_conversations"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Conversations are opened by a visitor's first message, never by hand.
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # A conversation's page is a read-only record (an edited status would skip the
        # routing and the frames both sides wait for). The model-wide permission stays,
        # because it is what allows the close action below.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Transcripts are records; deleting an open one would also strand its sockets.
        return False

    @admin.action(description="Close selected conversations", permissions=["change"])
    def close_conversations(self, request: HttpRequest, queryset: QuerySet) -> None:
        closed = skipped = 0
        for conversation_id in queryset.values_list("id", flat=True):
            try:
                services.close_by_admin(conversation_id=conversation_id)
            except (services.ConversationClosed, services.NotFound):
                skipped += 1
            else:
                closed += 1
        self.message_user(request, f"Closed {closed} conversation(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} conversation(s) were already closed.", messages.WARNING
            )
