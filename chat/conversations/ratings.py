"""The visitor's rating of a conversation (CSAT): a score from 1 to 5 and a comment."""

from django.db import transaction

from .. import events, selectors
from ..errors import AlreadyRated, NotFound
from ..models import Conversation, ConversationRating


def rate_conversation(*, visitor_id: int, score: int, comment: str = "") -> ConversationRating:
    """The visitor's rating of its latest conversation, open or closed; once per
    conversation. Every tab of the visitor and the conversation's agent hear of it."""
    with transaction.atomic():
        latest = selectors.latest_conversation(visitor_id)
        if latest is None:
            raise NotFound
        # Race: two tabs rating at once; the row lock makes the second see the first.
        conversation = Conversation.objects.select_for_update().get(pk=latest.pk)
        if ConversationRating.objects.filter(conversation=conversation).exists():
            raise AlreadyRated
        rating = ConversationRating.objects.create(
            conversation=conversation, score=score, comment=comment
        )
        events.emit_on_commit(
            events.RatingGiven(
                **events.about(conversation), score=score, comment=comment, at=rating.created_at
            )
        )
    return rating
