"""Admin for sites, visitors, agent profiles and conversations. Transcripts are records:
conversation pages are read-only, and the one change an operator makes, closing, goes
through services."""

from datetime import date, datetime, time, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.dateparse import parse_date
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from agents.models import AgentProfile

from . import analytics, charts, csp, origins, transcripts
from .conversations import closing, identity
from .conversations.actors import Actor
from .errors import ConversationClosed, NotFound
from .models import Assignment, AuditLogEntry, Conversation, Message, Site, SiteText, Visitor
from .templatetags.reports import seconds


class SiteForm(forms.ModelForm):
    """Allowed origins edited one per line instead of as raw JSON, normalised the way
    `create_site` does it, so the admin cannot store an origin no browser will send."""

    allowed_origins = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        required=False,
        help_text=_(
            "One origin per line, e.g. https://shop.example (scheme and host, "
            "port if not the default; no path)."
        ),
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
            "widget_language",
            "retention_days",
            "sneak_peek",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        initial = self.initial.get("allowed_origins")
        if isinstance(initial, list):
            self.initial["allowed_origins"] = "\n".join(initial)

    def clean_allowed_origins(self) -> list[str]:
        cleaned, errors = [], []
        for line in self.cleaned_data["allowed_origins"].splitlines():
            if not line.strip():
                continue
            try:
                cleaned.append(origins.normalise_origin(line))
            except origins.NotAnOrigin as exc:
                errors.append(str(exc))
        if errors:
            raise ValidationError(errors)
        return list(dict.fromkeys(cleaned))


# The admin says whose it is.
admin.site.site_header = _("supportdesk administration")
admin.site.site_title = _("supportdesk admin")


class SiteTextInline(admin.TabularInline):
    """The site's own greeting and offline text per language (chat/languages.py)."""

    model = SiteText
    extra = 0
    verbose_name = _("widget text in one language")
    verbose_name_plural = _("widget texts per language (empty fields keep the default)")


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    form = SiteForm
    inlines = [SiteTextInline]
    list_display = ["name", "key", "enabled", "origins", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "=key"]
    readonly_fields = ["key", "created_at", "identity_verification"]
    fieldsets = [
        (None, {"fields": ["name", "key", "allowed_origins", "enabled", "created_at"]}),
        (
            _("Widget"),
            {
                "fields": [
                    "widget_color",
                    "widget_greeting",
                    "widget_position",
                    "widget_language",
                ]
            },
        ),
        (_("Queue"), {"fields": ["typical_chat_minutes", "agents_pick_from_queue"]}),
        (_("Data retention"), {"fields": ["retention_days"]}),
        # Open sockets keep the value they said hello with; the widget discloses it.
        (_("Privacy"), {"fields": ["sneak_peek"]}),
        (_("Email channel"), {"fields": ["inbound_email"]}),
        (_("Identity verification"), {"fields": ["identity_verification"]}),
    ]
    actions = ["new_identity_secret"]

    @admin.display(description=_("secret"))
    def identity_verification(self, site: Site) -> str:
        """The site's HMAC secret (its server signs user ids with it; docs/api.md)."""
        if not site.identity_secret:
            return gettext("Off. Turn it on with the action “Make a new identity secret”.")
        return site.identity_secret

    @admin.action(
        description=_("Make a new identity secret (the old one's signatures stop holding)")
    )
    def new_identity_secret(self, request: HttpRequest, queryset) -> None:
        for site in queryset:
            identity.rotate_secret(site)
        self.message_user(
            request, gettext("New secrets made: each site's page shows its own."), messages.SUCCESS
        )

    @admin.display(description=_("allowed origins"))
    def origins(self, site: Site) -> str:
        return ", ".join(site.allowed_origins)


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    # token_hash is never shown: it is not in `fields`, the list or the search.
    list_display = ["id", "name", "email", "verified", "site", "first_seen", "last_seen"]
    list_filter = ["site", ("verified_at", admin.EmptyFieldListFilter)]
    list_select_related = ["site"]
    search_fields = ["id__exact", "name", "email", "=user_id"]
    fields = [
        "site",
        "name",
        "email",
        "user_id",
        "verified_at",
        "attributes",
        "first_seen",
        "last_seen",
    ]
    readonly_fields = ["site", "user_id", "verified_at", "first_seen", "last_seen"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Another device of a verified user only holds a token: the person is its record.
        return super().get_queryset(request).filter(merged_into__isnull=True)

    @admin.display(boolean=True, description=_("verified"))
    def verified(self, visitor: Visitor) -> bool:
        return visitor.verified_at is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Visitors come from the widget's session API, which issues their token.
        return False


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    """Who answers chats, for which sites, how many at once. The agents app owns the rows;
    their admin is the core's, since what it shows of an agent (its active chats, whether
    it may be deleted) is about conversations. Presence (status, heartbeat) belongs to
    the agent's own sockets and is shown read-only; capacity and sites are edited here,
    and a change hands queued chats out at once (chat/receivers.py)."""

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

    @admin.display(description=_("active chats"), ordering="_active_chats")
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


class MessageInline(admin.TabularInline):
    """The transcript, oldest first; nothing in it can be added, changed or removed.
    Drawn as a chat (speech bubbles, lifecycle events between them) by its template from
    the timeline `ConversationAdmin.render_change_form` builds out of these messages."""

    model = Message
    template = "admin/chat/conversation/transcript.html"
    fields = ["seq", "sender", "sender_agent", "body", "created_at"]
    readonly_fields = fields
    ordering = ["seq"]
    extra = 0
    can_delete = False
    verbose_name = _("message")
    verbose_name_plural = _("transcript")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("sender_agent", "attachment")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class StartedBetweenFilter(admin.ListFilter):
    """Conversations started from one date to another (both included, current time
    zone), typed into two date fields instead of picked from fixed choices."""

    title = _("date started")
    template = "admin/chat/conversation/date_range_filter.html"
    parameters = ("started_from", "started_to")

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.dates: dict[str, date] = {}
        for name in self.parameters:
            if name not in params:
                continue
            value = params.pop(name)[-1]
            self.used_parameters[name] = value
            try:
                parsed = parse_date(value) if value else None
            except ValueError:
                parsed = None
            if value and parsed is None:
                raise IncorrectLookupParameters(
                    gettext("%(name)s is not a date like 2026-01-31") % {"name": name}
                )
            if parsed is not None:
                self.dates[name] = parsed

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return list(self.parameters)

    def queryset(self, request, queryset):
        start, end = self.dates.get("started_from"), self.dates.get("started_to")
        if start:
            queryset = queryset.filter(created_at__gte=_midnight(start))
        if end:
            queryset = queryset.filter(created_at__lt=_midnight(end + timedelta(days=1)))
        return queryset

    def choices(self, changelist):
        # One "choice": the form, carrying every other active parameter along.
        yield {
            "started_from": self.used_parameters.get("started_from", ""),
            "started_to": self.used_parameters.get("started_to", ""),
            "hidden": [
                (name, value)
                for name, value in changelist.params.items()
                if name not in self.parameters and name not in ("p", "e")
            ],
            "clear_url": changelist.get_query_string(remove=list(self.parameters)),
            "active": bool(self.dates),
        }


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class RatingFilter(admin.SimpleListFilter):
    title = _("rating")
    parameter_name = "rating"

    def lookups(self, request, model_admin):
        return [
            *((str(score), "★" * score) for score in (5, 4, 3, 2, 1)),
            ("low", _("1-2 (unhappy)")),
            ("none", _("Not rated")),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value in {"1", "2", "3", "4", "5"}:
            return queryset.filter(rating__score=int(value))
        if value == "low":
            return queryset.filter(rating__score__lte=2)
        if value == "none":
            return queryset.filter(rating__isnull=True)
        return queryset


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    # Compact enough for a 1,366 px screen beside the filters: one short start time and
    # the wait, instead of three full dates.
    list_display = [
        "id",
        "site",
        "visitor",
        "agent",
        "status",
        "started",
        "waited",
        "messages_sent",
        "rating_score",
    ]
    list_filter = ["status", "channel", "site", "agent", StartedBetweenFilter, RatingFilter]
    list_select_related = ["site", "visitor", "agent", "rating"]
    date_hierarchy = "created_at"
    # Message bodies are searched by get_search_results (full text on PostgreSQL).
    search_fields = ["id__exact", "visitor__name", "visitor__email"]
    search_help_text = _(
        "Finds words in messages, a visitor's name or email, or a conversation id."
    )
    change_form_template = "admin/chat/conversation/change_form.html"
    change_list_template = "admin/chat/conversation/change_list.html"
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
    actions = ["close_conversations", "export_csv", "export_json"]

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

    @admin.action(description=_("Close selected conversations"), permissions=["change"])
    def close_conversations(self, request: HttpRequest, queryset: QuerySet) -> None:
        closed = skipped = 0
        for conversation_id in queryset.values_list("id", flat=True):
            try:
                closing.close_conversation(Actor.system(), conversation_id=conversation_id)
            except (ConversationClosed, NotFound):
                skipped += 1
            else:
                closed += 1
        done = ngettext("Closed %(count)s conversation.", "Closed %(count)s conversations.", closed)
        self.message_user(request, done % {"count": closed}, messages.SUCCESS)
        if skipped:
            already = ngettext(
                "%(count)s conversation was already closed.",
                "%(count)s conversations were already closed.",
                skipped,
            )
            self.message_user(request, already % {"count": skipped}, messages.WARNING)

    # --- transcript review ----------------------------------------------------------

    @admin.display(description=_("started"), ordering="created_at")
    def started(self, conversation: Conversation) -> str:
        # Month names in the admin's language (strftime's would be the C locale's).
        return format_date(timezone.localtime(conversation.created_at), "d M Y H:i")

    @admin.display(description=_("waited"))
    def waited(self, conversation: Conversation) -> str:
        # Until the first agent had it (a conversation from before turns were
        # recorded: its last assignment).
        first = conversation.first_assigned_at or conversation.assigned_at
        return seconds(first - conversation.created_at if first else None)

    @admin.display(description=_("messages"), ordering="last_seq")
    def messages_sent(self, conversation: Conversation) -> int:
        return conversation.last_seq

    @admin.display(description=_("rating"), ordering="rating__score")
    def rating_score(self, conversation: Conversation) -> str:
        rating = getattr(conversation, "rating", None)
        return "★" * rating.score if rating else ""

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            # A subquery, not a join: a conversation with many matching messages is
            # listed once, without DISTINCT over the whole list.
            found |= queryset.filter(pk__in=transcripts.conversations_mentioning(term))
        return found, may_have_duplicates

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            AuditLogEntry.record(
                action=AuditLogEntry.Action.VIEWED,
                object_type="conversation",
                object_id=object_id,
                actor=request.user,
            )
        # Message bodies are visitor input: nothing inline may run on this page.
        return csp.with_csp(response, csp.policy())

    def changelist_view(self, request: HttpRequest, extra_context=None):
        response = super().changelist_view(request, extra_context)
        return csp.with_csp(response, csp.policy())

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            # The messages the transcript inline already loaded, in seq order.
            messages_ = [
                form.original
                for formset in context.get("inline_admin_formsets", [])
                if formset.opts.model is Message
                for form in formset
                if form.original is not None
            ]
            notes = obj.notes.select_related("author").order_by("id")
            turns = list(obj.assignments.select_related("agent"))
            context["timeline"] = transcripts.timeline(obj, messages_, notes, turns)
            context["timings"] = transcripts.timings(obj, messages_, turns)
            context["rating"] = getattr(obj, "rating", None)
            context["message_count"] = len(messages_)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # A transcript page shows who, where and the rating: one query, not four; the
        # list's wait reads each conversation's first turn in the same query.
        first_turn = Assignment.objects.filter(conversation=OuterRef("pk")).order_by("started_at")
        return (
            super()
            .get_queryset(request)
            .select_related("site", "visitor", "agent", "rating")
            .annotate(first_assigned_at=Subquery(first_turn.values("started_at")[:1]))
        )

    # --- exports --------------------------------------------------------------------

    @admin.action(description=_("Export selected conversations as CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        return self._export(request, queryset, "csv")

    @admin.action(description=_("Export selected conversations as JSON"), permissions=["view"])
    def export_json(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        return self._export(request, queryset, "json")

    def _export(self, request: HttpRequest, queryset: QuerySet, kind: str):
        ids = list(queryset.order_by("pk").values_list("pk", flat=True).distinct())
        AuditLogEntry.record(
            action=AuditLogEntry.Action.EXPORTED,
            object_type="conversation",
            actor=request.user,
            details={"format": kind, "count": len(ids), "conversation_ids": ids},
        )
        stream = transcripts.export_csv if kind == "csv" else transcripts.export_json
        content_type = "text/csv" if kind == "csv" else "application/json"
        response = StreamingHttpResponse(
            stream(queryset), content_type=f"{content_type}; charset=utf-8"
        )
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="conversations-{stamp}.{kind}"'
        return response


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(admin.ModelAdmin):
    """Read-only: an audit log nobody can edit from the admin."""

    list_display = ["created_at", "actor_label", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_label", "=object_id"]
    date_hierarchy = "created_at"
    fields = ["created_at", "actor", "actor_label", "action", "object_type", "object_id", "details"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


# --- analytics page (/admin/analytics/, see supportdesk/urls.py) -------------------------


class AnalyticsForm(forms.Form):
    start = forms.DateField(
        label=_("From"), widget=forms.DateInput(attrs={"type": "date"}), required=False
    )
    end = forms.DateField(
        label=_("To"), widget=forms.DateInput(attrs={"type": "date"}), required=False
    )
    site = forms.ModelChoiceField(
        Site.objects.order_by("name"), label=_("Site"), required=False, empty_label=_("All sites")
    )
    agent = forms.ModelChoiceField(
        AgentProfile.objects.order_by("display_name"),
        label=_("Agent"),
        required=False,
        empty_label=_("All agents"),
    )

    MAX_DAYS = 366

    def clean(self):
        data = super().clean()
        today = timezone.localdate()
        end = data.get("end") or today
        start = data.get("start") or end - timedelta(days=29)
        if start > end:
            raise ValidationError(gettext("The start date is after the end date."))
        if (end - start).days >= self.MAX_DAYS:
            raise ValidationError(
                gettext("Choose at most %(days)s days.") % {"days": self.MAX_DAYS}
            )
        data["start"], data["end"] = start, end
        return data

    def scope(self) -> analytics.Scope:
        data = self.cleaned_data
        return analytics.Scope(
            start=data["start"],
            end=data["end"],
            site_id=data["site"].pk if data.get("site") else None,
            agent_id=data["agent"].pk if data.get("agent") else None,
        )


def analytics_view(request: HttpRequest) -> HttpResponse:
    """Staff only (wrapped in `admin.site.admin_view`), and only for those who may read
    conversations: the numbers rank agents and sites."""
    if not request.user.has_perm("chat.view_conversation"):
        raise PermissionDenied
    # The last 30 days unless told otherwise, shown in the form; an invalid form shows
    # its errors over that default.
    default = analytics.Scope.last_days(30)
    form = AnalyticsForm({"start": default.start, "end": default.end, **request.GET.dict()})
    scope = form.scope() if form.is_valid() else default
    report = analytics.report(scope)
    days = report.per_day
    # Dates with the admin's language's month and day names (dateformat, not strftime).
    day_chart = charts.bar_chart(
        gettext("Chats per day"),
        [format_date(d.day, "d M") for d in days],
        [
            ("sd-bar-answered", gettext("Answered or open"), [d.chats - d.missed for d in days]),
            ("sd-bar-missed", gettext("Missed"), [d.missed for d in days]),
        ],
        label_every=max(1, len(days) // 10),
        width=900,
        describe=lambda i: _day_bar(days[i]),
    )
    hour_chart = charts.bar_chart(
        gettext("Chats by hour started"),
        [f"{h:02d}" for h in range(24)],
        [("sd-bar-answered", gettext("Chats"), report.hours)],
        label_every=3,
        width=480,
        describe=lambda h: f"{h:02d}:00-{h:02d}:59: {_chats(report.hours[h])}",
    )
    scores = list(report.csat)
    csat_chart = charts.bar_chart(
        gettext("Ratings"),
        [f"{s} ★" for s in scores],
        [("sd-bar-csat", gettext("Ratings"), [report.csat[s] for s in scores])],
        width=480,
        describe=lambda i: _stars_bar(scores[i], report.csat[scores[i]]),
    )
    context = {
        **admin.site.each_context(request),
        "title": gettext("Support analytics"),
        "form": form,
        "report": report,
        "day_chart": day_chart,
        "hour_chart": hour_chart,
        "csat_chart": csat_chart,
        "hours": list(enumerate(report.hours)),
        "timezone": timezone.get_current_timezone_name(),
    }
    response = TemplateResponse(request, "admin/chat/analytics.html", context)
    return csp.with_csp(response, csp.policy())


def _chats(count: int) -> str:
    return ngettext("%(count)s chat", "%(count)s chats", count) % {"count": count}


def _day_bar(day) -> str:
    """What a day's bar says to a screen reader: "Mon 7 Dec: 12 chats, 2 missed"."""
    missed = ngettext("%(count)s missed", "%(count)s missed", day.missed) % {"count": day.missed}
    return f"{format_date(day.day, 'D j M')}: {_chats(day.chats)}, {missed}"


def _stars_bar(score: int, count: int) -> str:
    ratings = ngettext("%(count)s rating", "%(count)s ratings", count) % {"count": count}
    stars = ngettext("%(score)s star", "%(score)s stars", score) % {"score": score}
    return f"{stars}: {ratings}"
