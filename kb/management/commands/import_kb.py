from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from chat.models import Site
from kb import embedding, importing


class Command(BaseCommand):
    help = (
        "Load a site's knowledge base from a folder of Markdown files (first '# ' line: "
        "the title) or a CSV file (title,body[,url]), replacing its earlier import, and "
        "turn the site's bot on (--no-bot leaves it as it is). Prints the number of "
        "articles last."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", required=True, help="the site key")
        parser.add_argument("path", help="a folder of .md files, or a .csv file")
        parser.add_argument("--no-bot", action="store_true", help="do not turn the bot on")

    def handle(self, *args, site: str, path: str, no_bot: bool, **options):
        found = Site.objects.filter(key=site).first()
        if found is None:
            raise CommandError(f"no site with key {site!r}")
        source = Path(path)
        if not source.exists():
            raise CommandError(f"{path}: no such file or folder")
        try:
            drafts = importing.read_path(source)
            count = importing.import_articles(found, drafts, turn_bot_on=not no_bot)
        except (importing.Unreadable, UnicodeDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        mode = (
            "keyword search and the embedding model"
            if embedding.available()
            else ("keyword search only (the embedding model is not installed)")
        )
        bot = "left as it was" if no_bot else "on"
        self.stdout.write(f"Imported into {found.name}; the bot is {bot}, answering with {mode}.")
        self.stdout.write(str(count))
