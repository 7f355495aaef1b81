"""Weight budgets: the loader every page of a customer's site downloads, and everything
the chat frame loads. Sizes are gzip at level 6 (gzip's default, what servers send)."""

import gzip
import re

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db

LOADER_BUDGET = 2 * 1024
FRAME_BUDGET = 20 * 1024


def gzipped(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6))


def report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def test_loader_fits_in_2_kb_gzipped(client, capsys):
    body = client.get("/widget.js").content
    size = gzipped(body)
    report(capsys, f"widget.js: {len(body)} bytes, {size} bytes gzipped (budget {LOADER_BUDGET})")
    assert size <= LOADER_BUDGET


def test_everything_the_frame_loads_fits_in_20_kb_gzipped(client, personas, capsys):
    page = client.get(f"/widget/frame/{personas.acme.key}/")
    assert page.status_code == 200
    assets = re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"', page.text)
    static_prefix = "/" + settings.STATIC_URL.lstrip("/")
    # Nothing from elsewhere: no CDN, no web font.
    assert assets and all(url.startswith(static_prefix) for url in assets), assets
    sizes = {"frame HTML": (len(page.content), gzipped(page.content))}
    for url in assets:
        path = finders.find(url.removeprefix(static_prefix))
        assert path, f"{url} is not a static file"
        with open(path, "rb") as f:
            data = f.read()
        sizes[url] = (len(data), gzipped(data))
    total = sum(gz for _, gz in sizes.values())
    lines = [f"  {name}: {raw} bytes, {gz} gzipped" for name, (raw, gz) in sizes.items()]
    report(capsys, "frame:\n" + "\n".join(lines) + f"\n  total {total} bytes gzipped")
    assert total <= FRAME_BUDGET
