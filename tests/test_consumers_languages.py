"""Error details a person reads come in that person's language: the dashboard's (its
Language cookie, else the browser's) on an agent socket, the widget's on a visitor's.
The error codes beside them stay the contract's."""

import pytest

from chat.models import Visitor
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)


async def agent_socket(sockets, agent, *, cookie: str = "", accept_language: str = ""):
    session = await ws.session_cookie(agent.user)
    communicator = sockets.track(ws.agent_communicator(session + cookie))
    if accept_language:
        communicator.scope["headers"].append((b"accept-language", accept_language.encode()))
    connected, _ = await communicator.connect(timeout=ws.TIMEOUT)
    assert connected
    await ws.receive_until(communicator, "ready")
    return communicator


async def test_an_agent_with_a_spanish_dashboard_reads_error_details_in_spanish(personas, sockets):
    agent = await agent_socket(sockets, personas.alice, cookie="; django_language=es")
    await agent.send_json_to({"type": "canned.delete", "id": 999999})
    error = await ws.receive_until(agent, "error")
    assert (error["code"], error["detail"]) == ("not_found", "Esa respuesta predefinida no existe.")

    await agent.send_json_to({"type": "presence", "status": "busy"})
    error = await ws.receive_until(agent, "error")
    assert error["code"] == "bad_frame"
    assert error["detail"] == 'status debe ser "available" o "away".'


async def test_the_browser_language_decides_without_a_cookie_and_numbers_group_its_way(
    personas, sockets
):
    agent = await agent_socket(sockets, personas.alice, accept_language="de-DE,de;q=0.9")
    await agent.send_json_to({"type": "canned.create", "shortcut": "refund", "body": "x" * 10_001})
    error = await ws.receive_until(agent, "error")
    assert error["code"] == "too_long"
    assert error["detail"] == "Die Nachricht ist länger als 10.000 Zeichen."


async def test_an_english_agent_reads_the_contracts_english(personas, sockets):
    agent = await agent_socket(sockets, personas.alice)
    await agent.send_json_to({"type": "canned.delete", "id": 999999})
    error = await ws.receive_until(agent, "error")
    assert (error["code"], error["detail"]) == ("not_found", "No such canned response.")


async def test_a_visitor_reads_error_details_in_its_widgets_language(personas, sockets):
    # The widget said German when it opened the session; the browser says English.
    await ws.db(Visitor.objects.filter(pk=personas.v1.pk).update, language="de")
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "   "})
    error = await ws.receive_until(visitor, "error")
    assert (error["code"], error["client_msg_id"]) == ("bad_frame", "c-1")
    assert error["detail"] == "Die Nachricht ist leer."

    await visitor.send_json_to({"type": "rating", "score": 9})
    error = await ws.receive_until(visitor, "error")
    assert error["detail"] == "score muss eine ganze Zahl von 1 bis 5 sein."
