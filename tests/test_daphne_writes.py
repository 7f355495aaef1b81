"""A frame the worker writes leaves for the client at once (supportdesk/daphne_sending.py,
point 3), and what the kernel cannot take yet still leaves whole and in order."""

import socket

import pytest
from twisted.internet import main, tcp

from supportdesk.daphne_sending import patch_immediate_writes, unsent_bytes


class Reactor:
    """What a TCP connection asks of its reactor when it must wait to write."""

    def __init__(self) -> None:
        self.writers: set = set()

    def addWriter(self, writer) -> None:  # noqa: N802 - Twisted's name
        self.writers.add(writer)

    def removeWriter(self, writer) -> None:  # noqa: N802
        self.writers.discard(writer)


class Producer:
    def __init__(self) -> None:
        self.asked = 0

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's names
        self.asked += 1

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


@pytest.fixture
def wire():
    """A Twisted TCP connection (its socket one end of a pair), the other end, and the
    connection's reactor."""
    patch_immediate_writes()
    ours, peer = socket.socketpair()
    reactor = Reactor()
    connection = tcp.Connection(ours, protocol=None, reactor=reactor)
    connection.connected = True  # as tcp.Server, daphne's, starts out
    # Daphne's HTTP channel registers itself as the connection's streaming producer.
    connection.registerProducer(Producer(), True)
    peer.setblocking(False)
    yield connection, peer, reactor
    ours.close()
    peer.close()


def test_a_frame_written_is_with_the_client_before_the_loop_turns(wire):
    connection, peer, reactor = wire

    connection.write(b"\x81\x05hello")

    assert peer.recv(100) == b"\x81\x05hello"
    assert reactor.writers == set()  # nothing left to wait for
    assert unsent_bytes(connection) == 0


def test_what_the_kernel_cannot_take_yet_follows_whole_and_in_order(wire):
    connection, peer, reactor = wire
    big = bytes(range(256)) * 16384  # 4 MiB: more than the socket buffers hold

    connection.write(big)
    connection.write(b"tail")  # must not overtake what waits before it

    assert reactor.writers == {connection}
    assert unsent_bytes(connection) > 0
    received = bytearray()
    while len(received) < len(big) + 4:
        try:
            received += peer.recv(1 << 20)
        except BlockingIOError:
            assert connection.doWrite() is None  # the loop's turn: socket writable
    assert bytes(received) == big + b"tail"
    assert reactor.writers == set()


def test_a_write_to_a_client_gone_is_reported_by_the_loop_as_before(wire):
    connection, peer, reactor = wire
    peer.close()

    connection.write(b"\x81\x02hi")  # does not raise here

    assert reactor.writers == {connection}
    assert connection.doWrite() is main.CONNECTION_LOST


def test_a_pull_producers_writes_wait_for_the_loop_which_asks_it_for_more(wire):
    connection, peer, reactor = wire
    connection.unregisterProducer()
    producer = Producer()
    connection.registerProducer(producer, False)  # a pull producer: asked once at start
    asked = producer.asked

    connection.write(b"chunk")

    assert reactor.writers == {connection}
    assert connection.doWrite() is None
    assert peer.recv(100) == b"chunk"
    assert producer.asked == asked + 1  # the loop asked for the next chunk
