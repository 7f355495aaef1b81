"""System messages keep a code and parameters beside their English `body`
(chat/system_messages.py); the rows stored before get theirs from the sentence."""

from django.db import migrations, models

# The sentences as they were written when this migration was made: a later change to
# chat/system_messages.py must not change what this migration does.
SENTENCES = {
    "transferred": "You are now chatting with %(name)s.",
    "transferring": "You are being transferred to another agent. Please wait a moment.",
    "requeued": "Your agent was disconnected. You are back at the front of the queue.",
    "idle_closed": "This conversation was closed after a period of inactivity.",
    "call_started_video": "%(name)s started a video call.",
    "call_started_audio": "%(name)s started an audio call.",
    "call_joined": "The visitor joined the call.",
    "call_declined": "The visitor declined the call.",
    "call_not_answered": "The call was not answered.",
    "call_cancelled": "The call ended before it was answered.",
    "call_ended": "The call ended after %(duration)s.",
    "call_lost": "The call ended after %(duration)s (the connection was lost).",
}
BATCH = 1000


def code_existing_rows(apps, schema_editor):
    """Recognise each stored system sentence; one it does not know keeps no code and is
    shown as written. Batched, so a large transcript table is not held in memory."""
    import re

    patterns = [
        (
            code,
            re.compile(
                re.escape(text)
                .replace(re.escape("%(name)s"), "(?P<name>.+)")
                .replace(re.escape("%(duration)s"), "(?P<duration>[0-9:]+)")
                + r"\Z"
            ),
        )
        for code, text in SENTENCES.items()
    ]
    Message = apps.get_model("chat", "Message")
    rows = Message.objects.filter(sender="system", system_code="").only("id", "body")
    changed = []
    for message in rows.iterator(chunk_size=BATCH):
        for code, pattern in patterns:
            if match := pattern.match(message.body):
                message.system_code = code
                message.system_params = match.groupdict() or None
                changed.append(message)
                break
        if len(changed) >= BATCH:
            Message.objects.bulk_update(changed, ["system_code", "system_params"])
            changed = []
    Message.objects.bulk_update(changed, ["system_code", "system_params"])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0018_languages"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="system_code",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
        migrations.AddField(
            model_name="message",
            name="system_params",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.RunPython(code_existing_rows, migrations.RunPython.noop, elidable=True),
    ]
