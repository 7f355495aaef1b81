"""Sentences made in no language and read in the reader's: a refusal formatted when it
is read, and numbers grouped the reader's way. The core and the apps both word their
refusals with these, so they live below both."""

from django.utils import translation
from django.utils.formats import number_format
from django.utils.functional import Promise, lazy

_formatted = lazy(lambda message, params: str(message) % params, str)


def lazy_format(message: str | Promise, /, **params: object) -> Promise:
    """`lazy_format(gettext_lazy("over %(limit)s characters."), limit=10000)`: the
    sentence in the language active when it is read (str()), not when it is made. A
    refusal is made on an ORM thread in no language in particular and read by the socket
    that answers, in that socket's language (`ProtocolError.frame`)."""
    return _formatted(message, params)


def _grouped(number: int) -> str:
    # English keeps the contract's own spelling ("body is over 10000 characters.").
    english = (translation.get_language() or "en").split("-")[0] == "en"
    return str(number) if english else number_format(number, force_grouping=True)


# A number grouped as the language reading it groups digits (10.000; 10 000).
grouped_number = lazy(_grouped, str)
