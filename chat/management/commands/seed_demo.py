import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from agents.models import AgentProfile, CannedResponse
from chat.models import (
    Conversation,
    ConversationRating,
    Message,
    Note,
    SenderKind,
    Site,
    Visitor,
)

DEMO_SITE = "Demo shop"
DEMO_ORIGINS = [
    "http://127.0.0.1:8000",
    "http://localhost:8000",
    "http://127.0.0.1:8001",
    "http://localhost:8001",
]
# Shared snippets (every agent may use them; `/hello` in a reply expands to the text), so
# a newcomer trying the dashboard sees canned responses at work. Created once by shortcut:
# an operator's later edit of the text is kept.
DEMO_CANNED_RESPONSES = {
    "hello": "Hi! Thanks for getting in touch. How can I help you today?",
    "hours": "We are here Monday to Friday, 9:00 to 17:00 (CET). Outside those hours, "
    "leave a message and we reply by email.",
    "refund": "I'm sorry about that. I've started your refund: it reaches your account "
    "within 3 to 5 working days.",
    "thanks": "Thanks for chatting with us! Is there anything else I can help with?",
}


class Command(BaseCommand):
    help = (
        "Create (once) the demo site, a demo agent, an admin and a few shared canned "
        "responses; print where to go. "
        "--conversations N also adds N closed sample conversations over the last 30 days "
        "(each run adds more), with two sample sites and four sample agents who cannot "
        "log in, for the transcript and analytics pages."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument(
            "--conversations",
            type=int,
            default=0,
            metavar="N",
            help="Add N sample conversations (default 0).",
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="Random seed, for the same data each run."
        )

    def handle(self, *args, base_url, conversations=0, seed=None, **options):
        if conversations < 0:
            raise CommandError("--conversations must be 0 or more")
        site = Site.objects.filter(name=DEMO_SITE).first()
        if site is None:
            site = Site.objects.create(name=DEMO_SITE, allowed_origins=DEMO_ORIGINS)
        call_command(
            "create_agent", "demo", password="demo-agent-pass", capacity=3, stdout=self.stderr
        )
        User = get_user_model()  # noqa: N806 - Django's idiom
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "demo-admin-pass")
        for shortcut, body in DEMO_CANNED_RESPONSES.items():
            CannedResponse.objects.get_or_create(
                owner=None, shortcut=shortcut, defaults={"body": body}
            )
        if conversations:
            made = generate_conversations(
                count=conversations,
                sites=[site, *sample_sites()],
                agents=sample_agents(),
                rng=random.Random(seed),
            )
            self.stderr.write(
                f"Added {made.conversations} sample conversations "
                f"({made.messages} messages, {made.notes} notes, {made.ratings} ratings)."
            )
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "supportdesk is starting:",
                    f"  agent dashboard  {base_url}/agent/   (login demo / demo-agent-pass)",
                    f"  admin            {base_url}/admin/   (login admin / demo-admin-pass)",
                    f"  demo site key    {site.key}",
                    "  canned replies   "
                    + " ".join(f"/{shortcut}" for shortcut in DEMO_CANNED_RESPONSES)
                    + "   (type / in a reply)",
                    "",
                ]
            )
        )


# --- sample conversations (--conversations N) ----------------------------------------

SAMPLE_SITES = ["Demo outlet"]
# Sample agents exist for the numbers only: no usable password, never available, so
# routing never hands them a real visitor.
# (name, share of chats, median seconds to first answer, CSAT bias)
SAMPLE_AGENTS = [
    ("Maya", 4, 9, 0.4),
    ("Sam", 3, 16, 0.1),
    ("Priya", 3, 24, 0.0),
    ("Tom", 2, 40, -0.5),
]
# Chats per hour of the day (UTC): quiet nights, busy late mornings and afternoons.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 5, 8, 12, 14, 13, 11, 12, 14, 13, 11, 9, 7, 6, 5, 4, 2, 1]
SCORE_WEIGHTS = [3, 4, 10, 30, 53]
# fmt: off
FIRST_NAMES = ["Ada", "Grace", "Alan", "Linus", "Margaret", "Katherine", "Tim", "Barbara",
               "Dennis", "Frances", "Ken", "Radia", "Edsger", "Hedy", "John", "Sophie"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Hamilton", "Johnson", "Liskov", "Ritchie",
              "Allen", "Thompson", "Perlman", "Dijkstra", "Lamarr", "Wilson", "Backus"]
# fmt: on
# (visitor's opening, then alternating agent / visitor lines)
SCRIPTS = [
    [
        "Hi, my order #{order} hasn't arrived yet. It was due on Monday.",
        "Hi{name}! Sorry about that, let me look it up.",
        "Thanks.",
        "It's held at the carrier's depot. I've asked them to prioritise it: "
        "you should have it within two days.",
        "Great, thank you!",
        "You're welcome. Anything else I can help with?",
        "No, that's all. Have a nice day!",
    ],
    [
        "I'd like to return the grinder I bought last week. How do I get a refund?",
        "Hi{name}, happy to help. Is the grinder unused and in its box?",
        "Yes, I only opened the box.",
        "Then you'll get a full refund. I've emailed you a prepaid return label.",
        "Got it, thanks. How long does the refund take?",
        "Three to five working days after it reaches our warehouse.",
    ],
    [
        "I can't log in, the reset password link says it expired.",
        "Hi{name}! Links expire after an hour. I've just sent you a fresh one.",
        "It worked this time, thanks!",
        "Glad to hear it. Anything else?",
        "No, all good.",
    ],
    [
        "Is the Ethiopia Guji good for espresso?",
        "Hi{name}! It makes a bright, floral espresso. Most people like it as a flat white.",
        "And what grind size do you recommend?",
        "Start fine, around 8 on our grinder, and adjust for a 28 s shot.",
        "Perfect, I'll order a bag.",
        "Enjoy! Use WELCOME10 for 10% off your first order.",
    ],
    [
        "Do you ship to Norway?",
        "Hi{name}, yes we do: 3-5 days, and duties are included at checkout.",
        "Great. Is there free shipping?",
        "Above 60 EUR, yes.",
    ],
    [
        "The discount code SPRING15 doesn't work at checkout.",
        "Hi{name}, let me check. That code ended on Sunday, sorry!",
        "Oh no, I missed it by a day.",
        "I've added a 15% code to your account anyway: it applies automatically.",
        "That's very kind, thank you!",
    ],
    [
        "Can I change the delivery address for order #{order}?",
        "Hi{name}, it hasn't shipped yet, so yes. What's the new address?",
        "Same street, number 14 instead of 41. My mistake!",
        "Done: the label now says 14.",
        "Thank you so much.",
    ],
]
COMMENTS = {
    5: ["Quick and friendly, thanks!", "Solved in two minutes.", "Great service!"],
    4: ["Helpful.", "Good, but I had to wait a bit."],
    3: ["OK.", "Took a while."],
    2: ["I waited too long.", "Didn't really solve my problem."],
    1: ["Nobody could help me.", "Very slow."],
}
# An agent's internal note for each script above, in the same order.
NOTES = [
    "Carrier tracking shows it held at the depot since Friday; chased them.",
    "Return label sent; refund goes out when the warehouse scans it.",
    "Reset links expire after an hour: third ticket this week, tell the web team.",
    "Regular customer; gave the welcome code anyway.",
    "Norway: duties are prepaid at checkout, no surprise fees.",
    "Code expired Sunday; added a 15% account discount as goodwill.",
    "Label reprinted before pickup; nothing else to change.",
]
IDLE_CLOSED_TEXT = "This conversation was closed after a period of inactivity."
BATCH = 2000


@dataclass(frozen=True)
class SampleAgent:
    agent: AgentProfile
    share: float
    answer_seconds: float
    csat_bias: float


@dataclass
class Generated:
    conversations: int = 0
    messages: int = 0
    notes: int = 0
    ratings: int = 0


def sample_sites() -> list[Site]:
    sites = []
    for name in SAMPLE_SITES:
        site = Site.objects.filter(name=name).first()
        sites.append(site or Site.objects.create(name=name, allowed_origins=[]))
    return sites


def sample_agents() -> list[SampleAgent]:
    User = get_user_model()  # noqa: N806 - Django's idiom
    agents = []
    for name, share, answer_seconds, bias in SAMPLE_AGENTS:
        user, created = User.objects.get_or_create(username=f"sample-{name.lower()}")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        agent, _ = AgentProfile.objects.get_or_create(
            user=user, defaults={"display_name": name, "capacity": 3}
        )
        agents.append(SampleAgent(agent, share, answer_seconds, bias))
    return agents


@contextmanager
def historical_timestamps() -> Iterator[None]:
    """Let bulk_create store the timestamps we give (auto_now_add would stamp "now").
    Conversations' and messages' times are set by their services already."""
    fields = [
        Visitor._meta.get_field("first_seen"),
        Visitor._meta.get_field("last_seen"),
        Note._meta.get_field("created_at"),
        ConversationRating._meta.get_field("created_at"),
    ]
    for f in fields:
        f.auto_now_add = False
    try:
        yield
    finally:
        for f in fields:
            f.auto_now_add = True


def generate_conversations(
    *,
    count: int,
    sites: list[Site],
    agents: list[SampleAgent],
    rng: random.Random,
    now: datetime | None = None,
    days: int = 30,
) -> Generated:
    """`count` closed conversations started over the last `days` days, with visitors,
    messages, timings and ratings, written with bulk_create a batch at a time."""
    now = now or timezone.now()
    # Oldest first, as a live system stores them: ids grow with time.
    starts = sorted(_start_time(rng, now, days) for _ in range(count))
    made = Generated()
    with historical_timestamps():
        for first in range(0, count, BATCH):
            with transaction.atomic():
                batch = _Batch(rng, sites, agents)
                for created in starts[first : first + BATCH]:
                    batch.add(created)
                batch.save(made)
    return made


def _start_time(rng: random.Random, now: datetime, days: int) -> datetime:
    """A start in the last `days` days, weighted by hour and lighter at weekends, early
    enough to have closed by now."""
    while True:
        day = (now - timedelta(days=rng.randrange(days))).date()
        if day.weekday() >= 5 and rng.random() < 0.5:
            continue
        hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
        start = timezone.make_aware(datetime(day.year, day.month, day.day, hour)) + timedelta(
            seconds=rng.uniform(0, 3600)
        )
        if start < now - timedelta(hours=1):
            return start


class _Batch:
    def __init__(self, rng, sites, agents):
        self.rng, self.sites, self.agents = rng, sites, agents
        self.visitors: list[Visitor] = []
        self.conversations: list[Conversation] = []
        self.messages: list[list[Message]] = []
        self.ratings: list[ConversationRating | None] = []
        self.notes: list[Note | None] = []

    def add(self, created: datetime) -> None:
        rng = self.rng
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        known = rng.random()
        # Foreign keys by id: a related object's setter costs more than the row's insert.
        visitor = Visitor(
            site_id=rng.choices(self.sites, weights=[3, *[1] * (len(self.sites) - 1)])[0].pk,
            token_hash=secrets.token_hex(32),  # the hash of a token nobody holds
            name=name if known < 0.6 else "",
            email=f"{name.lower().replace(' ', '.')}@example.com" if known < 0.8 else "",
            first_seen=created - timedelta(minutes=rng.randint(0, 20)),
        )
        conversation = Conversation(
            site_id=visitor.site_id,
            status=Conversation.Status.CLOSED,
            queued_at=created,
            created_at=created,
        )
        script_index = rng.randrange(len(SCRIPTS))
        script = SCRIPTS[script_index]
        lines = [
            line.format(order=rng.randint(10000, 99999), name=f" {name.split()[0]}")
            for line in script
        ]
        messages: list[Message] = []

        def say(sender: str, body: str, at: datetime, agent_id: int | None = None) -> None:
            messages.append(
                Message(
                    seq=len(messages) + 1,
                    sender=sender,
                    sender_agent_id=agent_id,
                    body=body,
                    client_msg_id=None if sender == SenderKind.SYSTEM else secrets.token_hex(8),
                    created_at=at,
                )
            )

        say(SenderKind.VISITOR, lines[0], created)
        rating = note = None
        if rng.random() < 0.07:
            # Missed: the visitor gave up in the queue, or the idle sweep closed it.
            left = created + timedelta(seconds=rng.uniform(60, 420))
            if rng.random() < 0.75:
                conversation.closed_by = SenderKind.VISITOR
            else:
                conversation.closed_by = SenderKind.SYSTEM
                say(SenderKind.SYSTEM, IDLE_CLOSED_TEXT, left)
            conversation.closed_at = left
        else:
            sample = rng.choices(self.agents, weights=[a.share for a in self.agents])[0]
            agent = sample.agent
            busy = HOUR_WEIGHTS[created.hour] / 8
            wait = min(rng.lognormvariate(3.2, 0.8) * busy, 900)
            assigned = created + timedelta(seconds=wait)
            at = assigned + timedelta(seconds=rng.lognormvariate(0, 0.5) * sample.answer_seconds)
            kept = lines[: rng.randint(max(2, len(lines) - 2), len(lines))]
            for n, line in enumerate(kept[1:]):
                if n % 2 == 0:
                    say(SenderKind.AGENT, line, at, agent.pk)
                else:
                    say(SenderKind.VISITOR, line, at)
                at += timedelta(seconds=rng.uniform(15, 100))
            conversation.agent_id = agent.pk
            conversation.assigned_at = assigned
            conversation.closed_at = at + timedelta(seconds=rng.uniform(20, 150))
            conversation.closed_by = rng.choice([SenderKind.VISITOR, SenderKind.AGENT])
            conversation.agent_read_seq = len(messages)
            if rng.random() < 0.1:
                # An internal note, right after the agent's first answer.
                note = Note(
                    author_id=agent.pk,
                    body=NOTES[script_index],
                    client_msg_id=secrets.token_hex(8),
                    after_seq=2,
                    created_at=messages[1].created_at + timedelta(seconds=rng.uniform(5, 15)),
                )
            if rng.random() < 0.6:
                bias = sample.csat_bias
                weights = [w * (1 + bias * (s - 3) / 2) for s, w in enumerate(SCORE_WEIGHTS, 1)]
                score = rng.choices(range(1, 6), weights=weights)[0]
                rating = ConversationRating(
                    score=score,
                    comment=rng.choice(COMMENTS[score]) if rng.random() < 0.4 else "",
                    created_at=conversation.closed_at + timedelta(seconds=5),
                )
        conversation.last_seq = conversation.visitor_read_seq = len(messages)
        conversation.last_activity_at = messages[-1].created_at
        visitor.last_seen = conversation.closed_at
        self.visitors.append(visitor)
        self.conversations.append(conversation)
        self.messages.append(messages)
        self.ratings.append(rating)
        self.notes.append(note)

    def save(self, made: Generated) -> None:
        Visitor.objects.bulk_create(self.visitors)
        for visitor, conversation in zip(self.visitors, self.conversations, strict=True):
            conversation.visitor_id = visitor.pk
        Conversation.objects.bulk_create(self.conversations)
        rows, ratings, notes = [], [], []
        for conversation, messages, rating, note in zip(
            self.conversations, self.messages, self.ratings, self.notes, strict=True
        ):
            for message in messages:
                message.conversation_id = conversation.pk
            rows += messages
            for extra, kept in ((rating, ratings), (note, notes)):
                if extra is not None:
                    extra.conversation_id = conversation.pk
                    kept.append(extra)
        Message.objects.bulk_create(rows, batch_size=1000)
        ConversationRating.objects.bulk_create(ratings)
        Note.objects.bulk_create(notes)
        made.conversations += len(self.conversations)
        made.messages += len(rows)
        made.ratings += len(ratings)
        made.notes += len(notes)
