"""The layout keeps the design honest: imports flow down the layers, no package cycle, a Flask-free
core, small modules. Read from the source (every import statement, lazy ones included), so a rule
breaks here the moment someone writes the import, not when it happens to be executed."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "webapp"
WEB_STACK = ("flask", "werkzeug", "jinja2", "htmx_flask", "flask_wtf", "wtforms")

#: Top (may import what is below it) to bottom. Packages of one rank may not import each other.
LAYERS = {
    "webapp": 7,  # the entrance: create_app, imported lazily
    "fleet": 6,
    "node": 6,
    "web": 5,
    "cli": 4,
    "notify": 3,
    "accounts": 2,
    "uploader": 1,  # the uploader authors' module: the core only
    "core": 0,
}
MAX_LINES = 330


def unit_of(module: str) -> str:
    """Return the layer unit of a dotted module name (``webapp.core.store`` → ``core``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "webapp"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports (absolute or relative), with its line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, node.lineno))
            # "from webapp import core" names a package, not an attribute
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[tuple[str, str]]]:
    """Map each layer unit to the units it imports, with where (``file:line``)."""
    graph: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(root.rglob("*.py")):
        source = unit_of(module_name(path))
        for target, line in imports_of(path):
            if target.split(".")[0] != "webapp" or target.count(".") == 0:
                continue
            unit = unit_of(target)
            if unit in LAYERS and unit != source:
                where = f"{path.relative_to(ROOT)}:{line}"
                graph.setdefault(source, set()).add((unit, where))
    return graph


def upward_imports(graph) -> list[str]:
    """Imports of a unit at the same rank or above (the entrance may import anything)."""
    return sorted(
        f"{where}: {source} imports {target}"
        for source, edges in graph.items()
        for target, where in edges
        if source != "webapp" and LAYERS[target] >= LAYERS[source]
    )


def cycles(graph) -> list[list[str]]:
    """Cycles between units, each as the path that closes it."""
    edges = {source: {target for target, _ in targets} for source, targets in graph.items()}
    found, state = [], {}

    def visit(unit, path):
        state[unit] = "open"
        for target in sorted(edges.get(unit, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[unit] = "done"

    for unit in sorted(edges):
        if unit not in state:
            visit(unit, [unit])
    return found


def test_imports_flow_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_no_import_cycle_between_packages():
    assert cycles(import_graph()) == []


def test_every_unit_is_a_known_layer():
    units = {unit_of(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert units <= set(LAYERS), f"add {units - set(LAYERS)} to LAYERS (and docs/development.md)"


def test_top_holds_only_the_entrances():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "uploader.py"]


def test_each_package_says_what_lives_there_and_what_it_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc.lower(), f"{init.relative_to(ROOT)}: say what it may import"


def test_no_module_is_long():
    long = {
        str(path.relative_to(ROOT)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_core_imports_no_web_stack_even_lazily():
    core = [p for p in PACKAGE.glob("core/*.py")] + [PACKAGE / "uploader.py"]
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in core
        for target, line in imports_of(path)
        if target.split(".")[0] in WEB_STACK
    ]
    assert offenders == []


# The checks themselves must fail on what they are meant to catch: plant the mistakes.
def plant(tmp_path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "webapp" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "webapp"


def test_a_planted_upward_import_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    root = plant(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/store.py": "def f():\n    from webapp.web.render import render\n",
            "web/__init__.py": "",
            "web/render.py": "from webapp.core import store\n",
        },
    )
    assert upward_imports(import_graph(root)) == ["webapp/core/store.py:2: core imports web"]


def test_a_planted_cycle_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    root = plant(
        tmp_path,
        {
            "notify/__init__.py": "",
            "notify/deliver.py": "from ..accounts import keys\n",
            "accounts/__init__.py": "",
            "accounts/keys.py": "from webapp import notify\nimport webapp.core.text\n",
            "core/__init__.py": "",
            "core/text.py": "",
        },
    )
    assert cycles(import_graph(root)) == [["accounts", "notify", "accounts"]]
    assert upward_imports(import_graph(root)) == [
        "webapp/accounts/keys.py:1: accounts imports notify"
    ]


@pytest.mark.parametrize(
    "module",
    [
        "webapp",
        "webapp.uploader",
        "webapp.core.store",
        "webapp.core.watch",
        "webapp.core.export",
        "webapp.cli.pipeline",
        "webapp.notify.notifier",
    ],
)
def test_a_fresh_interpreter_loads_no_web_stack(module):
    probe = f"import sys, {module}\nprint(','.join(m for m in {WEB_STACK!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} loaded {result.stdout.strip()}"


def test_the_web_app_still_builds_from_the_package():
    probe = "import webapp; app = webapp.create_app({'TESTING': True}); print(app.name)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_test_files_have_unique_names():
    """pytest imports test modules by basename (rootdir mode): two alike collide at collection."""
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({name for name in names if names.count(name) > 1}) == []
