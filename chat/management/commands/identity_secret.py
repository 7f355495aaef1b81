from django.core.management.base import BaseCommand, CommandError

from chat.conversations import identity
from chat.models import Site


class Command(BaseCommand):
    help = (
        "Print a site's identity verification secret alone on the last line, making one if"
        " it has none (--rotate: a new one; signatures made with the old one stop holding)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", required=True, help="The site's key.")
        parser.add_argument("--rotate", action="store_true")

    def handle(self, *args, site, rotate, **options):
        found = Site.objects.filter(key=site).first()
        if found is None:
            raise CommandError(f"No site with key {site!r}.")
        secret = found.identity_secret
        if rotate or not secret:
            secret = identity.rotate_secret(found)
            self.stderr.write(f"Identity verification is on for {found.name!r}.")
        self.stdout.write(secret)
