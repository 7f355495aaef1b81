"""The language a visitor writes in, by py3langid (its model ships in the wheel: nothing
is downloaded). Short texts are not guessed: "hi" or "ok" say nothing reliable."""

import functools

from django.conf.locale import LANG_INFO

# Fewer letters than this and no language is named; below this confidence neither.
MIN_LETTERS = 12
MIN_CONFIDENCE = 0.9


@functools.cache
def _identifier():
    # Loaded once per worker, on first use (about 2 MB; a second or so).
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect(text: str) -> dict | None:
    """`{"code": "de", "name": "German"}` for the language `text` is written in, or None
    when it is too short or the guess too unsure."""
    if sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return None
    code, confidence = _identifier().classify(text)
    if confidence < MIN_CONFIDENCE:
        return None
    return {"code": code, "name": name_of(code)}


def name_of(code: str) -> str:
    """The English name of a language code, from Django's own table; the code itself for
    the few py3langid knows that Django does not."""
    info = LANG_INFO.get(code)
    return info["name"] if info else code.upper()
