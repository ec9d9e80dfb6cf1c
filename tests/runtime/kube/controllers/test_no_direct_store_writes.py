"""Only the API server writes its store (#16): controllers, the scheduler, the kubelet and the
node agents write through the API client (apiserver/client.py), so validation, admission,
generation, resourceVersions, managedFields and finalizers apply to every write. A call to
``<something>.store.put`` or ``.store.remove`` outside runtime/kube/apiserver/ fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

KUBE = Path(__file__).resolve().parents[4] / "runtime" / "kube"


def _store_writes(src: str) -> list[int]:
    """Line numbers of ``X.store.put(...)`` / ``X.store.remove(...)`` calls in ``src``."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(src))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("put", "remove")
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "store"
    ]


def test_nothing_outside_the_api_server_writes_its_store() -> None:
    files = [p for p in KUBE.rglob("*.py") if "apiserver" not in p.relative_to(KUBE).parts]
    assert len(files) > 20  # the walk found the package
    found = [f"{p.relative_to(KUBE)}:{line}" for p in files for line in _store_writes(p.read_text())]
    assert found == []


def test_the_check_sees_a_direct_write() -> None:
    src = (KUBE / "controllers" / "namespace.py").read_text()
    assert _store_writes(src) == []
    probe = src + "\n\ndef _x(c):\n    c.store.remove('pods', 'ns', 'n')\n    self.c.store.put('pods', {}, 'ADDED')\n"
    assert len(_store_writes(probe)) == 2
