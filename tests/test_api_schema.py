"""schemathesis against the live API: a real daphne worker, and every operation of the
OpenAPI document called with generated input (valid and not) and a valid API key. No
answer may be a 5xx, and every answer must match the document: its status, content type,
headers and body.

Generated ids rarely name an object that exists, so each case is also sent a second time
with its ids replaced by ones that do (a real conversation, its visitor): the answers for
real objects are checked too.

The document is made in this process from the code (the worker serves the very same, as
the last test checks): schemathesis's lazy loading from a fixture does not work under
pytest 9.
"""

import asyncio
import json
import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import negative_data_rejection

from devstack import (
    connect_agent,
    connect_visitor,
    create_agent,
    create_site,
    login,
    manage,
    run_blocking,
    set_presence,
    start_workers,
    stop_servers,
    visitor_session,
)
from integrations.api import api
from tests.e2e import SITE_ORIGIN, process_env

pytest_plugins = ["tests.e2e"]
pytestmark = pytest.mark.e2e

# Per operation, each sent once or twice; API_SCHEMA_EXAMPLES=500 for a longer hunt.
EXAMPLES = int(os.environ.get("API_SCHEMA_EXAMPLES", 25))


async def _open_a_chat(worker, site, env) -> tuple[int, int]:
    """A visitor's chat answered by an agent: (conversation id, visitor id)."""
    password = await asyncio.to_thread(create_agent, env, "alice", capacity=3)
    cookie = await login(worker, "alice", password)
    agent, _ready = await connect_agent(worker, cookie, "alice")
    await set_presence(agent)
    token = await visitor_session(worker, site)
    visitor, _ready = await connect_visitor(worker, site, token, "visitor")
    await visitor.send({"type": "message.send", "client_msg_id": "m-1", "body": "Hello?"})
    assigned = await agent.recv_until("conversation.assigned")
    await agent.send(
        {
            "type": "message.send",
            "conversation": assigned["conversation"]["id"],
            "client_msg_id": "a-1",
            "body": "Hi, how can I help?",
        }
    )
    await visitor.recv_until("message", body="Hi, how can I help?")
    await visitor.close()
    await agent.close()
    return assigned["conversation"]["id"], assigned["conversation"]["visitor"]["id"]


@pytest.fixture(scope="module")
def live_api(_e2e_template, tmp_path_factory):
    """One worker over a database holding site acme, an API key of it, an agent and a
    conversation with two messages."""
    folder = tmp_path_factory.mktemp("api-schema")
    database = _e2e_template[0].clone(folder, "api_schema")
    env = process_env(
        DATABASE_URL=database.url,
        # Thousands of requests in a minute: the key's limit has its own test.
        SUPPORTDESK_LIMIT_API_KEY="100000 per minute",
        SUPPORTDESK_LIMIT_IP_SESSIONS="100000 per minute",
    )
    site = _e2e_template[1]
    key = manage(env, "create_api_key", "--site", site.key).strip().splitlines()[-1]
    create_site(env, "globex", "http://globex.test")
    (worker,) = start_workers(1, env, folder, prefix="api")
    try:
        conversation, visitor = run_blocking(_open_a_chat(worker, site, env))
        with requests.Session() as session:  # one keep-alive connection for every case
            yield {
                "worker": worker,
                "session": session,
                "key": key,
                "ids": {"conversation_id": conversation, "visitor_id": visitor},
            }
    finally:
        stop_servers([worker])
        database.drop()


def _document() -> dict:
    return json.loads(json.dumps(api.get_openapi_schema(path_prefix="/api/v1/")))


# Undeclared query parameters are ignored, not refused (a client may send one a newer
# version knows): schemathesis is told not to count them as input to refuse. A body
# over an endpoint's size limit is refused with the documented 413 before it is read,
# whatever else is wrong with it: that too is a refusal.
schema = schemathesis.openapi.from_dict(
    _document(),
    config=SchemathesisConfig.from_dict(
        {
            "generation": {"allow-extra-parameters": False},
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": [
                        *(400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429),
                        "5xx",
                    ]
                }
            },
        }
    ),
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_answer_matches_the_document_and_none_is_a_5xx(case, live_api):
    headers = {"Authorization": f"Bearer {live_api['key']}", "Origin": SITE_ORIGIN}
    base_url = live_api["worker"].url("")
    session = live_api["session"]
    case.call_and_validate(base_url=base_url, session=session, headers=headers)
    real = {
        name: live_api["ids"][name]
        for name in (case.path_parameters or {})
        if name in live_api["ids"]
    }
    if real:
        # The same case naming real objects; a generated id that broke the document is
        # now a valid one, so the case no longer counts as one to refuse.
        case.path_parameters = {**case.path_parameters, **real}
        case.call_and_validate(
            base_url=base_url,
            session=session,
            headers=headers,
            excluded_checks=[negative_data_rejection],
        )


def test_the_worker_serves_this_document_without_a_key(live_api):
    response = requests.get(live_api["worker"].url("/api/v1/openapi.json"), timeout=10)

    assert response.status_code == 200
    assert response.json() == _document()
    operations = [(m, p) for p, item in _document()["paths"].items() for m in item]
    assert len(operations) >= 13


def test_a_broken_multipart_upload_gets_the_views_json_answer(live_api):
    """Twisted, under daphne, used to answer a multipart body it could not parse with an
    empty 400 of its own (supportdesk/daphne_forms.py)."""
    response = requests.post(
        live_api["worker"].url("/api/v1/attachments"),
        data=b"--c637--\r\n",
        headers={
            "Content-Type": "multipart/form-data; boundary=c637",
            "Authorization": "Bearer not-a-visitor-token",
            "Origin": SITE_ORIGIN,
        },
        timeout=10,
    )

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
