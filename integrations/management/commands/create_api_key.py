from django.core.management.base import BaseCommand, CommandError

from chat.models import Site
from integrations.keys import create_api_key


class Command(BaseCommand):
    help = "Make a REST API key for a site; prints it alone on the last line (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("--site", required=True, help="The site's key.")
        parser.add_argument("--name", default="", help="What uses it, e.g. CRM.")

    def handle(self, *args, site, name, **options):
        found = Site.objects.filter(key=site).first()
        if found is None:
            raise CommandError(f"No site with the key {site!r}.")
        row, key = create_api_key(site=found, name=name)
        self.stderr.write(
            f"API key {row.prefix}… for site {found.name!r}: it is shown once, keep it now."
        )
        self.stdout.write(key)
