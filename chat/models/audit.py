"""Who did what to whom in the admin and the dashboard: the audit log."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditLogEntry(models.Model):
    """Who did what to which record: transcripts viewed or exported, data purged or
    erased. Append-only; it names records by type and id and never copies their content,
    so erasing a visitor leaves nothing of them here."""

    class Action(models.TextChoices):
        VIEWED = "viewed", _("viewed")
        EXPORTED = "exported", _("exported")
        PURGED = "purged", _("purged")
        ERASED = "erased", _("erased")

    # NULL for management commands; `actor_label` keeps the name after a user is deleted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("actor"),
    )
    actor_label = models.CharField(_("who"), max_length=150)
    action = models.CharField(_("action"), max_length=10, choices=Action.choices)
    object_type = models.CharField(_("object type"), max_length=50)
    # Empty for entries about many records (an export); `details` then lists them.
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("when"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log entries")
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
            models.Index(fields=["-created_at"], name="audit_recent"),
        ]

    def __str__(self) -> str:
        target = f"{self.object_type} #{self.object_id}" if self.object_id else self.object_type
        return f"{self.actor_label} {self.action} {target}"

    @classmethod
    def record(
        cls,
        *,
        action: str,
        object_type: str,
        object_id: object = "",
        actor=None,
        actor_label: str = "",
        details: dict | None = None,
    ) -> "AuditLogEntry":
        """One entry; `actor` is a user (e.g. `request.user`), or None with a label
        such as "manage.py purge_transcripts"."""
        if actor is not None and not actor_label:
            actor_label = actor.get_username()
        return cls.objects.create(
            actor=actor,
            actor_label=actor_label or "system",
            action=action,
            object_type=object_type,
            object_id="" if object_id in ("", None) else str(object_id),
            details=details or {},
        )
