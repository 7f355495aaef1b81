"""What capability apps add to `GET /healthz`: a named report each (the bot says which
mode it runs in). Informational: a report never makes the answer 503."""

from collections.abc import Callable
from typing import Any

_reporters: dict[str, Callable[[], Any]] = {}


def register(name: str, report: Callable[[], Any]) -> None:
    _reporters[name] = report


def reports() -> dict[str, Any]:
    return {name: report() for name, report in _reporters.items()}
