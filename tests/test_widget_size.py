"""Weight budgets: the loader every page of a customer's site downloads, and everything
the chat frame loads. Sizes are gzip at level 6 (gzip's default, what servers send)."""

import gzip
import json
import re
from urllib.parse import urljoin

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db

LOADER_BUDGET = 2 * 1024
FRAME_BUDGET = 20 * 1024
# What a module the frame imports on demand (`import('./call.js')`, only when a call is
# offered) loads on top of the frame, with the stylesheet it adds, gzipped.
ON_DEMAND_BUDGET = 8 * 1024

STATIC_PREFIX = "/" + settings.STATIC_URL.lstrip("/")
CONFIG = re.compile(r'<script id="sd-config" type="application/json">(.*?)</script>', re.S)
ASSET = re.compile(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"')
ENTRY = re.compile(r'<script type="module" src="([^"]+)"')
PRELOAD = re.compile(r'<link rel="modulepreload" href="([^"]+)"')
# Static `import … from '…'`, `export … from '…'` and `import '…'`, at the start of a line.
IMPORT = re.compile(
    r"""^\s*(?:(?:import|export)\b[^'"`;]*?\bfrom\s*|import\s*)['"]([^'"]+)['"]""", re.M
)
# `import('…')` with a string literal: a module loaded on demand, counted on its own.
DYNAMIC_IMPORT = re.compile(r"""\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)""")
ANY_DYNAMIC_IMPORT = re.compile(r"\bimport\s*\(")
# A stylesheet such a module adds: `new URL('…css', import.meta.url)`.
STYLESHEET_URL = re.compile(r"""new URL\(\s*['"]([^'"]+\.css)['"]\s*,\s*import\.meta\.url\s*\)""")


def gzipped(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6))


def report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def static_file(url: str) -> bytes:
    path = finders.find(url.removeprefix(STATIC_PREFIX))
    assert url.startswith(STATIC_PREFIX) and path, f"{url} is not a static file"
    with open(path, "rb") as f:
        return f.read()


def module_graph(entry: str, on_demand: set[str] | None = None) -> set[str]:
    """The URLs of the entry module and of every module it imports statically, directly
    or not. The modules it imports on demand (`import('./x.js')`) go into `on_demand`:
    only a relative string literal may be imported so, anything else fails here."""
    seen = set()
    todo = [entry]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        source = static_file(url).decode()
        dynamic = DYNAMIC_IMPORT.findall(source)
        # Every `import(` is one this test can follow and count, never a computed one.
        assert len(dynamic) == len(ANY_DYNAMIC_IMPORT.findall(source)), f"{url}: import(expr)"
        for specifier in dynamic:
            assert specifier.startswith(("./", "../")), f"{url} imports {specifier!r}"
            if on_demand is not None:
                on_demand.add(urljoin(url, specifier))
        for specifier in IMPORT.findall(source):
            # Relative, so imports resolve under STATIC_URL wherever it is served from.
            assert specifier.startswith(("./", "../")), f"{url} imports {specifier!r}"
            todo.append(urljoin(url, specifier))
    return seen


def frame_page(client, personas, language=None):
    query = {"lang": language} if language else {}
    page = client.get(f"/widget/frame/{personas.acme.key}/", query)
    assert page.status_code == 200
    return page


def test_loader_fits_in_2_kb_gzipped(client, capsys):
    body = client.get("/widget.js").content
    size = gzipped(body)
    report(capsys, f"widget.js: {len(body)} bytes, {size} bytes gzipped (budget {LOADER_BUDGET})")
    assert size <= LOADER_BUDGET


# The frame carries its script's strings in the visitor's language (chat/languages.py):
# each language's page is weighed, the longest translations included.
@pytest.mark.parametrize("language", [code for code, _name in settings.LANGUAGES])
def test_everything_the_frame_loads_fits_in_20_kb_gzipped(client, personas, capsys, language):
    page = frame_page(client, personas, language)
    assert page["Content-Language"] == language
    assets = ASSET.findall(page.text)
    # Nothing from elsewhere: no CDN, no web font.
    assert assets and all(url.startswith(STATIC_PREFIX) for url in assets), assets
    # Every module the entry imports statically counts, preloaded or not; what it imports
    # on demand (a call's code) is weighed by the next test.
    for entry in ENTRY.findall(page.text):
        assets += sorted(module_graph(entry) - set(assets))
    sizes = {"frame HTML": (len(page.content), gzipped(page.content))}
    for url in assets:
        data = static_file(url)
        sizes[url] = (len(data), gzipped(data))
    total = sum(gz for _, gz in sizes.values())
    lines = [f"  {name}: {raw} bytes, {gz} gzipped" for name, (raw, gz) in sizes.items()]
    report(capsys, f"frame ({language}):\n" + "\n".join(lines) + f"\n  total {total} bytes gzipped")
    assert total <= FRAME_BUDGET


def test_the_frame_preloads_exactly_the_modules_its_entry_imports(client, personas):
    """Preloads let the browser fetch every module at once instead of discovering them
    import by import; a module missing here would load late, one left over for nothing.
    A module loaded on demand is not preloaded: that is the point of loading it later."""
    page = frame_page(client, personas)
    (entry,) = ENTRY.findall(page.text)
    on_demand: set[str] = set()
    assert set(PRELOAD.findall(page.text)) == module_graph(entry, on_demand) - {entry}
    assert not on_demand & set(ASSET.findall(page.text))


@pytest.mark.parametrize("language", [code for code, _name in settings.LANGUAGES])
def test_what_the_frame_loads_on_demand_fits_in_8_kb_gzipped(client, personas, capsys, language):
    """The call's code and what follows a chat's end: imported only when needed, so not
    in the frame's budget above, but each has one of its own: the module, what it
    imports that the frame had not loaded, the stylesheets it adds, and the strings the
    on-demand modules fetch in the visitor's language (counted for each, as each may be
    the first to fetch them)."""
    page = frame_page(client, personas, language)
    text_url = json.loads(CONFIG.search(page.text).group(1))["text_url"]
    text = client.get(text_url)
    assert text.status_code == 200 and text.json()
    (entry,) = ENTRY.findall(page.text)
    on_demand: set[str] = set()
    loaded = module_graph(entry, on_demand)
    assert on_demand, "the frame imports nothing on demand: fold this budget into the first"
    lines = []
    for module in sorted(on_demand):
        urls = sorted(module_graph(module) - loaded)
        for url in list(urls):
            urls += [urljoin(url, css) for css in STYLESHEET_URL.findall(static_file(url).decode())]
        sizes = {url: gzipped(static_file(url)) for url in urls}
        sizes[text_url] = gzipped(text.content)
        total = sum(sizes.values())
        lines += [f"  {url}: {gz} gzipped" for url, gz in sizes.items()]
        lines.append(f"  {module} on demand: total {total} bytes gzipped")
        assert total <= ON_DEMAND_BUDGET, (module, sizes)
    report(capsys, f"on demand ({language}):\n" + "\n".join(lines))
