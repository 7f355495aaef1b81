from django.core.management.base import BaseCommand

from chat import lifecycle


class Command(BaseCommand):
    help = (
        "Delete closed conversations (with their messages and ratings) that closed more "
        "than their site's retention_days ago, and visitors of those sites not seen since "
        "and left with no conversation. Sites without retention_days keep everything; open "
        "conversations are never deleted. Dry run by default: prints what would go. "
        "--yes deletes and writes one audit log entry per site."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--yes", action="store_true", help="Delete for real (default: dry run)."
        )

    def handle(self, *args, yes: bool, **options):
        if yes:
            purges = lifecycle.purge_expired_transcripts(actor_label="manage.py purge_transcripts")
            verb = "Deleted"
        else:
            purges = lifecycle.purge_plan()
            verb = "Would delete"
        if not purges:
            self.stdout.write(
                "No site has a retention period (Site.retention_days): nothing to do."
            )
            return
        for purge in purges:
            self.stdout.write(
                f"{purge.site.name} (site {purge.site.pk}, keeps {purge.site.retention_days} "
                f"days, closed before {purge.cutoff:%Y-%m-%d %H:%M} UTC): {verb.lower()} "
                f"{purge.conversations} conversations, {purge.messages} messages, "
                f"{purge.visitors} visitors"
            )
        total = sum(p.conversations for p in purges)
        messages = sum(p.messages for p in purges)
        visitors = sum(p.visitors for p in purges)
        self.stdout.write(
            f"{verb} {total} conversations, {messages} messages, {visitors} visitors in total."
        )
        if not yes:
            self.stdout.write("Dry run: nothing was deleted. Run with --yes to delete.")
