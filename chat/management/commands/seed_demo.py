from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from chat.models import Site

DEMO_SITE = "Demo shop"
DEMO_ORIGINS = [
    "http://127.0.0.1:8000",
    "http://localhost:8000",
    "http://127.0.0.1:8001",
    "http://localhost:8001",
]


class Command(BaseCommand):
    help = "Create (once) the demo site, a demo agent and an admin; print where to go."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, base_url, **options):
        site = Site.objects.filter(name=DEMO_SITE).first()
        if site is None:
            site = Site.objects.create(name=DEMO_SITE, allowed_origins=DEMO_ORIGINS)
        call_command(
            "create_agent", "demo", password="demo-agent-pass", capacity=3, stdout=self.stderr
        )
        User = get_user_model()  # noqa: N806 - Django's idiom
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "demo-admin-pass")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "supportdesk is starting:",
                    f"  agent dashboard  {base_url}/agent/   (login demo / demo-agent-pass)",
                    f"  admin            {base_url}/admin/   (login admin / demo-admin-pass)",
                    f"  demo site key    {site.key}",
                    "",
                ]
            )
        )
