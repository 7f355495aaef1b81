"""A site's knowledge base: its articles, whether its bot answers, and what each answer
did (for the per-article analytics)."""

from django.db import models

from chat.models import Site

from . import indexing


class BotSettings(models.Model):
    """Per site: whether the bot answers new chats first. `import_kb` turns it on."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="bot_settings")
    enabled = models.BooleanField(
        default=False,
        help_text="The bot answers a new chat's messages from the knowledge base before "
        "a person takes the chat.",
    )

    class Meta:
        verbose_name = "bot setting"

    def __str__(self) -> str:
        return f"Bot of {self.site}: {'on' if self.enabled else 'off'}"


class Article(models.Model):
    """One knowledge-base article. Its embeddings (when the model is installed) are made
    when it is saved or imported (kb/indexing.py), never while a visitor waits."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="articles")
    title = models.CharField(max_length=300)
    body = models.TextField()
    url = models.URLField(max_length=2000, blank=True)
    # Set by import_kb: a re-import replaces the site's imported articles only.
    imported = models.BooleanField(default=False, editable=False)
    # float32 unit vectors: the whole article's, and one per sentence of `sentences`.
    sentences = models.JSONField(default=list, editable=False)
    embedding = models.BinaryField(null=True, editable=False)
    sentence_embeddings = models.BinaryField(null=True, editable=False)
    # float16 unit vectors, one per word piece of the title and of each sentence, for
    # re-ranking the best few articles piece by piece (kb/search.py).
    piece_embeddings = models.BinaryField(null=True, editable=False)
    embedding_model = models.CharField(max_length=100, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site", "title"]
        indexes = [models.Index(fields=["site", "updated_at"], name="kb_article_site_updated")]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, prepared: bool = False, **kwargs) -> None:
        # Every save (the admin's, a shell's) makes its embeddings now; import_kb
        # prepares its articles in one batch and says so.
        if not prepared:
            indexing.prepare([self])
        super().save(*args, **kwargs)


class BotAnswer(models.Model):
    """What the bot did with one visitor message: its message `seq` in the conversation,
    an answer from `article` (`answered`), or the hand-off line for want of a confident
    one (`article` then is the best guess, if any). `handed_off`: the chat went to a
    person after this answer; `helpful`: the visitor's 👍/👎."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    conversation_id = models.BigIntegerField()
    seq = models.PositiveIntegerField()
    article = models.ForeignKey(
        Article, on_delete=models.SET_NULL, null=True, blank=True, related_name="answers"
    )
    score = models.FloatField()
    answered = models.BooleanField()
    handed_off = models.BooleanField(default=False)
    helpful = models.BooleanField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # The bot's message is posted once per visitor message (an idempotent
            # client_msg_id), so it is recorded once.
            models.UniqueConstraint(fields=["conversation_id", "seq"], name="kb_answer_once")
        ]

    def __str__(self) -> str:
        return f"Bot answer #{self.seq} in conversation #{self.conversation_id}"
