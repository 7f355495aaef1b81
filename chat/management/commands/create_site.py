from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

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
        parser.add_argument(
            "--inbound-email",
            default="",
            help="The email channel: mail to this address opens conversations (docs/email.md).",
        )

    def handle(self, *args, name, origin, inbound_email, **options):
        try:
            origins = list(dict.fromkeys(normalise_origin(o) for o in origin))
        except NotAnOrigin as exc:
            raise CommandError(str(exc)) from None
        inbound_email = inbound_email.strip().lower()
        if inbound_email:
            try:
                validate_email(inbound_email)
            except ValidationError:
                raise CommandError(f"Not an email address: {inbound_email!r}") from None
            if "+" in inbound_email.partition("@")[0]:
                raise CommandError("The inbound address may not hold a '+': replies use it.")
            if Site.objects.filter(inbound_email__iexact=inbound_email).exists():
                raise CommandError(f"Another site already receives {inbound_email}.")
        site = Site.objects.create(name=name, allowed_origins=origins, inbound_email=inbound_email)
        self.stderr.write(f"Created site {site.name!r} for {', '.join(origins)}")
        self.stdout.write(site.key)
