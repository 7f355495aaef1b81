from django.core.management.base import BaseCommand, CommandError

from chat import lifecycle


class Command(BaseCommand):
    help = (
        "Erase a visitor on request (GDPR art. 17), found by --visitor ID, --token (the "
        "token their browser holds) or --email (every visitor who gave that email). Their "
        "open conversation is closed; the body of every visitor and agent message and agent "
        "note in their conversations becomes '[erased]'; their ratings and comments, and "
        "every attachment in their conversations (files included), are deleted; their name, "
        "email and token are removed and their open sockets closed. "
        "The conversations "
        "themselves stay, anonymous, with their times, status and agent, so analytics counts "
        "(chats, wait and response times) do not change. Each visitor erased writes an audit "
        "log entry. --dry-run lists who would be erased."
    )

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--visitor", type=int, metavar="ID", help="Visitor id.")
        who.add_argument(
            "--token",
            help="The visitor token from their browser; write --token=TOKEN, as a token may "
            "begin with '-'.",
        )
        who.add_argument("--email", help="Every visitor who gave this email (any site).")
        parser.add_argument(
            "--dry-run", action="store_true", help="List the visitors; change nothing."
        )

    def handle(self, *args, visitor, token, email, dry_run, **options):
        matched_by = "id" if visitor is not None else "token" if token else "email"
        visitors = list(
            lifecycle.visitors_matching(visitor_id=visitor, token=token, email=email)
            .select_related("site")
            .order_by("pk")
        )
        if not visitors:
            raise CommandError(f"No visitor matches that {matched_by}.")
        for found in visitors:
            if dry_run:
                self.stdout.write(
                    f"Would erase visitor {found.pk} of {found.site.name} "
                    f"({found.conversations.count()} conversations)"
                )
                continue
            erasure = lifecycle.erase_visitor(
                visitor_id=found.pk,
                actor_label="manage.py erase_visitor",
                matched_by=matched_by,
            )
            self.stdout.write(
                f"Erased visitor {found.pk}: {erasure.messages} messages and {erasure.notes} "
                f"notes blanked in {erasure.conversations} conversations, "
                f"{erasure.ratings} ratings deleted"
                + (f", {erasure.attachments} attachments deleted" if erasure.attachments else "")
                + (f", {erasure.closed} open conversation closed" if erasure.closed else "")
            )
