"""What an agent is offered for the visitor's latest message: up to three replies from
three sources, best first, and the visitor's language and mood. Runs on an assist
thread (kb/assist/handler.py), never on the event loop.

Sources:
- canned: the agent's usable canned responses (own and shared) sharing the question's
  content words;
- article: the knowledge base's best confident article (kb.search, the bot's
  retrieval), as the bot would answer: its closest sentences and a link;
- past answer: this agent's reply that followed a similar visitor message in the
  agent's earlier chats on the site. Bounded: only the last PAST_MESSAGES visitor
  messages of those chats are compared, by shared content words.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass

from agents.selectors import usable_canned_responses
from chat import languages
from chat.models import Message, SenderKind
from chat.selectors import conversation_for_agent

from .. import answering, text
from . import language, sentiment

MAX_SUGGESTIONS = 3
# A canned response or an earlier question must share this share of the question's
# content words (weighted by nothing: a plain overlap).
MIN_OVERLAP = 0.5
# How many of the agent's most recent visitor messages on the site a past answer is
# looked for among: keeps the read one bounded query whatever the history's length.
PAST_MESSAGES = 500
# The visitor's latest messages read for language and mood: a language needs letters,
# and a visitor furious one message ago is still upset when the next one is a question.
RECENT_MESSAGES = 3
# Earlier messages whose terms a worker keeps (a few MB: a dozen stems each).
PAST_CACHE = 20_000


@dataclass(frozen=True)
class Suggestion:
    source: str  # "canned", "article" or "past_answer"
    text: str
    score: float
    title: str = ""
    url: str = ""

    def as_frame(self) -> dict:
        return {"source": self.source, "text": self.text, "title": self.title, "url": self.url}


def overlap(question_terms: set[str], other: str | frozenset[str]) -> float:
    """The share of the question's content words `other` (a text, or its terms) has."""
    if not question_terms:
        return 0.0
    if isinstance(other, str):
        other = frozenset(text.terms(other))
    return len(question_terms & other) / len(question_terms)


# (conversation, seq) → (hash of the body, the message's terms); oldest use dropped first.
_past_terms: OrderedDict[tuple[int, int], tuple[int, frozenset[str]]] = OrderedDict()
_past_terms_lock = threading.Lock()


def _terms_of_message(conversation_id: int, seq: int, body: str) -> frozenset[str]:
    """Stemming is most of a request's time: a stored message never changes, so its
    terms are kept by (conversation, seq) for the next request. Keyed by the message,
    not its text, so the cache holds stems, never long bodies; the body's hash is kept
    to check it is still that message (a database recreated, as between tests, reuses
    ids)."""
    key, fingerprint = (conversation_id, seq), hash(body)
    with _past_terms_lock:
        found = _past_terms.get(key)
        if found is not None and found[0] == fingerprint:
            _past_terms.move_to_end(key)
            return found[1]
    terms = frozenset(text.terms(body))
    with _past_terms_lock:
        _past_terms[key] = (fingerprint, terms)
        if len(_past_terms) > PAST_CACHE:
            _past_terms.popitem(last=False)
    return terms


def from_canned(agent_id: int, question: str) -> list[Suggestion]:
    wanted = set(text.terms(question))
    found = []
    for response in usable_canned_responses(agent_id):
        score = overlap(wanted, f"{response['shortcut']} {response['body']}")
        if score >= MIN_OVERLAP:
            found.append(
                Suggestion("canned", response["body"], score, title=f"/{response['shortcut']}")
            )
    return sorted(found, key=lambda s: -s.score)


def from_articles(site_id: int, question: str, *, language: str | None = None) -> list[Suggestion]:
    """The bot's answer, its line naming the article in `language` (the one the visitor
    writes in, where it is one of ours; else English)."""
    reply = answering.reply_to(site_id, question, language=language)
    if not reply.confident:
        return []
    hit = reply.hit
    return [Suggestion("article", reply.body, hit.score, title=hit.title, url=hit.url)]


def from_past_answers(
    agent_id: int, site_id: int, question: str, *, conversation_id: int
) -> list[Suggestion]:
    wanted = set(text.terms(question))
    if not wanted:
        return []
    asked = (
        Message.objects.filter(
            conversation__site_id=site_id,
            conversation__agent_id=agent_id,
            sender=SenderKind.VISITOR,
        )
        .exclude(conversation_id=conversation_id)
        .order_by("-id")
        .values_list("conversation_id", "seq", "body")[:PAST_MESSAGES]
    )
    similar = sorted(
        (
            (overlap(wanted, _terms_of_message(conv, seq, body)), conv, seq)
            for conv, seq, body in asked
        ),
        key=lambda found: -found[0],
    )
    found: list[Suggestion] = []
    for score, conv, seq in similar[:MAX_SUGGESTIONS]:
        if score < MIN_OVERLAP:
            break
        # The agent's first message after that question: their answer to it.
        answer = (
            Message.objects.filter(
                conversation_id=conv, seq__gt=seq, sender=SenderKind.AGENT, sender_agent_id=agent_id
            )
            .order_by("seq")
            .values_list("body", flat=True)
            .first()
        )
        if answer and all(answer != s.text for s in found):
            found.append(Suggestion("past_answer", answer, score))
    return found


def assist(*, agent_id: int, conversation_id: int) -> dict:
    """The `assist.suggestions` frame for the visitor's latest message in the agent's
    conversation (`NotFound` if the agent may not read it)."""
    conversation = conversation_for_agent(agent_id, conversation_id, read_only=True)
    recent = list(
        Message.objects.filter(conversation=conversation, sender=SenderKind.VISITOR)
        .order_by("-seq")
        .values_list("seq", "body")[:RECENT_MESSAGES]
    )
    frame = {
        "type": "assist.suggestions",
        "conversation": conversation_id,
        "seq": None,
        "language": None,
        "sentiment": None,
        "suggestions": [],
    }
    if not recent:
        return frame
    seq, question = recent[0]
    said = "\n".join(body for _seq, body in reversed(recent))
    spoken = language.detect(said)
    found = (
        from_articles(
            conversation.site_id,
            question,
            language=languages.supported(spoken["code"]) if spoken else None,
        )
        + from_canned(agent_id, question)
        + from_past_answers(
            agent_id, conversation.site_id, question, conversation_id=conversation_id
        )
    )
    # One of each source first (an article, a snippet, a past answer), then by score.
    found.sort(key=lambda s: -s.score)
    chosen: list[Suggestion] = []
    for suggestion in found:
        if all(suggestion.source != s.source for s in chosen):
            chosen.append(suggestion)
    for suggestion in found:
        if suggestion not in chosen:
            chosen.append(suggestion)
    frame.update(
        seq=seq,
        language=spoken,
        sentiment=sentiment.assess(said, spoken["code"] if spoken else None),
        suggestions=[s.as_frame() for s in chosen[:MAX_SUGGESTIONS]],
    )
    return frame
