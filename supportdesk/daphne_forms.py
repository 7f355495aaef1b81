"""Daphne hands every request body to Django untouched; Twisted, under it, also parses a
POSTed form body for its own `request.args`, which Daphne never reads.

For a multipart body Twisted cannot parse (a broken upload, a client's bug) it answers
400 itself, with no body, before Django sees the request: the widget and API clients
would get an empty 400 instead of the JSON error the upload view gives. And every upload
that parses is parsed twice, once here for nothing. So Twisted's form parsing is off;
Django parses the bodies it needs.

Twisted and Daphne (pinned in requirements.txt): `Request._parsePOSTFormSubmission`,
set by `Request.__init__`, which Daphne's `WebRequest.__init__` calls.
"""

import functools

from daphne.http_protocol import WebRequest


def stop_twisted_parsing_forms() -> None:
    if getattr(WebRequest.__init__, "_forms_left_to_django", False):
        return
    original = WebRequest.__init__

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    init._forms_left_to_django = True
    WebRequest.__init__ = init
