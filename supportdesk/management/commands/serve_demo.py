"""`make run`: the app on one port and a fake shop embedding the widget on another.

The shop is a different origin (another port), so the embed really crosses origins, the
way it does on a customer's site. Its page also sends a strict CSP of its own (no inline
script or style), which the widget's loader must live with.
"""

import json
import os
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand

from supportdesk.serve import worker_command

# No settings or models at import time: the browser-test harness serves the shop with
# PageServer/serve_shop from a process that has not set Django up.
REPO_ROOT = Path(__file__).resolve().parents[3]
DEMO_DIR = REPO_ROOT / "demo"


class PageServer:
    """A tiny static server on 127.0.0.1 for host pages, in a daemon thread."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        pages = self.pages = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                page = pages.get(self.path.split("?", 1)[0])
                if page is None:
                    self.send_error(404)
                    return
                content_type, body, headers = page
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # quiet: the app's log is what matters
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def page(self, path: str, body: str, content_type: str = "text/html; charset=utf-8", **headers):
        self.pages[path] = (content_type, body.encode(), headers)

    def start(self) -> "PageServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def host_page_csp(app_url: str) -> str:
    """A strict policy like a careful shop would send, allowing only the widget's host."""
    return (
        f"default-src 'self'; script-src 'self' {app_url}; connect-src 'self' {app_url}; "
        f"frame-src {app_url}; style-src 'self'; img-src 'self' data:; base-uri 'none'"
    )


def serve_shop(
    server: PageServer, *, app_url: str, site_key: str, user: dict | None = None
) -> PageServer:
    """Put the demo shop (with the widget tag for `site_key`) on `server`; `user`, the
    customer who may sign in (`{user_id, user_hash, name, email}`), if any."""
    html = (
        (DEMO_DIR / "shop.html")
        .read_text(encoding="utf-8")
        .replace("__APP_URL__", app_url)
        .replace("__SITE_KEY__", site_key)
        .replace("__SHOP_ORIGIN__", server.origin)
        # In a JSON script element: "</" may not appear in it.
        .replace("__SHOP_USER__", json.dumps(user).replace("</", "<\\/"))
    )
    server.page("/", html, **{"Content-Security-Policy": host_page_csp(app_url)})
    server.page(
        "/shop.css", (DEMO_DIR / "shop.css").read_text(encoding="utf-8"), "text/css; charset=utf-8"
    )
    server.page(
        "/shop.js",
        (DEMO_DIR / "shop.js").read_text(encoding="utf-8"),
        "text/javascript; charset=utf-8",
    )
    return server


def demo_customer(site) -> dict:
    """The shop's customer who may sign in, identified as its server would: the user id
    signed with the site's identity secret (made for the demo if it has none)."""
    from chat.conversations import identity

    secret = site.identity_secret or identity.rotate_secret(site)
    user_id = "kc-customer-1815"
    return {
        "user_id": user_id,
        "user_hash": identity.signature(secret, user_id),
        "name": "Ada Lovelace",
        "email": "ada@kettle-crane.example",
    }


def demo_bot(site) -> str:
    """The demo site's knowledge base (the evaluation set's outdoor-shop articles),
    imported once with the bot on; the line `make run` prints about the bot."""
    from kb import embedding, importing
    from kb.models import Article, BotSettings

    if not Article.objects.filter(site=site).exists():
        articles = REPO_ROOT / "kb" / "eval" / "articles"
        importing.import_articles(site, importing.read_path(articles))
    on = BotSettings.objects.filter(site=site, enabled=True).exists()
    count = Article.objects.filter(site=site).count()
    if embedding.installed():
        mode = "keyword search + the embedding model"
    else:
        mode = f"keyword search only (the embedding model is {embedding.unavailable_reason()})"
    state = "on" if on else "off (admin: Bot settings)"
    return f"  bot              {state}: {count} articles, {mode}"


class Command(BaseCommand):
    help = "Serve the app (daphne) and a demo shop on another port that embeds the widget."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--shop-port", type=int, default=8001)

    def handle(self, *args, host, port, shop_port, **options):
        from chat.management.commands.seed_demo import DEMO_SITE
        from chat.models import Site

        app_url = f"http://{host}:{port}"
        call_command("seed_demo", base_url=app_url, stdout=self.stdout, stderr=self.stderr)
        site = Site.objects.get(name=DEMO_SITE)
        self.stdout.write(demo_bot(site))
        shop = PageServer(shop_port, host)
        if shop.origin not in site.allowed_origins:
            # A custom --shop-port: let the demo site be embedded from it too.
            site.allowed_origins = [*site.allowed_origins, shop.origin]
            site.save(update_fields=["allowed_origins"])
        serve_shop(shop, app_url=app_url, site_key=site.key, user=demo_customer(site)).start()
        daphne = subprocess.Popen(
            worker_command(host, port),
            cwd=REPO_ROOT,
            # The landing page (GET /) links to the shop.
            env={**os.environ, "SUPPORTDESK_DEMO_SHOP_URL": f"{shop.origin}/"},
        )
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  demo shop        {shop.origin}/   (the widget, embedded cross-origin)",
                    "",
                    "Open the shop and the agent dashboard side by side. Ctrl+C stops both.",
                    "",
                ]
            )
        )

        def interrupt(signum, frame):
            raise KeyboardInterrupt

        # `kill` (SIGTERM) stops the demo as cleanly as Ctrl+C does.
        signal.signal(signal.SIGTERM, interrupt)
        try:
            daphne.wait()
        except KeyboardInterrupt:
            self.stdout.write("stopping…")
        finally:
            if daphne.poll() is None:
                daphne.send_signal(signal.SIGINT)
                try:
                    daphne.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    daphne.kill()
                    daphne.wait()
            shop.stop()
