"""Every shipped language is complete: `makemessages` over today's code, merged into a copy
of the committed catalogs, leaves no string untranslated or fuzzy, and each catalog
compiles with its placeholders matching (msgfmt --check). docs/languages.md."""

import os
import shutil
import subprocess
import sys

import pytest
from django.conf import settings

SHIPPED = [code for code, _name in settings.LANGUAGES if code != "en"]
pytestmark = pytest.mark.skipif(not shutil.which("msgfmt"), reason="GNU gettext not installed")


# What makemessages reads and what it must not: it writes next to the code it scans, so it
# runs over a copy of the project, never over the committed catalogs.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "staticfiles", "media", "tests", "bench", "__pycache__", "*.mo", "*.sqlite3*"
)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """The catalogs as makemessages leaves them for the code as it is now."""
    project = tmp_path_factory.mktemp("project") / "supportdesk"
    shutil.copytree(settings.BASE_DIR, project, ignore=NOT_COPIED)
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "--no-obsolete", "--verbosity", "0"]
        + [f"--locale={code}" for code in SHIPPED],
        cwd=project,
        check=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "supportdesk.settings"},
    )
    return project / "locale"


@pytest.mark.parametrize("language", SHIPPED)
def test_makemessages_finds_no_untranslated_or_fuzzy_string(extracted, language):
    po = extracted / language / "LC_MESSAGES" / "django.po"
    untranslated = subprocess.run(
        ["msgattrib", "--untranslated", "--no-obsolete", str(po)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fuzzy = subprocess.run(
        ["msgattrib", "--only-fuzzy", "--no-obsolete", str(po)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # msgattrib prints nothing (or only the header) when no entry matches.
    assert untranslated.count("msgid ") <= 1, untranslated
    assert fuzzy.count("msgid ") <= 1, fuzzy


@pytest.mark.parametrize("language", SHIPPED)
def test_each_catalog_compiles_with_its_placeholders_matching(language):
    po = settings.BASE_DIR / "locale" / language / "LC_MESSAGES" / "django.po"
    check = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", "/dev/null", str(po)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert "untranslated" not in check.stderr and "fuzzy" not in check.stderr, check.stderr
