from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from chat.models import Site
from kb import embedding, indexing
from kb.models import Article

# Articles embedded per model pass: the import's batch size.
BATCH = 32
FIELDS = ("sentences", "embedding", "sentence_embeddings", "piece_embeddings", "embedding_model")


class Command(BaseCommand):
    help = (
        "Make every article's sentences and embeddings again (every site's, or --site's): "
        "after installing the embedding model (make ai) or a new version of it, so that "
        "articles imported or written before are searched by meaning too. Prints the "
        "number of articles made again last."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", help="the site key (default: every site)")

    def handle(self, *args, site: str | None, **options):
        articles = Article.objects.order_by("pk")
        if site is not None:
            found = Site.objects.filter(key=site).first()
            if found is None:
                raise CommandError(f"no site with key {site!r}")
            articles = articles.filter(site=found)
        ids = list(articles.values_list("pk", flat=True))
        done = 0
        for start in range(0, len(ids), BATCH):
            done += _reindex(list(Article.objects.filter(pk__in=ids[start : start + BATCH])))
        mode = (
            "keyword search and the embedding model"
            if embedding.available()
            else "keyword search only (the embedding model is not installed)"
        )
        self.stdout.write(f"Articles made ready for {mode}.")
        self.stdout.write(str(done))


def _reindex(articles: list[Article]) -> int:
    """Prepare `articles` outside any transaction (seconds of model time hold no lock),
    then store what was made for each one still as it was read. Race: an article edited
    meanwhile was prepared anew by its own save; it is left alone here. `updated_at` moves
    on, so every worker reads the site's articles again."""
    indexing.prepare(articles)
    now, stored = timezone.now(), 0
    with transaction.atomic():
        for article in articles:
            unchanged = Article.objects.filter(
                pk=article.pk, title=article.title, body=article.body, updated_at=article.updated_at
            )
            values = {field: getattr(article, field) for field in FIELDS}
            stored += unchanged.update(**values, updated_at=now)
    return stored
