"""What an article is made ready for search with when it is saved or imported: its
sentences and, when the model is installed, its embeddings (stored in the database, so
no article is ever embedded while a visitor waits)."""

from . import embedding, text


def prepare(articles: list) -> None:
    """Fill `sentences` and the embeddings of each article (unsaved changes, for the
    caller to save). Without the model the embeddings are left empty and search uses
    keywords alone for these articles."""
    for article in articles:
        article.sentences = text.sentences(article.body)
    if not articles or not embedding.available():
        for article in articles:
            article.embedding = article.sentence_embeddings = None
            article.piece_embeddings = None
            article.embedding_model = ""
        return
    import numpy

    whole = embedding.encode([f"{a.title}. {a.body}" for a in articles])
    # One batch for every sentence of every article (titles count as a sentence); the
    # same pass gives each sentence's word pieces.
    flat = [s for a in articles for s in [a.title, *a.sentences]]
    vectors, pieces = embedding.encode_with_pieces(flat)
    start = 0
    for i, article in enumerate(articles):
        count = 1 + len(article.sentences)
        article.embedding = whole[i].tobytes()
        article.sentence_embeddings = vectors[start : start + count].tobytes()
        # float16: half the room, and the same answers on the evaluation set.
        article.piece_embeddings = (
            numpy.concatenate(pieces[start : start + count]).astype(numpy.float16).tobytes()
        )
        article.embedding_model = embedding.MODEL_NAME
        start += count
