"""Autobahn (under daphne) formats the arguments of its debug log lines whether or not
debug logging is on: per socket it pretty-prints its 40-odd settings (`pformat`, about
0.7 ms here, a tenth of a reconnect's CPU in the storm, docs/performance.md change
19), and per frame received or sent it colours function names and values for the
terminal (`hltype`, `hlval` through click: about 15 µs a frame). The log lines are
dropped unread at our log level, so here those helpers return a value formatted only
if a line is ever written: the same text when debug logging is on, no work when off.

Autobahn internals (pinned in requirements.txt): the module globals `pformat`, `hltype`
and `hlval` of `autobahn.websocket.protocol` and `autobahn.twisted.websocket`.
"""

import functools
from collections.abc import Callable
from typing import Any

from autobahn.twisted import websocket as twisted_websocket
from autobahn.websocket import protocol


class _Formatted:
    """`function(value)`, computed when the log line is written (if ever)."""

    __slots__ = ("function", "value")

    def __init__(self, function: Callable[[Any], str], value: Any) -> None:
        self.function = function
        self.value = value

    def __str__(self) -> str:
        return self.function(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _deferred(function: Callable[[Any], str]) -> Callable[[Any], _Formatted]:
    @functools.wraps(function)
    def deferred(value: Any) -> _Formatted:
        return _Formatted(function, value)

    deferred._supportdesk_deferred = True
    return deferred


def defer_debug_formatting() -> None:
    for module in (protocol, twisted_websocket):
        for name in ("pformat", "hltype", "hlval"):
            function = getattr(module, name, None)
            if function is not None and not getattr(function, "_supportdesk_deferred", False):
                setattr(module, name, _deferred(function))
