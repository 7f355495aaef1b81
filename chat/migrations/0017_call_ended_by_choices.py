# The sender kinds gained "bot" (0016); a call's ended_by lists the same choices.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0016_bot_conversations"),
    ]

    operations = [
        migrations.AlterField(
            model_name="call",
            name="ended_by",
            field=models.CharField(
                blank=True,
                choices=[
                    ("visitor", "Visitor"),
                    ("agent", "Agent"),
                    ("system", "System"),
                    ("bot", "Bot"),
                ],
                max_length=10,
            ),
        ),
    ]
