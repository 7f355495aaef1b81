"""Three fixes to how Daphne sends WebSocket frames, applied from `supportdesk/asgi.py`.

1. A bound on what Daphne holds for a client that stops reading. Daphne never makes
   the application wait for a slow client: `send` returns at once and the frame goes
   into the Twisted transport's user-space write buffer, which has no limit. A client
   that stops reading while frames keep coming (a frozen tab, a dead network) would
   grow the worker's memory until Daphne's ping timeout notices, tens of seconds and
   possibly hundreds of megabytes later. (The pub/sub channel layer's per-channel queue
   stays empty meanwhile: the consumer drains it into that buffer.) So before each
   frame is queued the buffer is checked: once more than `unsent_limit` bytes are still
   unsent, the connection is aborted. The consumer gets its disconnect as usual and the
   client, when it reconnects, resumes by seq. A single frame larger than the limit
   (a long `ready`) is still sent; only what queues up behind it is bounded.

2. Daphne's `--websocket-max-message-size` is meant for what clients send, but autobahn
   enforces it on what the server sends too: a `ready`, `sync` or agent history longer
   than it (13 messages of 10,000 characters exceed 131072 bytes) would raise inside the
   consumer and close the socket with 1011, again on every reconnect. Frames the server
   sends are not limited by it.

3. A frame goes to the kernel when it is written (`patch_immediate_writes`). Twisted's
   TCP transport only buffers a write and registers the socket for writability; the
   bytes leave on the event loop's next turn, and the socket is unregistered again
   once they are gone: two epoll changes, a loop turn and Twisted's logging context
   around every frame the worker sends (about 6 % of a worker's CPU at 500 chats,
   docs/performance.md, change 30). asyncio's own transports try the send at once and
   buffer only what the kernel did not take; so does this, when nothing is waiting
   before it (the order of bytes is kept) and neither a pull producer nor TLS is involved.

Daphne 4.2 / autobahn / Twisted internals (pinned in requirements.txt):
`WebSocketProtocol.serverSend`, `maxMessagePayloadSize`, and the TCP transport's
`dataBuffer`, `offset`, `_tempDataLen`, `_writeDisconnected` and `writeSomeData`.
"""

import logging

logger = logging.getLogger(__name__)


def unsent_bytes(transport) -> int:
    """Bytes a Twisted TCP transport has accepted but not yet handed to the kernel."""
    buffered = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return buffered + getattr(transport, "_tempDataLen", 0)


def patch_daphne_sending(unsent_limit: int) -> None:
    """Patch Daphne's WebSocketProtocol as the module doc says (idempotent)."""
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "unsent_limit", None) is not None:
        WebSocketProtocol.unsent_limit = unsent_limit
        return
    server_send = WebSocketProtocol.serverSend

    def serverSend(self, content, binary=False):  # noqa: N802 - Daphne's name
        if getattr(self, "dropped_as_slow", False):
            return
        unsent = unsent_bytes(self.transport)
        if unsent > self.unsent_limit:
            self.dropped_as_slow = True
            logger.warning(
                "dropping WebSocket client %s: %d bytes unsent (limit %d)",
                self.client_addr,
                unsent,
                self.unsent_limit,
            )
            # No close handshake: it would queue behind the unread bytes.
            self.transport.abortConnection()
            return
        # The inbound size limit, lifted for this outbound frame (Twisted runs one
        # callback at a time, so no inbound frame is checked meanwhile).
        inbound_limit, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
        try:
            server_send(self, content, binary)
        finally:
            self.maxMessagePayloadSize = inbound_limit

    WebSocketProtocol.unsent_limit = unsent_limit
    WebSocketProtocol.serverSend = serverSend


def patch_immediate_writes() -> None:
    """Patch Twisted's TCP connections as point 3 of the module doc says (idempotent)."""
    from twisted.internet import tcp

    if getattr(tcp.Connection.write, "immediate", False):
        return
    buffered_write = tcp.Connection.write

    def write(self, data: bytes) -> None:
        if (
            type(data) is bytes
            and data
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not self.TLS
            # Daphne's HTTP channel stays registered as the streaming producer of its
            # upgraded connection; only a pull producer needs doWrite to ask it for more.
            and (self.producer is None or self.streamingProducer)
            and not unsent_bytes(self)
        ):
            sent = self.writeSomeData(data)
            # An int: what the kernel took (0 when its buffer is full). Anything else
            # is the connection lost: the buffered path's doWrite reports it.
            if type(sent) is int and sent > 0:
                if sent == len(data):
                    return
                data = data[sent:]
        buffered_write(self, data)

    write.immediate = True
    tcp.Connection.write = write
