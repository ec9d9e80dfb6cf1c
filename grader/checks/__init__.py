"""Check types and ``run_checks``, the pure grading function.

``run_checks(target, checks)`` needs no database: it runs each check
definition (docs/checks.md) against a ``Target`` with its time limit and
returns a results document shaped like Gradescope's ``results.json``. The
Celery task calls it for a submission; CI calls it after a lab's solution.sh.

A check's status is ``passed``, ``failed``, ``timeout`` (it hung and was
killed, which is not the same as failing) or ``error`` (a bad definition, or
the target is gone). ``InfrastructureError`` (runtimed unreachable) is raised
rather than recorded, so the caller can retry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from grader.checks import connectivity, file, http, image, kube, run  # noqa: F401  (they register themselves)
from grader.checks.base import (
    REGISTRY,
    CheckError,
    InfrastructureError,
    Outcome,
    Target,
    TargetUnavailable,
    check_timeout,
    clean_output,
)

__all__ = [
    "REGISTRY",
    "CheckError",
    "InfrastructureError",
    "Target",
    "TargetUnavailable",
    "check_timeout",
    "clean_output",
    "run_check",
    "run_checks",
]

TOTAL_OUTPUT_LIMIT = 16000


def _name(spec: Mapping[str, Any], index: int) -> str:
    name = spec.get("title") or spec.get("name") or f"{spec.get('type', 'check')} check {index + 1}"
    return clean_output(str(name), 200)


def run_check(spec: Mapping[str, Any], target: Target, index: int = 0) -> dict[str, Any]:
    """One check's entry of ``tests``."""
    started = time.monotonic()
    name = _name(spec, index) if isinstance(spec, Mapping) else f"check {index + 1}"
    hint = clean_output(str(spec.get("hint") or ""), 1000) if isinstance(spec, Mapping) else ""
    try:
        if not isinstance(spec, Mapping):
            raise CheckError("a check must be a mapping")
        kind = spec.get("type")
        func = REGISTRY.get(str(kind))
        if func is None:
            raise CheckError(f"unknown check type {kind!r} (known: {', '.join(sorted(REGISTRY))})")
        outcome = func(spec, target, check_timeout(spec))
    except CheckError as exc:
        outcome, status = Outcome(False, f"This check is misconfigured: {exc}"), "error"
    except TargetUnavailable as exc:
        outcome, status = Outcome(False, str(exc)), "error"
    else:
        status = "passed" if outcome.passed else "timeout" if outcome.timed_out else "failed"
    return {
        "name": name,
        "status": status,
        "output": clean_output(outcome.output),
        "hint": hint if status != "passed" else "",
        "duration_ms": int((time.monotonic() - started) * 1000),
    }


def run_checks(target: Target, checks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Run every check in order; the Gradescope-shaped results document."""
    tests = [run_check(spec, target, i) for i, spec in enumerate(checks)]
    used = 0
    for test in tests:  # keep the whole document bounded, whatever the number of checks
        room = max(200, TOTAL_OUTPUT_LIMIT - used)
        if len(test["output"]) > room:
            test["output"] = clean_output(test["output"], room)
        used += len(test["output"])
    passed = sum(1 for t in tests if t["status"] == "passed")
    return {
        "score": passed,
        "max_score": len(tests),
        "passed": bool(tests) and passed == len(tests),
        "tests": tests,
    }
