from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from chat.models import Site


def normalise_origin(value: str) -> str:
    """`https://Shop.example/` -> `https://shop.example`; refuses anything but an origin."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise CommandError(f"{value!r} is not an origin like https://shop.example")
    if parts.query or parts.fragment:
        raise CommandError(f"{value!r} is not an origin like https://shop.example")
    return f"{parts.scheme}://{parts.netloc.lower()}"


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
        origins = list(dict.fromkeys(normalise_origin(o) for o in origin))
        site = Site.objects.create(name=name, allowed_origins=origins)
        self.stderr.write(f"Created site {site.name!r} for {', '.join(origins)}")
        self.stdout.write(site.key)
