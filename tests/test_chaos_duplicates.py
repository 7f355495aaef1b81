"""Idempotent sends under a race: one visitor's many tabs, on two workers, all sending
the same client_msg_id at once."""

import asyncio

import pytest

from devstack import Database, Server, Site, visitor_session
from tests.chaos import (
    NO_SHARED_LIMITS,
    chaos_enabled,
    print_figures,
    start_visitor,
    stop_all,
    wait_all,
)

pytest_plugins = ["tests.e2e", "tests.chaos"]
pytestmark = [pytest.mark.chaos, pytest.mark.e2e, chaos_enabled]

TABS = 50
SENDS_PER_TAB = 20  # under the per-socket burst of 30


@pytest.fixture
def e2e_overrides() -> dict[str, str]:
    return dict(NO_SHARED_LIMITS)


async def test_a_thousand_racing_duplicate_sends_store_one_message_and_ack_one_seq_to_all(
    daphne_workers: list[Server], e2e_site: Site, e2e_database: Database, capsys
):
    token = await visitor_session(daphne_workers[0], e2e_site)
    tabs = await asyncio.gather(
        *(start_visitor(f"tab{n}", [daphne_workers[n % 2]], e2e_site, token) for n in range(TABS))
    )
    frame = {"type": "message.send", "client_msg_id": "same-id", "body": "Is anyone there?"}

    async def hammer(tab) -> None:
        await asyncio.gather(*(tab.send_frame(frame) for _ in range(SENDS_PER_TAB)))

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(hammer(tab) for tab in tabs))

    def acks(tab) -> list[dict]:
        return [f for f in tab.frames if f["type"] == "message.ack"]

    await wait_all(
        lambda: all(len(acks(tab)) == SENDS_PER_TAB for tab in tabs), "every send acked", 60
    )
    took = loop.time() - started
    answers = {(a["conversation"], a["seq"]) for tab in tabs for a in acks(tab)}
    rows = e2e_database.query(
        "SELECT conversation_id, seq FROM chat_message WHERE client_msg_id = %s", ("same-id",)
    )
    ((all_rows,),) = e2e_database.query("SELECT COUNT(*) FROM chat_message")
    ((conversations,),) = e2e_database.query("SELECT COUNT(*) FROM chat_conversation")
    # Tabs also see the message as a `message` frame (a tab that was never acked first
    # hears of it from another's send): at most once each, whatever the retries rang.
    shown = [len([f for f in tab.frames if f["type"] == "message"]) for tab in tabs]
    await asyncio.gather(*(tab.round_trip() for tab in tabs))
    shown_after = [len([f for f in tab.frames if f["type"] == "message"]) for tab in tabs]
    print_figures(
        capsys,
        "1,000 duplicate sends",
        {
            "sends": TABS * SENDS_PER_TAB,
            "acks": sum(len(acks(tab)) for tab in tabs),
            "distinct_acks": len(answers),
            "rows": len(rows),
            "message_frames_seen": sum(shown_after),
            "seconds": round(took, 2),
        },
    )
    assert (len(rows), all_rows, conversations) == (1, 1, 1)
    assert answers == {tuple(rows[0])}
    assert shown == shown_after
    assert max(shown_after) <= 1
    assert [tab.errors for tab in tabs if tab.errors] == []
    assert [tab.closes for tab in tabs if tab.closes] == []
    await stop_all(tabs)
