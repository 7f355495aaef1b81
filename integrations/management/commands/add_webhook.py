from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator

from chat.models import Site
from integrations.endpoints import EVENT_TYPES, UnknownEvent, add_webhook


class Command(BaseCommand):
    help = (
        "Subscribe a URL to a site's events (all of them unless --event names some);"
        " prints the signing secret (whsec_...) alone on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", required=True, help="The site's key.")
        parser.add_argument("--url", required=True)
        parser.add_argument(
            "--event",
            action="append",
            default=[],
            help=f"An event type to send (repeatable): {', '.join(EVENT_TYPES)}.",
        )

    def handle(self, *args, site, url, event, **options):
        found = Site.objects.filter(key=site).first()
        if found is None:
            raise CommandError(f"No site with the key {site!r}.")
        try:
            URLValidator(schemes=["http", "https"])(url)
            endpoint = add_webhook(site=found, url=url, events=event)
        except ValidationError:
            raise CommandError(f"{url!r} is not an http(s) URL.") from None
        except UnknownEvent as exc:
            raise CommandError(str(exc)) from None
        heard = ", ".join(endpoint.events) or "every event"
        self.stderr.write(f"Webhook {url} for site {found.name!r} hears {heard}.")
        self.stdout.write(endpoint.secret)
