"""Abuse defences on real daphne processes sharing one Redis: limits counted once for
every worker, daphne's own frame-size limit in front of the app's, and per-client limits
behind a proxy (daphne --proxy-headers)."""

from pathlib import Path

import pytest

from devstack import (
    Database,
    Server,
    Site,
    connect_visitor,
    request,
    visitor_session,
)

pytest_plugins = ["tests.e2e"]
pytestmark = pytest.mark.e2e


async def session_status(worker: Server, site: Site, headers: dict[str, str] | None = None) -> int:
    """POST a new visitor session to `worker`; the HTTP status."""
    answer = await request(
        worker.port,
        "POST",
        "/api/v1/visitor-sessions",
        headers={"Origin": site.origin, **(headers or {})},
        json={"site_key": site.key},
    )
    return answer.status


def stored_messages(database: Database) -> int:
    return database.query("SELECT COUNT(*) FROM chat_message")[0][0]


@pytest.mark.parametrize(
    "e2e_overrides",
    [
        {
            "SUPPORTDESK_LIMIT_IP_SESSIONS": "4 per minute",
            "SUPPORTDESK_LIMIT_VISITOR_MESSAGES": "3 per minute",
        }
    ],
    ids=["tight-limits"],
)
async def test_two_workers_count_against_one_limit_kept_in_redis(
    daphne_workers, e2e_site, e2e_database
):
    first, second = daphne_workers
    token = await visitor_session(first, e2e_site)
    tab_on_first, _ = await connect_visitor(first, e2e_site, token, "tab1")
    tab_on_second, _ = await connect_visitor(second, e2e_site, token, "tab2")

    answers = []
    for n, tab in enumerate([tab_on_first, tab_on_second, tab_on_first, tab_on_second]):
        await tab.send({"type": "message.send", "client_msg_id": f"m{n}", "body": f"hi {n}"})
        answers.append(
            await tab.recv_until(
                ("message.ack", "error"), where=lambda f, n=n: f.get("client_msg_id") == f"m{n}"
            )
        )
    # One session was issued above; three more fit, on whichever worker.
    statuses = [
        await session_status(worker, e2e_site) for worker in (second, first, second, first, second)
    ]

    assert [a["type"] for a in answers] == ["message.ack"] * 3 + ["error"]
    assert answers[3]["code"] == "rate_limited"
    assert stored_messages(e2e_database) == 3
    assert statuses == [201, 201, 201, 429, 429]


async def test_daphne_drops_frames_past_its_limit_and_the_app_closes_those_past_64_kib(
    spawn_workers, e2e_site, e2e_database
):
    (worker,) = spawn_workers(1)
    token = await visitor_session(worker, e2e_site)
    app_refused, _ = await connect_visitor(worker, e2e_site, token, "96k")
    daphne_refused, _ = await connect_visitor(worker, e2e_site, token, "200k")

    await app_refused.send({"type": "message.send", "client_msg_id": "a", "body": "x" * 96_000})
    await daphne_refused.send({"type": "message.send", "client_msg_id": "b", "body": "x" * 200_000})

    # Smaller frames over 64 KiB reach the app, which closes with 4009. Past
    # --websocket-max-message-size (131072) daphne's WebSocket layer never hands the
    # frame to the app: it fails the connection itself, by dropping it (the client
    # sees 1006; a server that sent 1009 would be as good).
    assert await app_refused.wait_closed() == 4009
    assert await daphne_refused.wait_closed() in (1006, 1009)
    assert stored_messages(e2e_database) == 0


@pytest.fixture
def proxied_worker(e2e_env: dict[str, str], tmp_path: Path):
    """One daphne as deployed behind a proxy: --proxy-headers, so the client address is
    the X-Forwarded-For the proxy sets. New sessions are limited to 1 a minute."""
    env = {**e2e_env, "SUPPORTDESK_LIMIT_IP_SESSIONS": "1 per minute"}
    worker = Server.worker("proxied", env, tmp_path, proxy_headers=True).start()
    yield worker
    worker.stop()


async def test_behind_a_proxy_each_forwarded_client_has_its_own_limit(proxied_worker, e2e_site):
    async def status(client_ip: str) -> int:
        return await session_status(proxied_worker, e2e_site, {"X-Forwarded-For": client_ip})

    assert [
        await status("198.51.100.1"),
        await status("198.51.100.1"),
        await status("198.51.100.2"),
    ] == [201, 429, 201]
