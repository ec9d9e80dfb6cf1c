"""``file``: a path in the sandbox, inspected with one exec.

Fields: ``path`` (absolute), ``exists`` (default true), ``is_dir``, ``mode``
("0644"), ``owner`` (name or uid), ``contains`` (string or list), ``matches``
(regex), and ``document`` — ``{path: .spec.replicas, equals|contains|matches|gte|lte: value}``
(or a list of them) evaluated on the file parsed as YAML or JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

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
from grader.checks.jsonpath import compare, resolve

READ_LIMIT = 1024 * 1024
# $1 = path, $2 = byte limit. Prints "mode|uid|user|type" on the first line, then the content of a regular file.
_SCRIPT = (
    'if [ ! -e "$1" ] && [ ! -L "$1" ]; then echo MISSING; exit 0; fi; '
    'stat -c "%a|%u|%U|%F" -- "$1" || exit 3; '
    'if [ -f "$1" ]; then head -c "$2" -- "$1"; fi'
)


def _problems(spec: Mapping[str, Any]) -> CheckProblems:
    if isinstance(spec.get("path"), str) and not spec["path"].startswith("/"):
        yield "path", "'path' must be absolute"


@register(
    "file",
    required={"path"},
    optional={"exists", "contains", "matches", "mode", "owner", "is_dir", "document"},
    validate=_problems,
)
def check_file(spec: Mapping[str, Any], target: Target, timeout: float) -> Outcome:
    path = spec.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise CheckError("a file check needs an absolute `path`")
    result = target.exec(["sh", "-c", _SCRIPT, "sh", path, str(READ_LIMIT)], timeout=timeout)
    if result.timed_out:
        return Outcome(False, f"Reading {path} took longer than {timeout:g} s.", timed_out=True)
    if result.exit_code not in (0, 141):
        return Outcome(False, clean_output(f"Could not inspect {path}: {result.stderr_text}"))
    header, _, body = result.stdout.partition(b"\n")
    want_exists = spec.get("exists", True)
    if header.strip() == b"MISSING":
        return Outcome(not want_exists, f"{path} does not exist" + ("" if not want_exists else "."))
    if not want_exists:
        return Outcome(False, f"{path} exists but should not.")
    try:
        mode, uid, user, kind = header.decode("utf-8", "replace").split("|", 3)
    except ValueError:
        return Outcome(False, clean_output(f"Could not inspect {path}: {header!r}"))
    problems: list[str] = []
    is_dir = kind == "directory"
    if "is_dir" in spec and bool(spec["is_dir"]) != is_dir:
        problems.append(f"{path} is {'a' if is_dir else 'not a'} directory")
    if "mode" in spec:
        want = str(spec["mode"]).lstrip("0") or "0"
        if (mode.lstrip("0") or "0") != want:
            problems.append(f"mode is {mode.zfill(4)}, expected {str(spec['mode']).zfill(4)}")
    if "owner" in spec:
        owner = str(spec["owner"])
        if owner not in (user, uid):
            problems.append(f"owner is {user} ({uid}), expected {shorten(owner)}")
    text = body.decode("utf-8", "replace")
    needs_content = any(k in spec for k in ("contains", "matches", "document"))
    if needs_content and not kind.startswith("regular"):
        problems.append(f"{path} is not a regular file")
    else:
        for needle in as_list(spec.get("contains")):
            if str(needle) not in text:
                problems.append(f"{path} does not contain {shorten(needle)!r}")
        if "matches" in spec and not compile_regex(spec["matches"], "matches").search(text):
            problems.append(f"{path} does not match {shorten(spec['matches'])!r}")
        if "document" in spec:
            problems.extend(_document_problems(path, text, spec["document"]))
    if problems:
        return Outcome(False, clean_output("\n".join(problems)))
    return Outcome(True, f"{path} is as expected.")


def _document_problems(path: str, text: str, expectations: Any) -> list[str]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [f"{path} is not valid YAML/JSON: {shorten(exc, 300)}"]
    doc: Any = docs[0] if len(docs) == 1 else docs
    problems: list[str] = []
    for expectation in as_list(expectations):
        if not isinstance(expectation, Mapping) or "path" not in expectation:
            raise CheckError("each `document` expectation needs a `path`")
        found = resolve(doc, str(expectation["path"]))
        problem = compare(found, expectation)
        if problem:
            problems.append(f"{path}: {expectation['path']} {problem}")
    return problems
