"""System messages (a transfer, a requeue, an idle close, a call's lines) are stored as a
code and parameters beside their English body, travel with `code` and `params`, and are
read in each reader's language: the transcript email in the visitor's, the admin's
transcript in the admin's. chat/system_messages.py, docs/languages.md."""

import importlib

import pytest
from django.utils import translation

from chat import system_messages, transcript_email
from chat.conversations import routing, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Message, Visitor
from chat.realtime import groups

pytestmark = pytest.mark.django_db(transaction=True)


def transferred_chat(personas) -> Conversation:
    posted = sending.post_message(
        Actor.visitor(personas.v1.id), client_msg_id="c-1", body="Wo ist mein Paket?"
    )
    conversation = Conversation.objects.get(pk=posted.message["conversation"])
    routing.transfer_conversation(
        agent_id=personas.alice.id, conversation_id=conversation.id, to_agent_id=personas.bob.id
    )
    return conversation


def test_a_transfer_line_carries_its_code_and_the_name_beside_the_english_body(
    personas, capture_broadcasts
):
    conversation = transferred_chat(personas)
    frames = capture_broadcasts.frames(groups.visitor_group(personas.v1.id), "message")
    [frame] = [f for f in frames if f["sender"] == "system"]
    assert frame["body"] == "You are now chatting with Bob."
    assert (frame["code"], frame["params"]) == ("transferred", {"name": "Bob"})
    stored = Message.objects.get(conversation=conversation, seq=2)
    assert (stored.system_code, stored.system_params) == ("transferred", {"name": "Bob"})
    # A visitor's or an agent's own message carries neither.
    first = Message.objects.get(conversation=conversation, seq=1)
    assert first.system_code == "" and first.system_params is None


def test_the_transcript_email_says_the_system_lines_in_the_visitors_language(personas):
    conversation = transferred_chat(personas)
    Visitor.objects.filter(pk=personas.v1.id).update(language="de")
    mail = transcript_email.build(conversation, to="dana@example.com").message
    assert "Sie chatten jetzt mit Bob." in mail.body
    assert "You are now chatting with Bob." not in mail.body
    assert mail.subject.startswith("Ihr Chat mit")


@pytest.mark.parametrize(
    ("language", "expected"),
    [("fr", "Vous discutez maintenant avec Bob."), ("ar", "أنت الآن تتحدث مع Bob.")],
)
def test_a_coded_line_reads_in_the_active_language_and_an_unknown_one_as_stored(language, expected):
    with translation.override(language):
        assert system_messages.sentence("transferred", {"name": "Bob"}, "x") == expected
        assert system_messages.sentence("", None, "Written before codes") == "Written before codes"
        # Parameters that do not fit the sentence: the stored body, never an error.
        assert system_messages.sentence("transferred", {}, "as stored") == "as stored"


def test_the_migration_gives_rows_stored_before_codes_theirs(personas):
    conversation = transferred_chat(personas)
    Message.objects.filter(conversation=conversation).update(system_code="", system_params=None)
    Message.objects.filter(conversation=conversation, seq=1).update(
        body="You are now chatting with a visitor's own words."
    )
    migration = importlib.import_module("chat.migrations.0019_system_message_codes")
    from django.apps import apps

    migration.code_existing_rows(apps, None)
    line = Message.objects.get(conversation=conversation, seq=2)
    assert (line.system_code, line.system_params) == ("transferred", {"name": "Bob"})
    # Only system messages are read: a visitor who typed such a sentence keeps no code.
    assert Message.objects.get(conversation=conversation, seq=1).system_code == ""
