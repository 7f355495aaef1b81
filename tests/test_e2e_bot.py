"""The knowledge-base bot on two real daphne workers sharing Redis and the database: the
answer reaches every tab of the visitor whichever worker it is on, and "Talk to a
person" from the other worker routes the chat to an agent with the whole exchange."""

import asyncio

import pytest

from devstack import (
    Database,
    Server,
    Site,
    connect_agent,
    connect_visitor,
    create_agent,
    login,
    manage,
    set_presence,
    visitor_session,
)

pytest_plugins = ["tests.e2e"]
pytestmark = pytest.mark.e2e

SHIPPING = """# Shipping times and costs
URL: https://acme.test/help/shipping

Standard delivery takes 3 to 5 business days and costs $4.95. It is free on orders over $75.
"""


# Keyword search: the same answers whether requirements-ai.txt is installed or not.
@pytest.mark.parametrize("e2e_overrides", [{"SUPPORTDESK_BOT_MODEL": "0"}], ids=["keyword"])
async def test_the_bots_answer_reaches_both_workers_and_the_handoff_routes_across_them(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database, tmp_path
):
    w0, w1 = daphne_workers
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "shipping.md").write_text(SHIPPING)
    imported = await asyncio.to_thread(
        manage, e2e_env, "import_kb", "--site", e2e_site.key, str(tmp_path / "kb")
    )
    assert imported.split()[-1] == "1"
    password = await asyncio.to_thread(create_agent, e2e_env, "alice", capacity=2)
    alice, _ready = await connect_agent(w1, await login(w1, "alice", password), "alice")
    await set_presence(alice)
    token = await visitor_session(w0, e2e_site)
    tab0, _ready = await connect_visitor(w0, e2e_site, token, "tab0")
    tab1, _ready = await connect_visitor(w1, e2e_site, token, "tab1")

    await tab0.send(
        {"type": "message.send", "client_msg_id": "q1", "body": "How long does delivery take?"}
    )

    answers = [
        await tab.recv_until("message", where=lambda f: f["sender"] == "bot")
        for tab in (tab0, tab1)
    ]
    assert answers[0] == answers[1]
    assert "3 to 5 business days" in answers[0]["body"]
    assert answers[0]["sources"][0]["title"] == "Shipping times and costs"
    # The chat is the bot's: alice was not routed it.
    assert alice.of_type("conversation.assigned") == []

    await tab1.send({"type": "handoff"})

    assigned = await alice.recv_until("conversation.assigned")
    history = assigned["conversation"]["messages"]
    assert [(m["sender"], m["seq"]) for m in history] == [("visitor", 1), ("bot", 2)]
    assert history[1]["sources"] == answers[0]["sources"]
    await tab0.recv_until("conversation.assigned")
    rows = e2e_database.query(
        "SELECT status FROM chat_conversation WHERE id = %s", (answers[0]["conversation"],)
    )
    assert rows == [("active",)]
