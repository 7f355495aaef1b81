"""Words and sentences of articles and questions, the same way for both sides."""

import re
from functools import lru_cache

import snowballstemmer

_stemmer = snowballstemmer.stemmer("english")
_WORD = re.compile(r"[a-z0-9]+")
# Words that say nothing about what a question is about. Kept short on purpose: "not",
# "no", "when", "how" can matter in support questions, but they match everywhere.
_STOPWORD_TEXT = """a an the and or but if of to in on at by for with from as is are was were
    be been being am do does did doing have has had having i me my mine we our ours you your yours
    he she it its they them their this that these those there here what which who whom
    whose why how when where can could would should will shall may might must just so
    than too very also about into over under again any all some such only own same other
    out up down off then once hi hello hey please thanks thank pls u im ive id dont cant
    get got want need like know tell let help question ask would much many way yes ok okay
    one there's it's i'm"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def stem(word: str) -> str:
    """`word`'s stem, from its dictionary form: the stemmer alone leaves irregular forms
    ("bought", "found", "sent") apart from their verb ("buy", "find", "send")."""
    return _stemmer.stemWord(lemma(word))


@lru_cache(maxsize=50_000)
def lemma(word: str) -> str:
    """The dictionary form of a lower-case English word (simplemma's English table,
    which ships in its wheel): "bought" -> "buy", "boots" -> "boot". Its first call
    imports simplemma and loads the table: 0.5 to 1.5 s and 25 MB, so not when a
    process starts but on first use (`kb.bot` makes it when a worker starts with the
    bot on some site)."""
    import simplemma

    return simplemma.lemmatize(word, lang="en")


def terms(text: str) -> list[str]:
    """The stemmed content words of `text`, in order, repeats kept."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


def query_words(text: str, limit: int | None = 24) -> list[str]:
    """Distinct plain content words of a question, for a full-text query (each database
    stems them itself)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in STOPWORDS and len(word) > 1:
            seen.setdefault(word, None)
    return list(seen)[:limit]


def sentences(body: str) -> list[str]:
    """An article's body as sentences: Markdown headings, list items and paragraphs each
    end one; within a paragraph, a full stop, ! or ? followed by a capital does."""
    found: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*+]|\d+[.)]|#+)\s)", body):
        line = " ".join(part.strip() for part in block.splitlines()).strip()
        line = re.sub(r"^(?:#+|[-*+]|\d+[.)])\s+", "", line)
        line = re.sub(r"[*_`]{1,2}([^*_`]+)[*_`]{1,2}", r"\1", line)  # **bold**, `code`
        line = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", line)  # [text](link)
        found.extend(s.strip() for s in _SENTENCE_END.split(line) if s.strip())
    return found


def is_plain_word(word: str) -> bool:
    """Letters and digits only: safe to write into a full-text query as it is."""
    return bool(_WORD.fullmatch(word))


def typos(a: str, b: str, limit: int) -> int:
    """How many single-letter edits (a letter changed, added, removed, or two neighbours
    swapped) turn `a` into `b`; any number above `limit` is reported as limit + 1."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return min(previous[-1], limit + 1)
