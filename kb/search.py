"""Finding the articles that answer a question: `search(site_id, question, k)`.

Two signals:
- keyword: of the question's content words (stemmed), the share found in the article,
  each weighted by how rare it is in the site's knowledge base (idf), so "refund" counts
  more than "order" (0 to 1), plus a small bonus for the database's own rank.
  Candidates come from the database's full-text search (kb/keyword.py).
- meaning (only with the model, kb/embedding.py): the cosine of the question's
  embedding with the article's, its closest sentence's and its title's.
With the model the score is meaning plus a little keyword, else keyword alone; with the
model the best few are then re-ranked word piece by word piece (`late`). The bot
answers only when the best hit is `confident` (at its threshold). The weights and
thresholds were chosen on half the evaluation set (docs/bot.md gives the figures).

The articles' words and embeddings are read once per site and kept in memory until an
article of the site changes (`SiteIndex`); only the question is embedded per search.
"""

import math
import threading
from collections import Counter
from dataclasses import dataclass, replace

from django.db.models import Count, Max

from . import embedding, keyword, text
from .models import Article

# With the model: score = meaning + KEYWORD_WEIGHT * keyword, where meaning is the
# weighted cosine of the question with the whole article, its closest sentence and its
# title. Chosen on the odd-numbered half of the evaluation questions (docs/bot.md).
WHOLE_WEIGHT = 0.5
SENTENCE_WEIGHT = 0.5
TITLE_WEIGHT = 0.15
KEYWORD_WEIGHT = 0.1
COMBINED_THRESHOLD = 0.35
KEYWORD_THRESHOLD = 0.55
# Late interaction: the best LATE_CANDIDATES by that score are re-ranked by score +
# LATE_WEIGHT * late, where late is the mean over the question's word pieces of each
# one's best cosine with the article's pieces (title and sentences, stored at import).
# A bi-encoder squeezes each text into one vector first; this compares them piece by
# piece ("cheaper ... website" with price matching), with the model's own vectors.
# Chosen on the odd-numbered half (docs/bot.md); 0.35 applies where the articles have
# no piece vectors yet (embedded before they existed: saving or importing again adds
# them).
LATE_CANDIDATES = 5
LATE_WEIGHT = 1.5
LATE_THRESHOLD = 1.05
# How many articles each signal proposes before scoring.
CANDIDATES = 20
FTS_RANK_BONUS = 0.1
# A question's word that no article has is read as a word one has one typo away (two
# for long words): a letter wrong, missing, added, or two swapped ("retrun", "refnud").
LONG_WORD = 8


@dataclass(frozen=True)
class Hit:
    """One article for a question, with how well it matches (`score`, what the bot's
    threshold applies to) and the two signals it was made of."""

    article_id: int
    title: str
    url: str
    score: float
    keyword: float
    meaning: float | None
    late: float | None = None

    @property
    def confident(self) -> bool:
        """Good enough to answer from: at the threshold of the signals it was scored on."""
        if self.late is not None:
            limit = LATE_THRESHOLD
        elif self.meaning is not None:
            limit = COMBINED_THRESHOLD
        else:
            limit = KEYWORD_THRESHOLD
        return self.score >= limit


def mode() -> str:
    """ "model" when answers use the embedding model too, else "keyword"."""
    return "model" if embedding.available() else "keyword"


def search(
    site_id: int,
    question: str,
    k: int = 3,
    *,
    use_model: bool | None = None,
    vector=None,
    pieces=None,
) -> list[Hit]:
    """The site's `k` best articles for `question`, best first (possibly fewer, none for
    an empty knowledge base). `use_model=False` forces keyword search alone; `vector`
    and `pieces` are the question's embedding and word-piece vectors
    (`embedding.encode_with_pieces`) if the caller has them already."""
    index = SiteIndex.of(site_id)
    if not index.articles:
        return []
    if use_model is None:
        use_model = embedding.ready()
    use_model = use_model and index.has_embeddings
    words = index.spelled_as_articles(text.query_words(question))
    query_terms = {text.stem(word) for word in words}
    # The database's stemmers do not know irregular forms either: "bought" asks for
    # "buy" too.
    lemmas = [text.lemma(word) for word in words]
    ranked = keyword.candidates(site_id, list(dict.fromkeys(words + lemmas)), CANDIDATES)
    candidate_ids = set(ranked)
    meaning: dict[int, float] = {}
    if use_model:
        if vector is None:
            vectors, all_pieces = embedding.encode_with_pieces([question])
            vector, pieces = vectors[0], all_pieces[0]
        meaning = index.meaning(vector)
        best_by_meaning = sorted(meaning, key=meaning.get, reverse=True)[:CANDIDATES]
        candidate_ids.update(best_by_meaning)
    hits = []
    for article_id in candidate_ids:
        entry = index.articles.get(article_id)
        if entry is None:  # changed since the index was read: next search sees it
            continue
        kw = index.keyword_score(query_terms, entry)
        if article_id in ranked:
            # The database's own ranking (term frequency, title weight) breaks near-ties
            # between articles sharing the same words.
            kw += FTS_RANK_BONUS * (1 - ranked.index(article_id) / CANDIDATES)
        if use_model:
            m = meaning.get(article_id, 0.0)
            score = m + KEYWORD_WEIGHT * kw
        else:
            m = None
            score = kw
        hits.append(Hit(article_id, entry.title, entry.url, score, kw, m))
    hits.sort(key=lambda hit: (-hit.score, hit.article_id))
    if use_model and pieces is not None and index.has_pieces:
        best = [index.late(hit, pieces) for hit in hits[:LATE_CANDIDATES]]
        best.sort(key=lambda hit: (-hit.score, hit.article_id))
        hits[:LATE_CANDIDATES] = best
    return hits[:k]


@dataclass
class Entry:
    title: str
    url: str
    sentences: list[str]
    terms: frozenset
    title_terms: frozenset
    row: int  # into SiteIndex's matrices, -1 without embeddings
    sentence_rows: tuple[int, int]


class SiteIndex:
    """A site's articles as search needs them, read from the database once and kept
    until one of them changes (its `stamp`: how many, and the latest change)."""

    _cache: dict[int, "SiteIndex"] = {}
    _lock = threading.Lock()

    def __init__(self, site_id: int, stamp: tuple):
        self.site_id = site_id
        self.stamp = stamp
        self.articles: dict[int, Entry] = {}
        self.idf: dict[str, float] = {}
        self.has_embeddings = False
        self.vectors = None
        self.sentence_vectors = None
        self.sentence_owner = None
        self.has_pieces = False
        self.pieces: dict = {}

    @classmethod
    def of(cls, site_id: int) -> "SiteIndex":
        stamp = _stamp(site_id)
        index = cls._cache.get(site_id)
        if index is not None and index.stamp == stamp:
            return index
        with cls._lock:
            index = cls._cache.get(site_id)
            if index is None or index.stamp != stamp:
                index = cls._cache[site_id] = cls._read(site_id, stamp)
        return index

    @classmethod
    def _read(cls, site_id: int, stamp: tuple) -> "SiteIndex":
        index = cls(site_id, stamp)
        rows = list(
            Article.objects.filter(site_id=site_id).values_list(
                "id",
                "title",
                "url",
                "body",
                "sentences",
                "embedding",
                "sentence_embeddings",
                "piece_embeddings",
            )
        )
        document_frequency: Counter = Counter()
        surface_words: set[str] = set()
        with_vectors = [r for r in rows if r[5] is not None and r[6] is not None]
        index.has_embeddings = bool(rows) and len(with_vectors) == len(rows)
        index.has_pieces = index.has_embeddings and all(r[7] is not None for r in rows)
        vectors, sentence_vectors, owners = [], [], []
        for article_id, title, url, body, sentences, whole, per_sentence, pieces in rows:
            surface_words.update(text.query_words(f"{title} {body}", limit=None))
            title_terms = frozenset(text.terms(title))
            terms = title_terms | frozenset(text.terms(body))
            document_frequency.update(terms)
            row, span = -1, (0, 0)
            if index.has_embeddings:
                row = len(vectors)
                vectors.append(_vector(whole))
                matrix = _matrix(per_sentence)
                span = (len(sentence_vectors), len(sentence_vectors) + len(matrix))
                sentence_vectors.extend(matrix)
                owners.extend([article_id] * len(matrix))
            if index.has_pieces:
                index.pieces[article_id] = _matrix(pieces, "float16")
            index.articles[article_id] = Entry(title, url, sentences, terms, title_terms, row, span)
        count = len(rows)
        index.idf = {
            term: math.log(1 + count / frequency) for term, frequency in document_frequency.items()
        }
        index.unknown_idf = math.log(1 + count)  # a word no article has
        index.surface_words = sorted(surface_words)
        if index.has_embeddings:
            import numpy

            index.vectors = numpy.stack(vectors)
            index.sentence_vectors = numpy.stack(sentence_vectors)
            index.sentence_owner = numpy.array(owners)
        return index

    def spelled_as_articles(self, words: list[str]) -> list[str]:
        """`words` with each misspelt one (no article has it, 4 letters or more) replaced
        by the closest word the articles use, when one is close enough."""
        fixed = []
        for word in words:
            if len(word) >= 4 and text.stem(word) not in self.idf:
                allowed = 2 if len(word) >= LONG_WORD else 1
                for known in self.surface_words:
                    if abs(len(known) - len(word)) <= allowed and (
                        text.typos(word, known, allowed) <= allowed
                    ):
                        word = known
                        break
            fixed.append(word)
        return fixed

    def keyword_score(self, query_terms: set, entry: Entry) -> float:
        """The idf-weighted share of the question's words the article has; a word in
        its title counts in full, one in its body a little less."""
        if not query_terms:
            return 0.0
        total = found = 0.0
        for term in query_terms:
            weight = self.idf.get(term, self.unknown_idf)
            total += weight
            if term in entry.title_terms:
                found += weight
            elif term in entry.terms:
                found += 0.85 * weight
        return found / total

    def meaning(self, vector) -> dict[int, float]:
        """Article id -> meaning score of a question's unit vector."""
        whole = self.vectors @ vector
        per_sentence = self.sentence_vectors @ vector
        best = {}
        for article_id, entry in self.articles.items():
            start, end = entry.sentence_rows  # row `start` is the title's
            title = float(per_sentence[start])
            top = float(per_sentence[start + 1 : end].max()) if end > start + 1 else title
            best[article_id] = (
                WHOLE_WEIGHT * float(whole[entry.row])
                + SENTENCE_WEIGHT * top
                + TITLE_WEIGHT * title
            )
        return best

    def late(self, hit: Hit, pieces) -> Hit:
        """`hit` scored again with the late-interaction term: for each of the question's
        word pieces its best cosine with the article's pieces, averaged."""
        if not len(pieces):
            return hit
        import numpy

        similarities = pieces @ self.pieces[hit.article_id].astype(numpy.float32).T
        late = float(similarities.max(axis=1).mean())
        return replace(hit, score=hit.score + LATE_WEIGHT * late, late=late)

    def best_sentences(self, article_id: int, question: str, vector=None) -> list[int]:
        """Indexes into the article's sentences, best answer to `question` first: by
        meaning with the model (`vector`), else by shared words."""
        entry = self.articles[article_id]
        if vector is not None and self.has_embeddings:
            start, end = entry.sentence_rows
            # Row `start` is the title; sentences follow.
            scores = list((self.sentence_vectors[start + 1 : end] @ vector).tolist())
        else:
            query_terms = set(text.terms(question))
            scores = []
            for sentence in entry.sentences:
                terms = set(text.terms(sentence))
                scores.append(sum(self.idf.get(t, 0.0) for t in terms & query_terms))
        return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def _stamp(site_id: int) -> tuple:
    row = Article.objects.filter(site_id=site_id).aggregate(n=Count("id"), at=Max("updated_at"))
    return (row["n"], row["at"])


def _vector(data):
    import numpy

    return numpy.frombuffer(bytes(data), dtype=numpy.float32)


def _matrix(data, dtype="float32"):
    import numpy

    return numpy.frombuffer(bytes(data), dtype=dtype).reshape(-1, embedding.DIMENSIONS)
