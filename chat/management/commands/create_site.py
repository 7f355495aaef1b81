from django.core.management.base import BaseCommand, CommandError

from chat.models import Site
from chat.origins import NotAnOrigin, normalise_origin


class Command(BaseCommand):
    help = "Create a site allowed to embed the widget; prints its key alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--origin",
            action="append",
            required=True,
            help="An origin allowed to embed the widget, e.g. https://shop.example (repeatable).",
        )

    def handle(self, *args, name, origin, **options):
        try:
            origins = list(dict.fromkeys(normalise_origin(o) for o in origin))
        except NotAnOrigin as exc:
            raise CommandError(str(exc)) from None
        site = Site.objects.create(name=name, allowed_origins=origins)
        self.stderr.write(f"Created site {site.name!r} for {', '.join(origins)}")
        self.stdout.write(site.key)
