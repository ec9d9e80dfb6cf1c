"""``run``: a command in the sandbox (``sh -c`` as root in /root).

Passes when every expectation given holds: ``exit_code`` (default 0),
``stdout_contains`` (string or list), ``stdout_matches`` (regex),
``stdout_equals``, ``stderr_contains``, ``not_stdout_contains``. Lines of
stdout that start with ``FAIL:`` are the feedback shown to the student (the
Killercoda/Instruqt verify-script contract).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.checks.base import (
    CheckError,
    CheckProblems,
    Outcome,
    Target,
    as_list,
    clean_output,
    compile_regex,
    register,
    shorten,
)


def _feedback(stdout: str) -> list[str]:
    return [line[5:].strip() for line in stdout.splitlines() if line.startswith("FAIL:")]


def _problems(spec: Mapping[str, Any]) -> CheckProblems:
    if "command" in spec and not isinstance(spec["command"], str):
        yield "command", "'command' must be text (a shell command)"


@register(
    "run",
    required={"command"},
    optional={
        "exit_code",
        "stdout_contains",
        "stdout_matches",
        "stdout_equals",
        "stderr_contains",
        "not_stdout_contains",
    },
    validate=_problems,
)
def check_run(spec: Mapping[str, Any], target: Target, timeout: float) -> Outcome:
    command = spec.get("command")
    if not isinstance(command, str) or not command.strip():
        raise CheckError("a run check needs a `command`")
    result = target.exec(["sh", "-c", command], timeout=timeout)
    if result.timed_out:
        return Outcome(False, f"The check did not finish within {timeout:g} s and was stopped.", timed_out=True)
    stdout, stderr = result.stdout_text, result.stderr_text
    problems: list[str] = []
    expected_code = spec.get("exit_code", 0)
    if expected_code is not None and result.exit_code != int(expected_code):
        problems.append(f"exit code {result.exit_code}, expected {expected_code}")
    for needle in as_list(spec.get("stdout_contains")):
        if str(needle) not in stdout:
            problems.append(f"output does not contain {shorten(needle)!r}")
    for needle in as_list(spec.get("not_stdout_contains")):
        if str(needle) in stdout:
            problems.append(f"output contains {shorten(needle)!r}")
    if "stdout_matches" in spec and not compile_regex(spec["stdout_matches"], "stdout_matches").search(stdout):
        problems.append(f"output does not match {shorten(spec['stdout_matches'])!r}")
    if "stdout_equals" in spec and stdout.strip("\n") != str(spec["stdout_equals"]).strip("\n"):
        problems.append(f"output is not {shorten(spec['stdout_equals'])!r}")
    for needle in as_list(spec.get("stderr_contains")):
        if str(needle) not in stderr:
            problems.append(f"error output does not contain {shorten(needle)!r}")
    fails = _feedback(stdout)
    if not problems and not fails:
        return Outcome(True, clean_output(stdout, 1000))
    if fails:
        return Outcome(False, clean_output("\n".join(fails)))
    shown = "\n".join(problems)
    tail = (stdout[-1500:] + ("\n" + stderr[-1500:] if stderr.strip() else "")).strip()
    if tail:
        shown += "\n---\n" + tail
    return Outcome(False, clean_output(shown))
