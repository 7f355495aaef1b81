"""Webhooks in one process: what the core keeps for them, the bodies, the Standard
Webhooks signatures as a real receiver checks them, retries and backoff, the order of
first attempts per conversation, an endpoint switched off after a day of failures, and
the admin's delivery log with "send again". Across real workers: test_e2e_webhooks.py."""

import io
import itertools
import json
from datetime import datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from chat.conversations import closing, ratings, sending
from chat.conversations.actors import Actor
from chat.models import DurableEvent, EventInterest
from devstack.receiver import WebhookReceiver
from integrations import delivery, outbox
from integrations.endpoints import add_webhook, rotate_secret
from integrations.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db(transaction=True)
Status = WebhookDelivery.Status
_ids = itertools.count(1)


def visitor_says(visitor, body="Hello?") -> dict:
    posted = sending.post_message(
        Actor.visitor(visitor.pk), client_msg_id=f"v-{next(_ids)}", body=body
    )
    return posted.message


def agent_says(agent, conversation_id, body="Hi!") -> dict:
    posted = sending.post_message(
        Actor.agent(agent.pk),
        conversation_id=conversation_id,
        client_msg_id=f"a-{next(_ids)}",
        body=body,
    )
    return posted.message


def run_turn() -> int:
    """One turn of a worker's sender, as the worker runs it."""
    return async_to_sync(delivery.run_once)()


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.stop()


def verify(endpoint: WebhookEndpoint, request) -> dict:
    """What a receiver does with the `standardwebhooks` library (docs/api.md)."""
    return Webhook(endpoint.secret).verify(request.body, request.headers)


# --- what the core keeps ------------------------------------------------------------


def test_without_an_endpoint_the_core_keeps_no_event(personas):
    chat = visitor_says(personas.v1)
    agent_says(personas.alice, chat["conversation"])

    assert DurableEvent.objects.count() == 0


def test_only_the_types_an_endpoint_hears_are_kept(personas):
    add_webhook(site=personas.acme, url="https://crm.example/h", events=["conversation.closed"])
    chat = visitor_says(personas.v1)
    agent_says(personas.alice, chat["conversation"])
    assert DurableEvent.objects.count() == 0

    closing.close_conversation(Actor.agent(personas.alice.pk), conversation_id=chat["conversation"])

    assert list(DurableEvent.objects.values_list("type", flat=True)) == ["conversation.closed"]


def test_removing_the_last_endpoint_stops_the_keeping(personas, admin_client):
    endpoint = add_webhook(site=personas.acme, url="https://crm.example/h")
    assert EventInterest.objects.filter(site=personas.acme).count() == 5

    admin_client.post(f"/admin/integrations/webhookendpoint/{endpoint.pk}/delete/", {"post": "yes"})

    assert EventInterest.objects.count() == 0
    visitor_says(personas.v1)
    assert DurableEvent.objects.count() == 0


# --- bodies -------------------------------------------------------------------------


def bodies(endpoint: WebhookEndpoint) -> list[dict]:
    rows = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("event_id")
    return [json.loads(row.body) for row in rows]


def test_one_delivery_per_listening_endpoint_with_the_contracts_bodies(personas):
    every = add_webhook(site=personas.acme, url="https://crm.example/all")
    closes = add_webhook(
        site=personas.acme, url="https://slack.example/c", events=["conversation.closed"]
    )
    first = visitor_says(personas.v1, "Where is my parcel?")
    conversation = first["conversation"]
    reply = agent_says(personas.alice, conversation, "On its way")
    closing.close_conversation(Actor.agent(personas.alice.pk), conversation_id=conversation)
    ratings.rate_conversation(visitor_id=personas.v1.pk, score=5, comment="quick")

    assert outbox.dispatch() == 6
    assert DurableEvent.objects.count() == 0  # each became its deliveries

    assert [b["type"] for b in bodies(closes)] == ["conversation.closed"]
    # The first message opens the chat, which is then routed to alice.
    created, asked, assigned, answered, closed, rated = bodies(every)
    assert [created["type"], assigned["type"], closed["type"], rated["type"]] == [
        "conversation.created",
        "conversation.assigned",
        "conversation.closed",
        "csat.submitted",
    ]
    assert asked["type"] == answered["type"] == "message.created"
    assert (asked["data"]["body"], asked["data"]["seq"]) == ("Where is my parcel?", first["seq"])
    assert answered["data"]["seq"] == reply["seq"]
    assert answered["data"]["agent"] == {"id": personas.alice.pk, "display_name": "Alice"}
    assert assigned["data"]["agent"]["id"] == personas.alice.pk
    assert created["data"]["conversation"]["id"] == conversation
    assert closed["data"]["by"] == "agent"
    assert rated["data"]["score"] == 5 and rated["data"]["comment"] == "quick"
    stamps = [b["timestamp"] for b in bodies(every)]
    assert stamps == sorted(stamps)
    assert all(datetime.fromisoformat(stamp).tzinfo is not None for stamp in stamps)


# --- sending: signatures, retries, order ------------------------------------------


def test_a_receiver_verifies_each_delivery_with_the_standardwebhooks_library(personas, receiver):
    endpoint = add_webhook(site=personas.acme, url=receiver.url, events=["message.created"])
    visitor_says(personas.v1, "Hello?")

    assert run_turn() == 1

    (request,) = receiver.received
    event = verify(endpoint, request)
    assert event["type"] == "message.created" and event["data"]["body"] == "Hello?"
    assert request.headers["content-type"] == "application/json"
    assert request.webhook_id.startswith("msg_")
    row = WebhookDelivery.objects.get()
    assert (row.status, row.attempts, row.last_status_code) == (Status.DELIVERED, 1, 204)
    with pytest.raises(Exception, match="signature"):
        Webhook(add_webhook(site=personas.acme, url=receiver.url).secret).verify(
            request.body, request.headers
        )


def test_a_failed_first_attempt_is_retried_within_10_s_under_the_same_webhook_id(
    personas, receiver
):
    receiver.answer = lambda request, earlier: 503 if not earlier else 200
    endpoint = add_webhook(site=personas.acme, url=receiver.url, events=["message.created"])
    visitor_says(personas.v1)

    run_turn()
    row = WebhookDelivery.objects.get()
    assert (row.status, row.attempts, row.last_status_code) == (Status.PENDING, 1, 503)
    assert row.next_attempt_at - row.first_attempt_at <= timedelta(seconds=10)
    assert run_turn() == 0  # not due yet: nothing is sent early
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())  # the backoff elapsed
    run_turn()

    first, second = receiver.received
    assert first.webhook_id == second.webhook_id and first.body == second.body
    verify(endpoint, second)
    assert WebhookDelivery.objects.get().status == Status.DELIVERED


def test_backoff_grows_and_gives_up_after_a_day():
    waits = [delivery.backoff(n).total_seconds() for n in range(1, 12)]

    assert waits[0] <= 10
    assert waits == sorted(waits) and waits[-1] > waits[0]
    # Enough attempts fit in 24 hours that a receiver down for hours still gets it.
    assert sum(waits[:8]) < 24 * 3600


def test_a_receiver_that_is_down_gets_retries_until_a_day_has_passed(personas):
    endpoint = add_webhook(site=personas.acme, url="http://127.0.0.1:9/never")
    visitor_says(personas.v1)
    outbox.dispatch()
    row = WebhookDelivery.objects.filter(type="message.created").get()
    start = timezone.now()
    refused = delivery.Outcome(None, "connection refused")

    delivery.record(row, refused, now=start)
    row.refresh_from_db()
    assert row.status == Status.PENDING
    delivery.record(row, refused, now=start + timedelta(hours=23))
    row.refresh_from_db()
    assert row.status == Status.PENDING
    delivery.record(row, refused, now=start + timedelta(hours=24, seconds=1))
    row.refresh_from_db()

    assert row.status == Status.FAILED and row.attempts == 3
    assert not WebhookEndpoint.objects.get(pk=endpoint.pk).enabled


def test_an_endpoint_failing_for_a_day_is_switched_off_and_the_admins_are_told(personas, settings):
    settings.ADMINS = [("Ops", "ops@acme.example")]
    endpoint = add_webhook(site=personas.acme, url="http://127.0.0.1:9/never")
    visitor_says(personas.v1)
    outbox.dispatch()
    rows = list(WebhookDelivery.objects.order_by("id"))
    start = timezone.now()
    refused = delivery.Outcome(None, "connection refused")

    delivery.record(rows[0], refused, now=start)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).enabled
    assert not mail.outbox
    delivery.record(rows[1], refused, now=start + timedelta(hours=24))

    endpoint.refresh_from_db()
    assert not endpoint.enabled and "failed" in endpoint.disabled_reason
    (message,) = mail.outbox
    assert endpoint.url in message.subject and message.to == ["ops@acme.example"]
    # Switched off, it hears nothing more: the core stops keeping the site's events.
    visitor_says(personas.v2)
    assert DurableEvent.objects.count() == 0


def test_one_success_clears_the_failing_clock(personas):
    endpoint = add_webhook(site=personas.acme, url="http://127.0.0.1:9/never")
    visitor_says(personas.v1)
    outbox.dispatch()
    first, second, *_ = WebhookDelivery.objects.order_by("id")
    start = timezone.now()

    delivery.record(first, delivery.Outcome(500, "HTTP 500"), now=start)
    delivery.record(second, delivery.Outcome(200, ""), now=start + timedelta(hours=1))
    delivery.record(first, delivery.Outcome(500, "HTTP 500"), now=start + timedelta(hours=25))

    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since == start + timedelta(hours=25)


def test_first_attempts_wait_for_the_conversations_earlier_event(personas):
    add_webhook(site=personas.acme, url="https://crm.example/h", events=["message.created"])
    one = visitor_says(personas.v1, "one")
    visitor_says(personas.v1, "two")
    other = visitor_says(personas.v2, "other chat")
    outbox.dispatch()

    claimed = delivery.claim()

    assert [json.loads(d.body)["data"]["body"] for d in claimed] == ["one", "other chat"]
    assert delivery.claim() == []  # "two" waits for "one"'s first attempt
    # "one" fails: its retry may come later, "two" goes now.
    delivery.record(claimed[0], delivery.Outcome(500, "HTTP 500"))
    (two,) = delivery.claim()
    assert json.loads(two.body)["data"]["body"] == "two"
    assert {one["conversation"], other["conversation"]} == {d.conversation_id for d in claimed}


def test_a_claim_left_by_a_killed_worker_is_taken_again_after_its_lease(personas):
    add_webhook(site=personas.acme, url="https://crm.example/h", events=["message.created"])
    visitor_says(personas.v1)
    outbox.dispatch()
    now = timezone.now()

    (held,) = delivery.claim(now=now)
    assert delivery.claim(now=now + timedelta(seconds=30)) == []
    (again,) = delivery.claim(now=now + delivery.LEASE + timedelta(seconds=1))

    assert again.pk == held.pk and again.webhook_id == held.webhook_id


def test_a_rotated_secret_signs_beside_the_old_one_for_a_day(personas, receiver):
    endpoint = add_webhook(site=personas.acme, url=receiver.url, events=["message.created"])
    old = Webhook(endpoint.secret)
    rotate_secret(endpoint)
    visitor_says(personas.v1)

    run_turn()

    (request,) = receiver.received
    assert old.verify(request.body, request.headers)["type"] == "message.created"
    verify(endpoint, request)  # the new one too
    later = timezone.now() + timedelta(hours=25)
    row = WebhookDelivery.objects.select_related("endpoint").get()
    signatures = delivery.signed_request(row, now=later).headers["Webhook-signature"]
    assert len(signatures.split()) == 1


# --- operators: the command and the admin ------------------------------------------


def test_add_webhook_prints_the_secret_last_and_refuses_an_unknown_event(personas):
    out = io.StringIO()
    call_command(
        "add_webhook",
        "--site",
        personas.acme.key,
        "--url",
        "https://crm.example/h",
        "--event",
        "message.created",
        "--event",
        "csat.submitted",
        stdout=out,
    )
    secret = out.getvalue().strip().splitlines()[-1]

    endpoint = WebhookEndpoint.objects.get()
    assert secret.startswith("whsec_") and secret == endpoint.secret
    assert endpoint.events == ["csat.submitted", "message.created"]
    with pytest.raises(CommandError, match=r"message\.sent"):
        call_command(
            "add_webhook",
            "--site",
            personas.acme.key,
            "--url",
            "https://x.example",
            "--event",
            "message.sent",
        )
    assert WebhookEndpoint.objects.count() == 1


def test_the_admin_shows_the_delivery_log_and_sends_again(personas, admin_client, receiver):
    endpoint = add_webhook(site=personas.acme, url=receiver.url, events=["message.created"])
    visitor_says(personas.v1)
    run_turn()
    row = WebhookDelivery.objects.get()

    page = admin_client.get(f"/admin/integrations/webhookendpoint/{endpoint.pk}/change/")
    log = admin_client.get(
        f"/admin/integrations/webhookdelivery/?endpoint__id__exact={endpoint.pk}"
    )
    admin_client.post(
        "/admin/integrations/webhookdelivery/",
        {"action": "send_again", "_selected_action": [row.pk]},
    )
    run_turn()

    assert "1 delivered" in page.content.decode()
    assert log.status_code == 200 and "message.created" in log.content.decode()
    first, again = receiver.received
    assert first.webhook_id == again.webhook_id
    assert WebhookDelivery.objects.get().attempts == 2


def test_an_endpoint_added_in_the_admin_gets_a_secret_and_is_heard_for(personas, admin_client):
    response = admin_client.post(
        "/admin/integrations/webhookendpoint/add/",
        {
            "site": personas.acme.pk,
            "url": "crm.example/hooks",
            "events": ["csat.submitted"],
            "enabled": "on",
        },
    )

    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.url == "https://crm.example/hooks"
    assert endpoint.secret.startswith("whsec_")
    assert list(EventInterest.objects.values_list("type", flat=True)) == ["csat.submitted"]
