"""runtime/kube has no import circle, and it cannot come back (#16).

Each module is imported on its own in a fresh interpreter, so a module that only loads
because something else happened to be imported first fails here. The lower layers (the
shared vocabulary in meta.py, the machinery, the admission plugins, RBAC, OpenAPI, the
scheduler and the controllers' helpers) must not load the API server or the controller
manager at run time: they take those as types only (``TYPE_CHECKING``) or as arguments.
A function-local import of the package, the old way of dodging the circle, is refused
unless it is listed below as a deliberate lazy load.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
KUBE = ROOT / "runtime" / "kube"
MODULES = sorted(
    ".".join(p.relative_to(KUBE).with_suffix("").parts).removesuffix(".__init__")
    for p in KUBE.rglob("*.py")
    if p.name != "__main__.py" and p != KUBE / "__init__.py"
)

# modules that sit above the lower layers: nothing below may import them at run time
TOP = {"apiserver.cluster", "controllers.manager", "apiserver.server", "service", "node.kubelet", "apiserver.dryrun"}
LOWER = [
    "meta",
    "machinery.apierrors",
    "machinery.quantity",
    "machinery.selectors",
    "machinery.patch",
    "machinery.ssa",
    "machinery.cel",
    "machinery.cron",
    "machinery.protobuf",
    "machinery.limits",
    "registry",
    "apiserver.store",
    "apiserver.podio",
    "registry.kinds",
    "registry.crd",
    "registry.printers",
    "apiserver.discovery",
    "node.portforward",
    "apiserver.admission",
    "apiserver.podsecurity",
    "apiserver.aggregator",
    "apiserver.rbac",
    "apiserver.openapi",
    "scheduler",
    "controllers.nodelifecycle",
    "controllers.nodetaints",
    "controllers.podgc",
]

# (module, imported module) pairs allowed inside a function, each a deliberate lazy load
LAZY = {
    # the CLI loads the API server (aiohttp and all) only for the commands that serve or mint
    ("cli", "runtime.kube.apiserver.server"),
}


def _loaded_after_import(module: str) -> set[str]:
    code = (
        "import json, sys\n"
        f"import runtime.kube.{module}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('runtime.kube.'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"runtime.kube.{module} does not import on its own:\n{proc.stderr}"
    return {m.removeprefix("runtime.kube.") for m in json.loads(proc.stdout.splitlines()[-1])}


def test_the_module_lists_name_real_modules() -> None:
    assert set(LOWER) <= set(MODULES)
    assert set(MODULES) >= TOP


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    assert module in _loaded_after_import(module)


@pytest.mark.parametrize("module", LOWER)
def test_lower_module_does_not_load_the_api_server_or_controllers(module: str) -> None:
    above = _loaded_after_import(module) & TOP
    assert not above, f"runtime.kube.{module} loads {sorted(above)} at import time"


def test_the_vocabulary_module_imports_nothing_of_ours() -> None:
    assert _loaded_after_import("meta") == {"meta"}


def _function_local_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for fn in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("runtime.kube"):
                found.append((node.lineno, str(node.module)))
            elif isinstance(node, ast.Import):
                found += [(node.lineno, a.name) for a in node.names if a.name.startswith("runtime.kube")]
    return found


def _path(module: str) -> Path:
    p = KUBE.joinpath(*module.split("."))
    return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")


@pytest.mark.parametrize("module", MODULES)
def test_no_function_local_import_dodges_a_circle(module: str) -> None:
    local = [
        f"{module}.py:{line} imports {name}"
        for line, name in _function_local_imports(_path(module))
        if (module, name) not in LAZY
    ]
    assert not local, "import at module top (or TYPE_CHECKING for types): " + "; ".join(local)
