"""reindex_kb: a site's articles made ready for search again (after `make ai`, say),
without touching an article edited meanwhile."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chat.models import Site
from kb import embedding
from kb.management.commands import reindex_kb
from kb.models import Article

pytestmark = pytest.mark.django_db


def reindex(*args) -> list[str]:
    out = StringIO()
    call_command("reindex_kb", *args, stdout=out)
    return out.getvalue().splitlines()


def stale(article: Article) -> None:
    """As an article stored before its site had the model (or these columns)."""
    Article.objects.filter(pk=article.pk).update(
        sentences=[],
        embedding=None,
        sentence_embeddings=None,
        piece_embeddings=None,
        embedding_model="",
    )


def test_a_sites_articles_are_made_ready_again_and_other_sites_are_left(personas):
    returns = Article.objects.create(
        site=personas.acme, title="Returns", body="Return anything within 30 days. Free."
    )
    globex = Site.objects.create(name="globex", allowed_origins=["https://globex.test"])
    other = Article.objects.create(
        site=globex, title="Hours", body="We open at nine. We close at five."
    )
    stale(returns), stale(other)
    updated_before = Article.objects.get(pk=returns.pk).updated_at

    lines = reindex("--site", personas.acme.key)

    assert lines[-1] == "1"
    returns.refresh_from_db(), other.refresh_from_db()
    assert returns.sentences == ["Return anything within 30 days.", "Free."]
    assert other.sentences == []
    # Moved on: every worker reads the site's articles again (kb/search.py's stamp).
    assert returns.updated_at > updated_before
    if embedding.available():
        assert returns.embedding_model == embedding.MODEL_NAME
        assert returns.piece_embeddings


def test_an_article_edited_while_it_was_being_prepared_keeps_its_own_save(personas, monkeypatch):
    article = Article.objects.create(site=personas.acme, title="Returns", body="Old text.")
    prepare = reindex_kb.indexing.prepare

    def prepare_while_an_agent_edits(articles):
        prepare(articles)
        edited = Article.objects.get(pk=article.pk)
        edited.body = "New text. Two sentences."
        prepare([edited])  # what its own save does (the admin's)
        edited.save(prepared=True)

    monkeypatch.setattr(reindex_kb.indexing, "prepare", prepare_while_an_agent_edits)

    assert reindex()[-1] == "0"
    article.refresh_from_db()
    assert article.body == "New text. Two sentences."
    assert article.sentences == ["New text.", "Two sentences."]


def test_an_unknown_site_is_refused():
    with pytest.raises(CommandError, match="no site with key"):
        reindex("--site", "nope")
