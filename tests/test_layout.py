"""The layout's import rules, checked on the source (an AST walk over every module).

``debleed (app) -> rt -> models -> dsp``: a package imports only the ones to its right (and
``debleed.errors`` / ``debleed.fileio``, which import nothing of the project). Nothing but the
tests imports ``bench`` (the CLI finds it by name at run time); ``debleed.testing`` (the dummy
server and ``debleed live`` as a subprocess) is imported by the tests, the benchmarks and the
demo only. No import, at module level or inside a function, closes a cycle between modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Folder -> dotted package (pyproject's package-dir).
FOLDERS = {"dsp": "debleed.dsp", "models": "debleed.models", "rt": "debleed.rt", "bench": "debleed.bench",
           "debleed": "debleed"}
CORE = {"debleed", "debleed.errors", "debleed.fileio"}
LAYER = {"debleed.dsp": 0, "debleed.models": 1, "debleed.rt": 2}
TESTING_USERS = ("debleed.demo", "debleed.bench")


def _modules():
    """``{dotted name: path}`` of every project module."""
    mods = {}
    for folder, pkg in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = path
    return mods


def _layer(mod: str) -> int:
    for pkg, n in LAYER.items():
        if mod == pkg or mod.startswith(pkg + "."):
            return n
    return 3  # the application: debleed.cli, .offline, .soundcheck, .demo, .docs, .testing


def _imports(path: Path, mods: dict) -> list[tuple[str, int]]:
    """Project modules ``path`` imports (resolved to the longest known module), with the line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if not name.startswith("debleed"):
                continue
            while name not in mods and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in mods or name == "debleed":
                out.append((name, node.lineno))
    return out


def test_every_import_follows_the_layers():
    mods = _modules()
    bad = []
    for mod, path in mods.items():
        if mod.startswith("debleed.bench"):
            continue  # the benchmarks may import anything
        for target, line in _imports(path, mods):
            where = f"{path.relative_to(ROOT)}:{line}: {mod} imports {target}"
            if target in CORE or target.split(".")[:2] == mod.split(".")[:2] and _layer(mod) < 3:
                continue
            if target.startswith("debleed.bench"):
                bad.append(where + " (nothing imports the benchmarks)")
            elif target.startswith("debleed.testing") and not mod.startswith(TESTING_USERS):
                bad.append(where + " (debleed.testing is for the tests, benchmarks and demo)")
            elif _layer(target) > _layer(mod):
                bad.append(where + " (against debleed -> rt -> models -> dsp)")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    mods = _modules()
    graph = {m: {t for t, _ in _imports(p, mods) if t in mods and t != m and t not in CORE} for m, p in mods.items()}
    # a package's __init__ importing its own submodules is not a cycle of concern: skip parent edges
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".") and not t.startswith(m + ".")}
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not sccs, f"import cycles: {sccs}"


def test_paths_named_in_docs_exist():
    """Every repository path a docstring or the README names (``dsp/params.py``, ``models/README.md``)
    exists."""
    pattern = re.compile(r"(?<![\w./-])((?:dsp|models|rt|bench|debleed|configs|tests)/[\w/.-]*\.(?:py|md|toml|onnx))")
    files = [ROOT / "README.md", ROOT / "models" / "README.md"] + [p for f in FOLDERS for p in (ROOT / f).rglob("*.py")]
    missing = set()
    for f in files:
        for m in pattern.findall(f.read_text()):
            if "*" in m or "<" in m:
                continue
            if not (ROOT / m).exists():
                missing.add(f"{f.relative_to(ROOT)} names {m}")
    assert not missing, "\n".join(sorted(missing))
