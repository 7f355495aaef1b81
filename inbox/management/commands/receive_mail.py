"""`python manage.py receive_mail --port P [--host H]`: the SMTP receiver of the email
channel (inbox/smtp.py), in the foreground until SIGTERM or SIGINT."""

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from inbox.smtp import smtp_server


class Command(BaseCommand):
    help = "Receive the sites' inbound mail over SMTP (from Postfix, Exim or a provider)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--hostname", default=None, help="The name said in the greeting.")

    def handle(self, *args, port, host, hostname, **options):
        asyncio.run(self._serve(host, port, hostname))

    async def _serve(self, host: str, port: int, hostname: str | None) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: smtp_server(hostname=hostname), host, port)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        limit = settings.SUPPORTDESK_MAIL_MAX_BYTES
        self.stderr.write(f"receive_mail listening on {host}:{port} (SIZE {limit})")
        self.stderr.flush()
        await stop.wait()
        server.close()
        await server.wait_closed()
