"""The one caller of `group_send`: events for groups, sent after their change committed.

A service run from a socket runs on an ORM thread; what it announces is collected in an
`Outbox` and sent by the socket on the event loop after the service returns (one Redis
pipeline for all of them), instead of blocking the ORM thread on Redis round trips.
Outside an outbox (a management command, the admin) it is sent at once.
"""

import contextvars
import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from ..protocol import outbound
from . import groups

logger = logging.getLogger(__name__)

_outbox: contextvars.ContextVar[list | None] = contextvars.ContextVar("outbox", default=None)


def send(to: Iterable[str], event: dict[str, Any]) -> None:
    """Send `event` to each group, for a change that has committed: into the current
    `Outbox` if there is one, else at once."""
    outbox = _outbox.get()
    if outbox is not None:
        outbox.extend((group, event) for group in to)
    else:
        _send_now(tuple(to), event)


def _send_now(to: tuple[str, ...], event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    for group in to:
        try:
            async_to_sync(layer.group_send)(group, event)
        except Exception:
            # The commit stands; clients recover what they missed by seq.
            logger.exception("group_send to %s failed", group)


class Outbox:
    """Collects what one service call sends, for async code to `flush`."""

    def __enter__(self) -> list:
        self.events: list = []
        self._token = _outbox.set(self.events)
        return self.events

    def __exit__(self, *exc_info: object) -> None:
        _outbox.reset(self._token)


async def flush(events: list) -> None:
    layer = get_channel_layer()
    send_many = getattr(layer, "group_send_many", None)  # realtime.layer: one pipeline
    if send_many is not None and events:
        outcomes = await send_many(events)
    else:
        outcomes = []
        for group, event in events:
            try:
                await layer.group_send(group, event)
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
    for (group, _event), outcome in zip(events, outcomes, strict=True):
        if outcome is not None:
            logger.error("group_send to %s failed", group, exc_info=outcome)


async def ring_again(to: Iterable[str], message: dict[str, Any], *, skip_channel: str) -> None:
    """Broadcast an already stored message once more (a retried send: the first ring may
    be lost); sockets that have shown its seq drop it."""
    event = groups.frame_event(outbound.message(message), skip_channel=skip_channel)
    await flush([(group, event) for group in to])
