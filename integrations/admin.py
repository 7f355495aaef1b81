"""Admin for API keys (made from the command line, revoked here), webhook endpoints (URL,
events, secret rotation, on/off) and their delivery log, with "send again"."""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import delivery, keys
from .endpoints import EVENT_TYPES, new_secret, rotate_secret, sync_interest
from .models import ApiKey, WebhookDelivery, WebhookEndpoint


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "site", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["site", ("revoked_at", admin.EmptyFieldListFilter)]
    readonly_fields = ["site", "prefix", "created_at", "last_used_at", "revoked_at"]
    fields = ["site", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key is shown once, when made: `manage.py create_api_key --site KEY`.
        return False

    @admin.action(description=_("Revoke selected keys (they stop working at once)"))
    def revoke(self, request: HttpRequest, queryset) -> None:
        for key in queryset:
            keys.revoke(key)
        count = queryset.count()
        revoked = ngettext("Revoked %(count)s key.", "Revoked %(count)s keys.", count)
        self.message_user(request, revoked % {"count": count}, messages.SUCCESS)


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(name, name) for name in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every event."),
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["site", "url", "events", "enabled"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["url", "site", "heard", "enabled", "failing_since", "delivery_log"]
    list_filter = ["enabled", "site"]
    readonly_fields = [
        "secret",
        "previous_secret_until",
        "failing_since",
        "disabled_reason",
        "created_at",
        "delivery_log",
    ]
    actions = ["rotate", "enable", "disable"]

    @admin.display(description=_("delivery log"))
    def delivery_log(self, endpoint: WebhookEndpoint) -> str:
        """The endpoint's deliveries by status, each a link to that part of the log
        (the log pages itself; an endpoint may have sent millions)."""
        if endpoint.pk is None:
            return "-"
        counts = dict(endpoint.deliveries.values_list("status").annotate(n=Count("id")).order_by())
        log = reverse("admin:integrations_webhookdelivery_changelist")
        links = [
            format_html(
                '<a href="{}?endpoint__id__exact={}">{}</a>', log, endpoint.pk, gettext("all")
            )
        ]
        links += [
            format_html(
                '<a href="{}?endpoint__id__exact={}&status__exact={}">{} {}</a>',
                log,
                endpoint.pk,
                status,
                counts[status],
                label.lower(),
            )
            for status, label in WebhookDelivery.Status.choices
            if counts.get(status)
        ]
        return format_html_join(" · ", "{}", ((link,) for link in links))

    @admin.display(description=_("events"))
    def heard(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events) or gettext("every event")

    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:
        with transaction.atomic():
            if not obj.secret:
                obj.secret = new_secret()
            if obj.enabled:
                obj.disabled_reason, obj.failing_since = "", None
            super().save_model(request, obj, form, change)
            sync_interest(obj.site_id)

    def delete_model(self, request, obj: WebhookEndpoint) -> None:
        with transaction.atomic():
            super().delete_model(request, obj)
            sync_interest(obj.site_id)

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            sites = set(queryset.values_list("site_id", flat=True))
            super().delete_queryset(request, queryset)
            for site_id in sites:
                sync_interest(site_id)

    @admin.action(description=_("Rotate the signing secret (the old one signs for 24 h more)"))
    def rotate(self, request: HttpRequest, queryset) -> None:
        for endpoint in queryset:
            rotate_secret(endpoint)
        self.message_user(
            request,
            gettext(
                "New secrets made: each endpoint's page shows its own. Deliveries carry both"
                " signatures for 24 hours."
            ),
            messages.SUCCESS,
        )

    @admin.action(description=_("Turn selected endpoints on"))
    def enable(self, request: HttpRequest, queryset) -> None:
        self._switch(queryset, enabled=True)

    @admin.action(description=_("Turn selected endpoints off"))
    def disable(self, request: HttpRequest, queryset) -> None:
        self._switch(queryset, enabled=False)

    def _switch(self, queryset, *, enabled: bool) -> None:
        with transaction.atomic():
            sites = set(queryset.values_list("site_id", flat=True))
            changes = {"enabled": enabled}
            if enabled:
                changes.update(disabled_reason="", failing_since=None)
            queryset.update(**changes)
            for site_id in sites:
                sync_interest(site_id)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: what was sent where, how it went, and "send again"."""

    list_display = [
        "id",
        "endpoint",
        "type",
        "conversation_id",
        "status",
        "attempts",
        "last_status_code",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "type", "endpoint"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
    actions = ["send_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_send_again_permission(self, request: HttpRequest) -> bool:
        # Whoever may change the endpoints may resend to them.
        return request.user.has_perm("integrations.change_webhookendpoint")

    @admin.action(description=_("Send again"), permissions=["send_again"])
    def send_again(self, request: HttpRequest, queryset) -> None:
        count = delivery.send_again(list(queryset.values_list("pk", flat=True)))
        again = ngettext(
            "%(count)s delivery goes out again now.",
            "%(count)s deliveries go out again now.",
            count,
        )
        self.message_user(request, again % {"count": count}, messages.SUCCESS)
