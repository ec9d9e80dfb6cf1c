"""runtime/ keeps its layers, has no import circle and no package uses another's private names (#16).

Three checks over every module under ``runtime/``:

* each imports on its own in a fresh interpreter (one subprocess per module, a few at a time),
  so a module that only loads because something else was imported first, or that sits on an
  import circle, fails here by name;
* the run-time imports (module level, outside ``if TYPE_CHECKING``) form no circle, found by
  parsing the sources with ``ast``, so a circle that happens to load in one order still fails;
* every import (function-local and ``TYPE_CHECKING`` ones too: a layer must not even know the
  names of the layers above it) goes down or sideways in the order written in
  ``runtime/__init__.py``'s docstring (``LAYERS`` below repeats it, and a test keeps the two
  the same), and no module imports a ``_private`` name or module of another package, nor reaches
  one through an imported module (``netns._in_ns``) or, after a ``sys.path`` change, by its bare
  name (``import _mounthelper``); none must (``PRIVATE_ALLOWED`` would list one, with its reason);
* no module changes ``sys.path``: a helper child is a module started with ``python -m``
  (runtime/kernel/children.py) and imports what it shares by its module name.

A "package" is a subpackage of ``runtime`` (``runtime.kube`` with everything below it) or,
for the modules at the top of ``runtime/``, the module itself.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"

# lowest first; a package may import its own layer and the layers below it, never above
LAYERS: list[set[str]] = [
    {"errors", "procfs", "urlsafety", "loops", "unixsock", "auth", "proxy", "nodecert"},
    {"kernel"},
    {"images", "sessions"},
    {"sandbox"},
    {"dockerapi"},
    {"kube"},
    {"relay", "client", "backends", "placement", "daemon", "__main__", "runtime"},
]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = sorted(_module_name(p) for p in RUNTIME.rglob("*.py") if "__pycache__" not in p.parts)
# ``import _mounthelper`` after a sys.path change: the bare name of a private runtime module
PRIVATE_FILES = {m.rsplit(".", 1)[-1]: m for m in MODULES if _is_private(m.rsplit(".", 1)[-1])}

# (module, the other package's private module it reaches) allowed, each with its reason: none
PRIVATE_ALLOWED: dict[tuple[str, str], str] = {}


def package_of(module: str) -> str:
    """``runtime.kube.apiserver`` -> ``kube``; ``runtime.errors`` -> ``errors``; ``runtime`` -> ``runtime``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "runtime"


def layer_of(module: str) -> int:
    pkg = package_of(module)
    for i, layer in enumerate(LAYERS):
        if pkg in layer:
            return i
    raise AssertionError(f"{module}: package {pkg!r} is in no layer of runtime/__init__.py's order")


def is_module(name: str) -> bool:
    rel = ROOT.joinpath(*name.split("."))
    return rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file()


class Import:
    def __init__(self, module: str, line: int, *, private: str | None, runtime_time: bool) -> None:
        self.module = module  # the runtime module loaded (X for "from X import name", X.m if m is a module)
        self.line = line
        self.private = private  # the private part named, if any ("_in_ns", "_proc")
        self.runtime_time = runtime_time  # module level and outside TYPE_CHECKING


def _type_checking_blocks(tree: ast.Module) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                ids |= {id(n) for n in ast.walk(child)}
    return ids


@cache
def imports_of(module: str) -> tuple[list[Import], list[tuple[int, str]]]:
    path = ROOT.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return parse_imports(path.read_text(), str(path))


def parse_imports(source: str, filename: str) -> tuple[list[Import], list[tuple[int, str]]]:
    """The runtime imports in ``source`` and its ``name._private`` uses of imported runtime modules."""
    tree = ast.parse(source, filename)
    typing_only = _type_checking_blocks(tree)
    at_import = {id(s) for s in _run_at_import(tree.body)}
    found: list[Import] = []
    bound: dict[str, str] = {}  # local name -> runtime module it names

    def add(node: ast.stmt, target: str, private: str | None) -> None:
        runtime_time = id(node) in at_import and id(node) not in typing_only
        found.append(Import(target, node.lineno, private=private, runtime_time=runtime_time))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "runtime":
            base = str(node.module)
            base_private = next((p for p in base.split(".") if _is_private(p)), None)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                private = base_private or (alias.name if _is_private(alias.name) else None)
                if is_module(full):
                    bound[alias.asname or alias.name] = full
                    add(node, full, private)
                else:
                    add(node, base, private)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in PRIVATE_FILES:  # a runtime file reached through sys.path
                    add(node, PRIVATE_FILES[alias.name], alias.name)
                    bound[alias.asname or alias.name] = PRIVATE_FILES[alias.name]
                    continue
                if alias.name.split(".")[0] != "runtime":
                    continue
                add(node, alias.name, next((p for p in alias.name.split(".") if _is_private(p)), None))
                if alias.asname:
                    bound[alias.asname] = alias.name
    reached = [
        (node.lineno, f"{bound[node.value.id]}.{node.attr}")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in bound
        and _is_private(node.attr)
    ]
    found.sort(key=lambda i: i.line)
    return found, sorted(reached)


def _run_at_import(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run when the module is imported (not those inside a function)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list):
                yield from _run_at_import([s for s in inner if isinstance(s, ast.stmt)])
        for handler in getattr(stmt, "handlers", None) or []:
            yield from _run_at_import(handler.body)


# --- a fresh interpreter per module ------------------------------------------------------------

# a ``__main__`` module runs its command line when imported: ``--help`` makes that a clean exit
_SCRIPT = (
    "import importlib, sys\n"
    "name = sys.argv[1]\n"
    "sys.argv = [name, '--help']\n"
    "try:\n"
    "    importlib.import_module(name)\n"
    "except SystemExit as exc:\n"
    "    if not name.endswith('__main__') or exc.code not in (0, None):\n"
    "        raise\n"
    "else:\n"
    "    assert name in sys.modules\n"
)


def _import_alone(module: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def imported_alone() -> dict[str, tuple[int, str]]:
    with ThreadPoolExecutor(max_workers=max(2, min(6, (os.cpu_count() or 2) * 2))) as pool:
        return dict(zip(MODULES, pool.map(_import_alone, MODULES), strict=True))


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone_in_a_fresh_interpreter(module: str, imported_alone: dict[str, tuple[int, str]]) -> None:
    status, stderr = imported_alone[module]
    assert status == 0, f"{module} does not import on its own:\n{stderr}"


# --- no circle -------------------------------------------------------------------------------


def _runtime_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        found, _ = imports_of(module)
        for imp in found:
            target = imp.module
            # importing a submodule runs its parents first; a child using its own package is no circle
            if imp.runtime_time and target in graph and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1 or v in graph.get(v, ()):
                circles.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle() -> None:
    circles = find_circles(_runtime_graph())
    assert not circles, "run-time import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_circle_finder_finds_circles() -> None:
    assert find_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_circles({"a": {"b"}, "b": set()}) == []


# --- layers and private names ----------------------------------------------------------------


def test_the_layer_order_is_the_one_runtime_docstring_states() -> None:
    doc = str(ast.get_docstring(ast.parse((RUNTIME / "__init__.py").read_text())))
    stated = re.findall(r"^\s*(\d+)\. (.+?)$", doc, re.MULTILINE)
    assert stated, "runtime/__init__.py's docstring states no layer order"
    written = [{w.strip("`, ") for w in text.split() if w.strip("`, ")} for _, text in stated]
    assert written == LAYERS


def test_every_package_has_a_layer() -> None:
    missing = sorted({package_of(m) for m in MODULES} - set().union(*LAYERS))
    assert not missing, f"packages in no layer: {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_down_the_layers(module: str) -> None:
    mine = layer_of(module)
    up = [
        f"{module}:{imp.line} imports {imp.module} (layer {package_of(imp.module)} is above {package_of(module)})"
        for imp in imports_of(module)[0]
        if layer_of(imp.module) > mine
    ]
    assert not up, "; ".join(up)


@pytest.mark.parametrize("module", MODULES)
def test_no_private_name_of_another_package(module: str) -> None:
    imports, reached = imports_of(module)
    mine = package_of(module)
    bad = [
        f"{module}:{imp.line} imports {imp.module} ... {imp.private}"
        for imp in imports
        if imp.private and package_of(imp.module) != mine and (module, imp.module) not in PRIVATE_ALLOWED
    ]
    bad += [f"{module}:{line} uses {name}" for line, name in reached if package_of(name) != mine]
    assert not bad, "a private name of another package: " + "; ".join(bad)


def test_the_allowed_exceptions_are_still_needed() -> None:
    """An exception whose reason went away is dropped from the list, not kept."""
    for module, target in PRIVATE_ALLOWED:
        assert target in {i.module for i in imports_of(module)[0]}, f"{module} no longer imports {target}"


def sys_path_edits(source: str) -> list[int]:
    """Lines that change ``sys.path`` (a method call on it, or an assignment to it or an item)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and ast.unparse(node).startswith("sys.path.") and node.attr != "copy":
            lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(ast.unparse(t).startswith("sys.path") for t in targets):
                lines.append(node.lineno)
    return sorted(set(lines))


@pytest.mark.parametrize("module", MODULES)
def test_no_module_edits_sys_path(module: str) -> None:
    path = ROOT.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    edits = sys_path_edits(path.read_text())
    assert not edits, f"{module} edits sys.path (lines {edits}): import through runtime.* instead"


def test_the_sys_path_check_sees_every_form() -> None:
    src = (
        "import sys\n"
        "sys.path.insert(0, '/x')\n"
        "sys.path.append('/x')\n"
        "sys.path[:0] = ['/x']\n"
        "sys.path += ['/x']\n"
        "sys.path = ['/x']\n"
        "paths = list(sys.path)\n"
    )
    assert sys_path_edits(src) == [2, 3, 4, 5, 6]


def test_the_private_name_check_sees_every_form() -> None:
    """The check catches ``from runtime.x._m import f``, ``from runtime.x.m import _f``, ``m._f``
    and a private runtime module imported by its bare name."""
    src = (
        "from runtime.sandbox._proc import run\n"
        "from runtime.sandbox.manager import _Hidden\n"
        "from runtime.dockerapi import netns\n"
        "def f():\n"
        "    netns._in_ns(1, [])\n"
        "import _mounthelper as mh\n"
        "mh._x\n"
    )
    imports, reached = parse_imports(src, "probe.py")
    assert [(i.module, i.private, i.runtime_time) for i in imports] == [
        ("runtime.sandbox._proc", "_proc", True),
        ("runtime.sandbox.manager", "_Hidden", True),
        ("runtime.dockerapi.netns", None, True),
        ("runtime.sandbox._mounthelper", "_mounthelper", True),
    ]
    assert reached == [(5, "runtime.dockerapi.netns._in_ns"), (7, "runtime.sandbox._mounthelper._x")]


def test_imports_inside_functions_and_type_checking_do_not_run_at_import() -> None:
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from runtime.dockerapi import netns\n"
        "def f():\n"
        "    from runtime.sandbox import manager\n"
        "try:\n"
        "    from runtime import errors\n"
        "except ImportError:\n"
        "    pass\n"
    )
    imports, _ = parse_imports(src, "probe.py")
    assert [(i.module, i.runtime_time) for i in imports] == [
        ("runtime.dockerapi.netns", False),
        ("runtime.sandbox.manager", False),
        ("runtime.errors", True),
    ]


# --- inside runtime/kube: no private name of another module ----------------------------------
#
# The check above is per package. Inside runtime/kube it is per module (#16): no module imports
# another module's ``_private`` name, reaches one through an imported module, or uses a private
# attribute that another runtime module defines on an object that is not its own (anything but
# ``self``/``cls``: ``cluster._dirty``, ``c._pod_stream_sub``, ``engine._get``); a name shared
# across modules is made public, with a docstring. The attribute check is by name (Python has
# no types here): ``x._y`` counts when ``_y`` is defined by some other module of runtime/ and
# not by this one. Scoped to runtime/kube: elsewhere in runtime/ modules still share private
# names with their neighbours (dockerapi/engine's mixin modules share ``_Container``, ``_du``...;
# sessions, backends, daemon reach into each other's objects), left for a later pass.
MODULE_PRIVATE_SCOPE = "runtime.kube"


def _module_path(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_own(value: ast.expr) -> bool:
    return isinstance(value, ast.Name) and value.id in ("self", "cls")


def private_definitions(tree: ast.Module) -> set[str]:
    """The private names a module defines: its functions, classes, methods, assigned names
    and its objects' attributes (``self._x = ...``; not ``other._x = ...``, a write into
    another object)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_own(node.value):
            names.add(node.attr)
    return {n for n in names if _is_private(n)}


@cache
def _private_definers() -> dict[str, frozenset[str]]:
    """Private name -> the runtime modules that define it."""
    found: dict[str, set[str]] = {}
    for module in MODULES:
        for name in private_definitions(ast.parse(_module_path(module).read_text())):
            found.setdefault(name, set()).add(module)
    return {name: frozenset(mods) for name, mods in found.items()}


def module_private_uses(source: str, filename: str, module: str, definers: dict[str, frozenset[str]]) -> list[str]:
    """Where ``source`` (the text of ``module``) uses a private name of another module."""
    imports, reached = parse_imports(source, filename)
    bad = [
        f"{module}:{imp.line} imports {imp.private} from {imp.module}"
        for imp in imports
        # a private module itself (``from runtime.kube.node import _netns_probe``) is its
        # package's business: the per-package check above
        if imp.private and imp.module != module and not imp.module.endswith("." + imp.private)
    ]
    bad += [f"{module}:{line} uses {name}" for line, name in reached if not is_module(name)]
    tree = ast.parse(source, filename)
    mine = private_definitions(tree)
    for node in sorted(ast.walk(tree), key=lambda n: getattr(n, "lineno", 0)):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)) or node.attr in mine:
            continue
        if _is_own(node.value):
            continue
        others = definers.get(node.attr, frozenset()) - {module}
        if others:
            where = ", ".join(sorted(others))
            bad.append(f"{module}:{node.lineno} uses {ast.unparse(node)} ({node.attr}: defined in {where})")
    return bad


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(MODULE_PRIVATE_SCOPE + ".")])
def test_no_private_name_of_another_module_in_kube(module: str) -> None:
    path = _module_path(module)
    bad = module_private_uses(path.read_text(), str(path), module, _private_definers())
    assert not bad, "make the shared name public (with a docstring): " + "; ".join(bad)


def test_the_module_private_check_sees_every_form() -> None:
    src = (
        "from runtime.kube.node.podstate import _Instance\n"
        "from runtime.kube.machinery import cel\n"
        "from runtime.kube.node import _netns_probe\n"
        "def f(cluster, x):\n"
        "    cel._eq(1, 1)\n"
        "    cluster._dirty = False\n"
        "    self._state = True\n"
        "    x._state, x._mine()\n"
        "    x._asdict()\n"
        "def _mine():\n"
        "    pass\n"
    )
    # defined by another module too; this one's own (_state, _mine) and what no runtime module
    # defines (_asdict: a namedtuple's) are not counted
    definers = {n: frozenset({"runtime.kube.other"}) for n in ("_Instance", "_eq", "_dirty", "_mine", "_state")}
    bad = module_private_uses(src, "probe.py", "runtime.kube.probe", definers)
    assert [b.split(" ", 1)[0] for b in bad] == [
        "runtime.kube.probe:1",  # imports another module's private class
        "runtime.kube.probe:5",  # reaches cel._eq through the module
        "runtime.kube.probe:5",  # ... which is also an attribute another module defines
        "runtime.kube.probe:6",  # another object's private attribute (written, too)
    ], bad
