"""runtime/dockerapi keeps the layering its docstring describes (runtime/dockerapi/__init__.py).

    service.py -> http/ -> build/ -> engine/ -> images/

with leaves any layer may import: the package's own constants (``__init__.py``), ``limits``, ``fsutil``,
``netns`` and the builder's two parsers (``build/dockerfile.py``, ``build/ignore.py``), which
import no other module of the package. Checked here:

* every module imports on its own, each in a fresh interpreter (so no module works only
  because another one happened to be imported first);
* no import circle between the package's modules (module-level imports, as Python runs them;
  ``if TYPE_CHECKING:`` blocks and imports inside functions are not run at import time);
* no import, at module level or inside a function, goes up a layer (nothing below http/
  imports it, the engine imports neither the builder nor http, images import only leaves);
* no module imports a private name (``_name``) from another subpackage, nor reaches one
  through a module it imported from there.

The graph is read from the sources with ``ast``; the fresh-interpreter imports check it
against what Python actually does.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = "runtime.dockerapi"
PACKAGE_DIR = ROOT / "runtime" / "dockerapi"

# rank of each subpackage (or top-level module): an import may only go to an equal or lower rank
RANKS = {"images": 0, "_enginehelper": 0, "engine": 1, "build": 2, "http": 3, "service": 4}
# import no module of the package but the top-level constants: anyone may use them
LEAVES = {
    PACKAGE,
    f"{PACKAGE}.limits",
    f"{PACKAGE}.fsutil",
    f"{PACKAGE}.netns",
    f"{PACKAGE}.build.dockerfile",
    f"{PACKAGE}.build.ignore",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def area(mod: str) -> str:
    """The subpackage (or top-level module) a module belongs to: ``engine``, ``netns``, ``""``."""
    rest = mod[len(PACKAGE) + 1 :].split(".") if mod != PACKAGE else [""]
    return rest[0]


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module of ours it loads
    names: tuple[str, ...]  # names taken from it (from-imports)
    module_level: bool  # runs when the importing module is imported
    line: int


def _resolve(mod: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".")
    if MODULES[mod].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _walk(tree: ast.AST, *, module_level: bool) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, module_level=False)
        elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for stmt in child.body:
                yield stmt, False
                yield from _walk(stmt, module_level=False)
            for stmt in child.orelse:
                yield stmt, module_level
                yield from _walk(stmt, module_level=module_level)
        else:
            yield child, module_level
            yield from _walk(child, module_level=module_level)


def imports_of(mod: str) -> list[Import]:
    tree = ast.parse(MODULES[mod].read_text(), str(MODULES[mod]))
    found: list[Import] = []
    for node, top in _walk(tree, module_level=True):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    found.append(Import(mod, alias.name, (), top, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(mod, node)
            if src not in MODULES:
                continue
            plain = []
            for alias in node.names:
                sub = f"{src}.{alias.name}"
                if sub in MODULES:  # from pkg import submodule
                    found.append(Import(mod, sub, (), top, node.lineno))
                else:
                    plain.append(alias.name)
            if plain:
                found.append(Import(mod, src, tuple(plain), top, node.lineno))
    return found


GRAPH = {mod: imports_of(mod) for mod in MODULES}


def test_the_graph_sees_the_package() -> None:
    """The checks below are only as good as the graph: it must see the modules and the edges
    the layout is made of."""
    assert {f"{PACKAGE}.http.api", f"{PACKAGE}.engine.core", f"{PACKAGE}.images.store"} <= set(MODULES)
    edges = {(i.source, i.target) for imps in GRAPH.values() for i in imps}
    assert (f"{PACKAGE}.http.api", f"{PACKAGE}.engine") in edges  # from runtime.dockerapi.engine import Engine
    assert (f"{PACKAGE}.engine.core", f"{PACKAGE}.images.store") in edges
    assert (f"{PACKAGE}.build.builder", f"{PACKAGE}.build.dockerfile") in edges  # as dfparse


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_imports_alone(mod: str) -> None:
    """``import mod`` as the first thing a fresh interpreter does (as runtimed, a helper child
    or another package may), with this checkout's code first on the path."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {mod}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, f"import {mod} failed in a fresh interpreter:\n{proc.stderr}"


def cycles() -> list[list[str]]:
    """Every elementary circle of module-level imports (Tarjan's strongly connected components;
    a component of more than one module, or a module importing itself, is a circle)."""
    graph = {m: sorted({i.target for i in GRAPH[m] if i.module_level and i.target != PACKAGE}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
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
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle() -> None:
    assert cycles() == []


def test_a_circle_would_be_seen() -> None:
    """The detector itself: tarexport imports store; store importing tarexport closes a circle."""
    a, b = f"{PACKAGE}.images.store", f"{PACKAGE}.images.tarexport"
    assert a in {i.target for i in GRAPH[b]}  # the edge the new one closes into a circle
    saved = GRAPH[a]
    GRAPH[a] = [*saved, Import(a, b, ("load",), True, 0)]
    try:
        assert any(a in c and b in c for c in cycles())
    finally:
        GRAPH[a] = saved


def rank(mod: str) -> int | None:
    return RANKS.get(area(mod))


def layering_violations() -> list[str]:
    bad = []
    for mod, imps in GRAPH.items():
        here = rank(mod)
        for imp in imps:
            there = rank(imp.target)
            if imp.target in LEAVES or there is None:
                continue
            if here is None:
                bad.append(f"{mod}:{imp.line} is a leaf but imports {imp.target}")
            elif there > here:
                bad.append(f"{mod}:{imp.line} ({area(mod)}) imports {imp.target} ({area(imp.target)}): a higher layer")
    return bad


def test_imports_go_down_the_layers() -> None:
    assert layering_violations() == []


def test_leaves_import_only_constants() -> None:
    for leaf in LEAVES:
        targets = {i.target for i in GRAPH[leaf]} - {PACKAGE}
        assert not targets, f"{leaf} is meant to import nothing of the package but imports {sorted(targets)}"


def test_nothing_below_http_imports_it() -> None:
    for mod, imps in GRAPH.items():
        if area(mod) in ("http", "service"):
            continue
        assert not [i for i in imps if area(i.target) == "http"], f"{mod} imports http/"


def test_an_upward_import_would_be_seen() -> None:
    """The checker itself: an engine module importing http/ (even inside a function) is reported."""
    mod = f"{PACKAGE}.engine.core"
    saved = GRAPH[mod]
    GRAPH[mod] = [*saved, Import(mod, f"{PACKAGE}.http.api", ("DockerAPI",), False, 0)]
    try:
        assert any("engine.core" in v and "http.api" in v for v in layering_violations())
    finally:
        GRAPH[mod] = saved


def private_violations() -> list[str]:
    bad = []
    for mod, imps in GRAPH.items():
        for imp in imps:
            if area(imp.target) == area(mod):
                continue
            bad += [f"{mod}:{imp.line} imports {n} from {imp.target}" for n in imp.names if n.startswith("_")]
            if imp.target.rsplit(".", 1)[-1].startswith("_"):
                bad.append(f"{mod}:{imp.line} imports the private module {imp.target}")
        # a module of another subpackage, bound to a name, and a private attribute read from it
        tree = ast.parse(MODULES[mod].read_text())
        foreign: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                src = _resolve(mod, node)
                for alias in node.names:
                    sub = f"{src}.{alias.name}"
                    if sub in MODULES and area(sub) != area(mod):
                        foreign[alias.asname or alias.name] = sub
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname and area(alias.name) != area(mod):
                        foreign[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in foreign
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                bad.append(f"{mod}:{node.lineno} reads {foreign[node.value.id]}.{node.attr}")
    return bad


def test_no_private_name_crosses_subpackages() -> None:
    assert private_violations() == []


def test_a_private_import_would_be_seen() -> None:
    mod = f"{PACKAGE}.http.containers"
    saved = GRAPH[mod]
    GRAPH[mod] = [*saved, Import(mod, f"{PACKAGE}.engine.core", ("_Container",), True, 0)]
    try:
        assert any("_Container" in v for v in private_violations())
    finally:
        GRAPH[mod] = saved
