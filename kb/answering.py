"""The bot's reply to one question: the best article's sentences that answer it (never
invented text), a link to the article, or the hand-off line when no article is good
enough."""

from dataclasses import dataclass, field

from django.utils import translation
from django.utils.translation import gettext as _

from chat import system_messages

from . import embedding, search

# At most this many sentences, and this many characters, from the article.
MAX_SENTENCES = 2
MAX_CHARS = 500
# Stored as the bot message's body with its code, so each reader sees it in theirs.
HANDOFF_CODE = "bot_handoff"
HANDOFF_TEXT = system_messages.english(HANDOFF_CODE)


@dataclass(frozen=True)
class Reply:
    """`body` to post; `confident`: an answer (else the hand-off line). `hit` is the
    best article found, confident or not (analytics keep both)."""

    body: str
    confident: bool
    hit: search.Hit | None
    sources: list[dict] = field(default_factory=list)


def reply_to(
    site_id: int, question: str, *, use_model: bool | None = None, language: str | None = None
) -> Reply:
    """The bot's reply to `question` from the site's articles (`use_model=False`:
    keyword search alone; None: the model when it is loaded). The article's words are
    its own; the line naming it is in `language`, the visitor's (None: English)."""
    if use_model is None:
        use_model = embedding.ready()
    vector = pieces = None
    if use_model:
        vectors, all_pieces = embedding.encode_with_pieces([question])
        vector, pieces = vectors[0], all_pieces[0]
    hits = search.search(site_id, question, k=1, use_model=use_model, vector=vector, pieces=pieces)
    best = hits[0] if hits else None
    if best is None or not best.confident:
        return Reply(HANDOFF_TEXT, False, best)
    index = search.SiteIndex.of(site_id)
    if best.meaning is None:
        vector = None
    entry = index.articles[best.article_id]
    chosen: list[int] = []
    length = 0
    for i in index.best_sentences(best.article_id, question, vector):
        sentence = entry.sentences[i]
        if chosen and length + len(sentence) > MAX_CHARS:
            break
        chosen.append(i)
        length += len(sentence)
        if len(chosen) == MAX_SENTENCES:
            break
    # In the article's own order, so the sentences read as it wrote them.
    body = " ".join(entry.sentences[i] for i in sorted(chosen)) or entry.title
    if len(body) > MAX_CHARS:
        body = body[: MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"
    more = entry.url or ""
    with translation.override(language):
        if more:
            source = _("From “%(title)s”: %(url)s") % {"title": entry.title, "url": more}
        else:
            source = _("From “%(title)s”") % {"title": entry.title}
    body = f"{body}\n\n{source}"
    return Reply(body, True, best, [{"id": best.article_id, "title": entry.title}])
