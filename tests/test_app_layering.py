"""The Django apps import one way (the order is written in courses/__init__.py).

From the bottom: ``accounts`` → ``courses`` → ``labs`` → ``grader`` → ``lti``, each importing
only the apps below it (and ``runtime``, which imports none of them), as their models already
point: a LabSession belongs to a courses Lab, a Submission to a LabSession and an Exercise.
On top, the pages that show every app at once: each app's ``views``/``urls`` and the courses
page composers (``courses.pages``, ``classview``, ``progress``, ``charts``), which may import
anything and which nothing below imports. What goes the other way is a signal
(``courses.signals``) or a registry filled from above (``courses.content.CHECK_TYPES``).

Imports are read with ``ast`` from the sources, function-local ones included (an import
hidden in a function is still an edge).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ("accounts", "courses", "labs", "grader", "lti")
PAGES = frozenset(
    {f"{app}.views" for app in APPS}
    | {f"{app}.urls" for app in APPS}
    | {"courses.pages", "courses.classview", "courses.progress", "courses.charts"}
)
TOP = len(APPS)


def layer(module: str) -> int | None:
    """The layer of ``module`` (0 = accounts ... TOP = the pages), None outside the apps."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in PAGES:
            return TOP
    return APPS.index(parts[0]) if parts[0] in APPS else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, *, package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported module or module.name) of every import in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def back_edges(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """``module: line -> imported`` for every import of a higher layer than the importer's."""
    found = []
    for module, (source, package) in sorted(sources.items()):
        own = layer(module)
        if own is None:
            continue
        for line, target in imports(source, module, package=package):
            theirs = layer(target)
            if theirs is not None and theirs > own:
                found.append(f"{module}:{line} -> {target}")
    return sorted(set(found))


def app_sources() -> dict[str, tuple[str, bool]]:
    sources = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            sources[module_name(path)] = (path.read_text(), path.name == "__init__.py")
    return sources


def test_the_apps_import_only_the_apps_below_them() -> None:
    assert back_edges(app_sources()) == []


def test_the_order_is_real_each_app_builds_on_the_one_below() -> None:
    """Not vacuous: the edges the order allows are there, so the test reads real imports."""
    edges = {
        (layer(module), layer(target))
        for module, (source, package) in app_sources().items()
        for _line, target in imports(source, module, package=package)
    }
    courses, labs, grader = APPS.index("courses"), APPS.index("labs"), APPS.index("grader")
    assert (labs, courses) in edges and (grader, labs) in edges and (grader, courses) in edges
    assert (TOP, grader) in edges


def test_an_import_upwards_is_found_wherever_it_hides() -> None:
    planted = {
        "courses.content": ("def f():\n    from grader.checks import base\n", False),
        "labs.selectors": ("import courses.models\nfrom courses import classview\n", False),
        "labs.tasks": ("from .views import session_page\n", False),
        "grader": ("from . import models\n", True),
        "courses.views": ("from lti import services\n", False),
    }
    assert back_edges(planted) == [
        "courses.content:2 -> grader.checks",
        "courses.content:2 -> grader.checks.base",
        "labs.selectors:2 -> courses.classview",
        "labs.tasks:1 -> labs.views",
        "labs.tasks:1 -> labs.views.session_page",
    ]
