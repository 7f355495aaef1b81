"""A flag on a visitor who is upset, by VADER (a lexicon of English words and rules,
shipped in the wheel). English only: VADER's lexicon is English, and read on another
language its score means nothing, so other languages get no flag at all."""

import functools

# VADER's compound score, -1 (most negative) to 1. At or below this the chat is flagged
# "negative": the score VADER's authors give for negative is -0.05; a visitor who is
# merely terse scores near 0, so the bar is set lower to flag the upset, not the curt.
NEGATIVE_AT = -0.5
SUPPORTED_LANGUAGES = frozenset({"en"})


@functools.cache
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def assess(text: str, language: str | None) -> dict | None:
    """`{"negative": bool, "score": compound}` for `text`, or None when its language is
    not one VADER reads (an unknown language, too short to tell, is read as English:
    short complaints are common and VADER scores single words well)."""
    if language is not None and language not in SUPPORTED_LANGUAGES:
        return None
    if not text.strip():
        return None
    score = _analyzer().polarity_scores(text)["compound"]
    return {"negative": score <= NEGATIVE_AT, "score": round(score, 3)}
