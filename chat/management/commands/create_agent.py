from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from agents.models import AgentProfile
from chat.conversations import routing
from chat.models import Site


class Command(BaseCommand):
    help = "Create or update an agent login. No --site means the agent serves every site."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--capacity", type=int, default=3, help="Concurrent chats (default 3).")
        parser.add_argument("--display-name", default="")
        parser.add_argument("--site", action="append", default=[], help="Site key (repeatable).")
        parser.add_argument(
            "--supervisor",
            action="store_true",
            help="May read every conversation of the sites served (not write into them).",
        )

    def handle(
        self, *args, username, password, capacity, display_name, site, supervisor, **options
    ):
        if capacity < 0:
            raise CommandError("--capacity must be 0 or more")
        sites = list(Site.objects.filter(key__in=site))
        unknown = set(site) - {s.key for s in sites}
        if unknown:
            raise CommandError(f"Unknown site key(s): {', '.join(sorted(unknown))}")
        User = get_user_model()  # noqa: N806 - Django's idiom
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_active = True
            user.save()
            agent, _ = AgentProfile.objects.update_or_create(
                user=user,
                defaults={
                    "display_name": display_name or user.get_full_name() or username,
                    "capacity": capacity,
                    "is_supervisor": supervisor,
                },
            )
            agent.sites.set(sites)
        # A raised capacity frees slots for the queue.
        routing.assign_queued(site_ids=[s.id for s in sites] or None)
        verb = "Created" if created else "Updated"
        scope = ", ".join(s.name for s in sites) or "every site"
        role = ", supervisor" if supervisor else ""
        self.stdout.write(f"{verb} agent {username} (capacity {capacity}, serves {scope}{role})")
