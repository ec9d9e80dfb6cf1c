"""The ``connectivity`` check's definitions: what an author gets wrong is an ``error`` (grader)
and a problem with file and line at import (courses/content.py), never a silent pass.

The check's behaviour with real traffic is proved by the security lab
(tests/content/test_lab_solutions.py: its `blocked` checks fail on a fresh sandbox and every
check passes after the solution) and by tests/security/test_netpol_boundary.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from courses.content import ContentError, read_course
from grader.checks import Target, run_checks

GOOD: dict[str, Any] = {
    "type": "connectivity",
    "from": {"namespace": "shop", "pod": "web"},
    "to": {"namespace": "shop", "service": "api"},
    "port": 8080,
    "expect": "blocked",
}

BAD = [
    ({"from": {"namespace": "shop"}}, "needs `from` with a `pod` or a `selector`"),
    ({"from": "web"}, "needs `from`"),
    ({"to": {"namespace": "shop"}}, "needs `to` with a `service`, `pod`, `selector` or `host`"),
    ({"to": {"host": "api.shop"}}, "`to.host` must be an IPv4 address"),
    ({"port": 0}, "needs a `port`"),
    ({"port": True}, "needs a `port`"),
    ({"port": ""}, "needs a `port`"),
    ({"protocol": "ICMP"}, "`protocol` must be TCP or UDP"),
    ({"expect": "closed"}, "`expect` must be `open` or `blocked`"),
    ({"expect": None}, "`expect` must be `open` or `blocked`"),
]


@pytest.mark.parametrize(("change", "words"), BAD)
def test_a_misconfigured_check_is_an_error_saying_what_is_wrong(change: dict[str, Any], words: str) -> None:
    results = run_checks(Target(kubeconfig="unused"), [{**GOOD, **change}])
    test = results["tests"][0]
    assert test["status"] == "error", test
    assert words in test["output"], test["output"]


def test_without_a_cluster_it_says_so() -> None:
    results = run_checks(Target(), [GOOD])
    assert results["tests"][0]["status"] == "error"
    assert "Kubernetes cluster" in results["tests"][0]["output"]


LAB = """
title: Policies
environment: {services: [kubernetes]}
needs: [kubernetes, pods]
steps:
  - file: steps/01.md
    exercises:
      - slug: deny
        title: Deny
        checks:
          - type: connectivity
            from: {namespace: shop, pod: web}
            to: {namespace: shop, service: api}
            port: 8080
            expect: blocked
"""


EXPECT = "            expect: blocked\n"


def _course(root: Path, lab: str) -> Path:
    files = {
        "course.yaml": "title: C\nsummary: S\n",
        "01-m/module.yaml": "title: M\n",
        "01-m/labs/01-l/lab.yaml": textwrap.dedent(lab).lstrip(),
        "01-m/labs/01-l/steps/01.md": "# Step\n",
        "01-m/labs/01-l/solution.sh": "true\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_valid_connectivity_check_imports(tmp_path: Path) -> None:
    course = read_course(_course(tmp_path / "c", LAB))
    check = course.modules[0].labs[0].steps[0].exercises[0].checks[0]
    assert check["type"] == "connectivity" and check["expect"] == "blocked"


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("expect: blocked", "expect: closed", 14, "'expect' must be 'open' or 'blocked'"),
        ("port: 8080", "port: 99999", 13, "'port' must be a port number or a port's name"),
        ("to: {namespace: shop, service: api}", "to: {namespace: shop}", 12, "'to' needs a 'service'"),
        ("from: {namespace: shop, pod: web}", "from: web", 11, "'from' needs a 'pod' or a 'selector'"),
        (
            "            expect: blocked\n",
            "            expect: blocked\n            protocol: ICMP\n",
            15,
            "TCP or UDP",
        ),
        ("            port: 8080\n", "", 10, "'port' is required"),
        (
            "            expect: blocked\n",
            "            expect: blocked\n            via: x\n",
            15,
            "unknown field 'via'",
        ),
    ],
)
def test_a_bad_connectivity_check_is_refused_at_import_with_its_line(
    tmp_path: Path, old: str, new: str, line: int, words: str
) -> None:
    assert old in LAB
    root = _course(tmp_path / "c", LAB.replace(old, new, 1))
    with pytest.raises(ContentError) as caught:
        read_course(root)
    messages = [str(p) for p in caught.value.problems]
    assert any(f"lab.yaml:{line}: " in m and words in m for m in messages), messages
