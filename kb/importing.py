"""Loading a site's knowledge base from files (`manage.py import_kb`): a folder of
Markdown files, one article each (its first `# ` line is the title), or a CSV file
with `title,body` columns (and an optional `url`)."""

import csv
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from chat.models import Site

from . import indexing
from .models import Article, BotSettings


class Unreadable(Exception):
    """The files cannot be read as articles; nothing was changed."""


@dataclass(frozen=True)
class Draft:
    title: str
    body: str
    url: str = ""


def read_path(path: Path) -> list[Draft]:
    if path.is_dir():
        return [_markdown(file) for file in sorted(path.glob("*.md"))]
    if path.suffix.lower() == ".csv":
        return _csv(path)
    if path.suffix.lower() == ".md":
        return [_markdown(path)]
    raise Unreadable(f"{path}: expected a folder of .md files or a .csv file")


def _markdown(file: Path) -> Draft:
    lines = file.read_text(encoding="utf-8").splitlines()
    url = ""
    for i, line in enumerate(lines):
        if line.startswith("# "):
            title = line[2:].strip()
            rest = lines[i + 1 :]
            # An optional "URL: https://..." line right under the title links the article.
            while rest and not rest[0].strip():
                rest = rest[1:]
            if rest and rest[0].lower().startswith("url:"):
                url = rest[0][4:].strip()
                rest = rest[1:]
            body = "\n".join(rest).strip()
            if not title or not body:
                raise Unreadable(f"{file}: the title or the body is empty")
            return Draft(title, body, url)
    raise Unreadable(f"{file}: no '# ' title line")


def _csv(file: Path) -> list[Draft]:
    with file.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower() for name in reader.fieldnames or []}
        if not {"title", "body"} <= columns:
            raise Unreadable(f"{file}: the header must name the columns title and body")
        drafts = []
        for number, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            if not row["title"] or not row["body"]:
                raise Unreadable(f"{file}, line {number}: the title or the body is empty")
            drafts.append(Draft(row["title"], row["body"], row.get("url", "")))
    return drafts


def import_articles(site: Site, drafts: list[Draft], *, turn_bot_on: bool = True) -> int:
    """Replace the site's imported articles with `drafts` (articles written in the admin
    stay), in one transaction; turn the bot on unless told not to. Returns how many."""
    if not drafts:
        raise Unreadable("no articles found")
    articles = [
        Article(site=site, title=d.title[:300], body=d.body, url=d.url, imported=True)
        for d in drafts
    ]
    # Embeddings before the transaction: seconds of model time hold no lock.
    indexing.prepare(articles)
    with transaction.atomic():
        Article.objects.filter(site=site, imported=True).delete()
        for article in articles:
            article.save(prepared=True)
        if turn_bot_on:
            BotSettings.objects.update_or_create(site=site, defaults={"enabled": True})
        else:
            BotSettings.objects.get_or_create(site=site)
    return len(articles)
