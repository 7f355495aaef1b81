"""The knowledge base in the admin: articles (with what the bot did with each), and the
bot's switch per site, with the mode it answers in."""

from django.contrib import admin
from django.db.models import Count, Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import search
from .models import Article, BotSettings


@admin.register(BotSettings)
class BotSettingsAdmin(admin.ModelAdmin):
    list_display = ["site", "enabled", "mode", "articles"]
    list_editable = ["enabled"]
    readonly_fields = ["mode"]

    @admin.display(description=_("answers with"))
    def mode(self, obj: BotSettings | None = None) -> str:
        if search.mode() == "model":
            return gettext("keyword search + embedding model (all-MiniLM-L6-v2)")
        return gettext("keyword search only (requirements-ai.txt is not installed)")

    @admin.display(description=_("articles"))
    def articles(self, obj: BotSettings) -> int:
        return Article.objects.filter(site_id=obj.site_id).count()


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    """Per article: how often the bot answered from it, how often the chat still went to
    a person after such an answer, and the visitors' 👍/👎."""

    list_display = ["title", "site", "answered", "handed_off", "helpful", "not_helpful", "indexed"]
    list_filter = ["site", "imported"]
    search_fields = ["title", "body"]
    fields = ["site", "title", "url", "body", "imported", "embedding_model", "updated_at"]
    readonly_fields = ["imported", "embedding_model", "updated_at"]

    def get_queryset(self, request):
        answered = Q(answers__answered=True)
        return (
            super()
            .get_queryset(request)
            .select_related("site")
            .annotate(
                n_answered=Count("answers", filter=answered),
                n_handed_off=Count("answers", filter=answered & Q(answers__handed_off=True)),
                n_helpful=Count("answers", filter=Q(answers__helpful=True)),
                n_not_helpful=Count("answers", filter=Q(answers__helpful=False)),
            )
        )

    @admin.display(description=_("answered"), ordering="n_answered")
    def answered(self, obj) -> int:
        return obj.n_answered

    @admin.display(description=_("then handed off"), ordering="n_handed_off")
    def handed_off(self, obj) -> int:
        return obj.n_handed_off

    @admin.display(description="👍", ordering="n_helpful")
    def helpful(self, obj) -> int:
        return obj.n_helpful

    @admin.display(description="👎", ordering="n_not_helpful")
    def not_helpful(self, obj) -> int:
        return obj.n_not_helpful

    @admin.display(description=_("embedded"), boolean=True)
    def indexed(self, obj) -> bool:
        return bool(obj.embedding_model)
