"""Texts that depend on a count take the form the language's own plural rules call for:
Arabic has six (none, one, two, a few, many, other), Spanish, French and Portuguese a
form for millions. On the server gettext chooses (each .po's Plural-Forms); in the
scripts t() chooses with Intl.PluralRules among the forms the server sends by CLDR
category (chat/languages.py `plural_forms`). Both must agree for every number."""

import json
import re

import pytest
from django.utils import translation
from django.utils.translation import ngettext

from chat.dashboard_text import dashboard_text
from chat.languages import PLURAL_SAMPLES

DASHBOARD = "/agent/"


def cldr_category(language: str, n: int) -> str:
    """CLDR's plural rule for whole numbers (what Intl.PluralRules answers), by hand."""
    if language == "ar":
        if n == 0:
            return "zero"
        if n in (1, 2):
            return {1: "one", 2: "two"}[n]
        if 3 <= n % 100 <= 10:
            return "few"
        if 11 <= n % 100 <= 99:
            return "many"
        return "other"
    if language in ("fr", "pt"):
        if n in (0, 1):
            return "one"
    elif n == 1:
        return "one"
    if language in ("fr", "es", "pt") and n != 0 and n % 1_000_000 == 0:
        return "many"
    return "other"


NUMBERS = [*range(0, 250), 1000, 1001, 1_000_000, 2_000_000, 3_000_100]


@pytest.mark.parametrize("language", sorted(PLURAL_SAMPLES))
def test_the_scripts_choice_of_form_agrees_with_gettexts_for_every_number(language):
    singular, plural = "%(count)s earlier chat", "%(count)s earlier chats"
    with translation.override(language):
        forms = dashboard_text()["earlier_chats"]
        for n in NUMBERS:
            assert forms[cldr_category(language, n)] == ngettext(singular, plural, n), n


def test_arabic_sends_six_forms_each_its_own_words():
    with translation.override("ar"):
        forms = dashboard_text()["earlier_chats"]
    assert set(forms) == {"zero", "one", "two", "few", "many", "other"}
    assert forms["one"] == "محادثة سابقة واحدة"
    assert forms["two"] == "محادثتان سابقتان"
    assert forms["few"] == "%(count)s محادثات سابقة"  # 3 to 10: the plural noun
    assert forms["many"] == "%(count)s محادثة سابقة"  # 11 to 99: the singular noun


def test_the_dashboard_page_carries_the_forms_and_its_capacity_in_the_right_form(client, personas):
    client.force_login(personas.bob.user)  # capacity 1
    client.cookies["django_language"] = "es"
    html = client.get(DASHBOARD).content.decode()
    text = json.loads(re.search(r'<script id="sd-text"[^>]*>(.*?)</script>', html, re.S)[1])
    assert text["earlier_chats"] == {
        "one": "%(count)s chat anterior",
        "many": "%(count)s chats anteriores",
        "other": "%(count)s chats anteriores",
    }
    assert '<span id="capacity">1</span> chat<' in html
