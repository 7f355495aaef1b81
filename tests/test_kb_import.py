"""The knowledge base: import_kb from Markdown and CSV (a re-import replaces the earlier
one), the bot switch, and keyword search finding the right article."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from kb import answering, search, text
from kb.models import Article, BotSettings

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keyword_only(settings):
    settings.SUPPORTDESK_BOT_MODEL = False


def write_markdown(folder, name, text):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def import_kb(*args) -> list[str]:
    out = StringIO()
    call_command("import_kb", *args, stdout=out)
    return out.getvalue().splitlines()


def test_a_folder_of_markdown_becomes_articles_and_turns_the_bot_on(personas, tmp_path):
    write_markdown(
        tmp_path,
        "returns.md",
        "# Returns\nURL: https://acme.example/returns\n\nReturn anything within 30 days.",
    )
    write_markdown(tmp_path, "shipping.md", "Intro line\n# Shipping\nWe ship in 3 days.\n")
    (tmp_path / "notes.txt").write_text("not an article")

    lines = import_kb("--site", personas.acme.key, str(tmp_path))

    assert lines[-1] == "2"
    articles = {a.title: a for a in Article.objects.filter(site=personas.acme)}
    assert set(articles) == {"Returns", "Shipping"}
    assert articles["Returns"].url == "https://acme.example/returns"
    assert articles["Returns"].body == "Return anything within 30 days."
    assert articles["Shipping"].sentences == ["We ship in 3 days."]
    assert BotSettings.objects.get(site=personas.acme).enabled


def test_a_csv_import_replaces_the_earlier_import_but_keeps_articles_written_in_the_admin(
    personas, tmp_path
):
    write_markdown(tmp_path / "md", "old.md", "# Old article\nGone after the re-import.")
    import_kb("--site", personas.acme.key, str(tmp_path / "md"))
    Article.objects.create(site=personas.acme, title="Written by hand", body="Stays.")
    csv_file = tmp_path / "kb.csv"
    csv_file.write_text(
        'title,body\nGift cards,"Gift cards never expire."\nStores,"Open 9 to 8, daily."\n',
        encoding="utf-8",
    )

    lines = import_kb("--site", personas.acme.key, str(csv_file), "--no-bot")

    assert lines[-1] == "2"
    titles = set(Article.objects.filter(site=personas.acme).values_list("title", flat=True))
    assert titles == {"Gift cards", "Stores", "Written by hand"}


def test_no_bot_leaves_a_new_sites_bot_off(personas, tmp_path):
    write_markdown(tmp_path, "a.md", "# A\nBody.")

    import_kb("--site", personas.acme.key, str(tmp_path), "--no-bot")

    assert not BotSettings.objects.get(site=personas.acme).enabled


def test_unreadable_files_are_refused_and_change_nothing(personas, tmp_path):
    write_markdown(tmp_path / "md", "a.md", "# A\nBody.")
    import_kb("--site", personas.acme.key, str(tmp_path / "md"))
    bad = tmp_path / "bad.csv"
    bad.write_text("name,text\nx,y\n")

    with pytest.raises(CommandError, match="title and body"):
        import_kb("--site", personas.acme.key, str(bad))
    with pytest.raises(CommandError, match="no site"):
        import_kb("--site", "nope", str(tmp_path / "md"))

    assert list(Article.objects.values_list("title", flat=True)) == ["A"]


def test_keyword_search_finds_the_article_and_answers_with_its_own_sentences(personas, tmp_path):
    write_markdown(
        tmp_path,
        "refunds.md",
        "# Refunds\nURL: https://acme.example/refunds\n\nWe refund your money within 3 "
        "business days of receiving the return. Banks take 5 days more to show it.\n\n"
        "Gift card purchases are refunded onto a new gift card.",
    )
    write_markdown(tmp_path, "stores.md", "# Store opening hours\nOur stores open at 9 am.")
    import_kb("--site", personas.acme.key, str(tmp_path))

    hits = search.search(personas.acme.id, "how long before my refund arrives?", k=2)
    reply = answering.reply_to(personas.acme.id, "when do i get my refnud")
    off_topic = answering.reply_to(personas.acme.id, "what is the capital of australia")

    assert hits[0].title == "Refunds"
    assert reply.confident
    assert reply.sources == [{"id": hits[0].article_id, "title": "Refunds"}]
    assert "We refund your money within 3 business days" in reply.body
    assert "https://acme.example/refunds" in reply.body
    assert not off_topic.confident
    assert off_topic.body == answering.HANDOFF_TEXT


def test_keyword_search_reads_an_irregular_form_as_its_verb(personas, tmp_path):
    write_markdown(
        tmp_path, "price.md", "# Price match\nFind a better deal and we refund the difference."
    )
    write_markdown(tmp_path, "tents.md", "# Tent care\nDry your tent before you store it.")
    import_kb("--site", personas.acme.key, str(tmp_path))

    # "found" shares no stem with "find": only its dictionary form matches.
    hits = search.search(personas.acme.id, "I found it for less at another shop", k=2)

    assert [hit.title for hit in hits] == ["Price match"]
    assert text.stem("bought") == text.stem("buying")
