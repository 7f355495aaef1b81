"""The house holds its shape (docs/architecture.md): imports run down the layers only,
no module imports itself back through others, the consumers touch no model, and no
product module outgrows one subject (700 lines)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chat", "agents", "integrations", "inbox", "kb", "supportdesk")

# docs/architecture.md's table, top to bottom: (layer, module prefixes). The longest
# matching prefix decides a module's layer.
LAYERS = [
    (
        8,
        [
            "supportdesk",
            "chat.management",
            "integrations.management",
            "inbox.management",
            "kb.management",
        ],
    ),
    (
        7,
        [
            "chat.admin",
            "chat.analytics",
            "chat.views",
            "chat.widget_views",
            "chat.attachment_views",
            "chat.dashboard_views",
            "chat.urls",
            "chat.receivers",
            "chat.apps",
            "chat.templatetags",
            "agents.admin",
            "agents.apps",
            "integrations.api",
            "integrations.widget_paths",
            "integrations.views",
            "integrations.admin",
            "integrations.apps",
            "inbox.admin",
            "inbox.apps",
            "inbox.webhooks",
            "kb.admin",
            "kb.apps",
        ],
    ),
    (6, ["chat.transport", "integrations.delivery", "inbox.smtp", "inbox.outbound", "kb.bot"]),
    (5, ["chat.realtime"]),
    (
        4,
        [
            "chat.conversations",
            "agents.services",
            "chat.lifecycle",
            "integrations.keys",
            "integrations.endpoints",
            "integrations.outbox",
            "inbox.receiving",
            "kb.importing",
        ],
    ),
    (
        3,
        [
            "chat.selectors",
            "chat.visitor_history",
            "agents.selectors",
            "chat.transcripts",
            "chat.offline",
            "integrations.shapes",
            "kb.search",
            "kb.answering",
        ],
    ),
    (
        2,
        [
            "chat.protocol",
            "chat.store",
            "chat.attachments",
            "chat.transcript_email",
            "chat.visitor_context",
            "chat.charts",
            "inbox.parsing",
            "kb.keyword",
        ],
    ),
    (
        1,
        [
            "chat.models",
            "chat.events",
            "chat.errors",
            "chat.origins",
            "chat.ratelimits",
            "chat.csp",
            "chat.reply_address",
            "agents.models",
            "agents.errors",
            "agents.signals",
            "integrations.models",
            "integrations.migrations",
            "inbox.models",
            "inbox.migrations",
            "chat.health",
            "kb.models",
            "kb.indexing",
            "kb.embedding",
            "kb.text",
            "kb.migrations",
            "kb",
            "chat.migrations",
            "agents.migrations",
            "chat",
            "agents",
            "integrations",
            "inbox",
        ],
    ),
]


def layer_of(module: str) -> int:
    best, depth = None, -1
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = layer, len(prefix)
    assert best is not None, f"{module} is in no layer of docs/architecture.md"
    return best


def product_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `module` imports (at any depth of its code)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            # `from . import x` names a module; `from .x import y` names a thing in x.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = product_modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def test_imports_run_down_the_layers_only():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(module) and not target.endswith("migrations")
    ]
    assert upward == []


def test_no_module_imports_itself_back_through_others():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    # A package's __init__ importing its own modules is how Python packages work.
    cycles = [c for c in cycles if not any(part in PACKAGES for part in c.split(" -> "))]
    assert cycles == []


def test_the_consumers_import_no_model_and_the_services_no_subscriber():
    edges = graph()
    transport = {m: t for m, t in edges.items() if m.startswith("chat.transport")}
    assert [
        (m, t) for m, targets in transport.items() for t in targets if t.endswith("models")
    ] == []
    decisions = {m: t for m, t in edges.items() if m.startswith("chat.conversations")}
    assert [
        (m, t)
        for m, targets in decisions.items()
        for t in targets
        if t.startswith(("chat.realtime", "chat.transport", "chat.protocol"))
    ] == []


def test_no_product_module_is_over_700_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for module, path in product_modules().items()
        if ".migrations" not in module and (n := len(path.read_text().splitlines())) > 700
    }
    for script in (ROOT / "static").rglob("*.js"):
        if (n := len(script.read_text().splitlines())) > 700:
            long[str(script.relative_to(ROOT))] = n
    assert long == {}
