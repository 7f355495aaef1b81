"""Autobahn's debug-log arguments are formatted only when a line is written
(supportdesk/autobahn_logging.py), and then as before."""

from pprint import pformat

from autobahn import util
from autobahn.twisted import websocket as twisted_websocket
from autobahn.websocket import protocol

import supportdesk.asgi  # noqa: F401 - applies the change, as a worker does
from supportdesk.autobahn_logging import defer_debug_formatting


def test_the_helpers_defer_their_work_and_give_the_same_text():
    settings = [("openHandshakeTimeout", 5, "WebSocketServerFactory")] * 40
    for module in (protocol, twisted_websocket):
        assert f"{module.hltype(test_the_helpers_defer_their_work_and_give_the_same_text)}" == (
            util.hltype(test_the_helpers_defer_their_work_and_give_the_same_text)
        )
        assert str(module.hlval(1234)) == util.hlval(1234)
    assert str(protocol.pformat(settings)) == pformat(settings)


def test_applying_it_twice_wraps_once():
    before = protocol.hltype
    defer_debug_formatting()
    assert protocol.hltype is before
