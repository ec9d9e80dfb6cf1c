"""Killercoda scenarios as labs.

A scenario directory holds ``index.json`` (title, description, details with
intro, steps, finish and assets, backend). It becomes one lab: each step's
text is a step, each step's ``verify`` script one ``run`` check (exit 0 =
pass) of an exercise named after the step, the intro's ``background`` script
(and the steps' ones, which Killercoda runs as the step opens) the lab's
setup, and assets files placed in the sandbox. ``{{exec}}`` and ``{{copy}}``
after code blocks become our click-to-run and copy-only blocks.

A scenario is third-party content, so every name in ``index.json`` is data:
each file it names is read only when it is a regular file beneath the
scenario directory once every symlink is resolved (no ``..``, no absolute
path, no link pointing out, no device or FIFO), and asset targets must stay
where they say (``~/...`` inside ``/root``) with no ``..`` in them.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import re
import shlex
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from courses.content import SLUG, ContentError, ExerciseDef, LabDef, Problem, StepDef

MAX_FILE_BYTES = 1024 * 1024


class Unreadable(Exception):
    """A file named by the scenario that may not or cannot be read (the message says why)."""


def read_beneath(directory: Path, relative: str) -> str:
    """The UTF-8 text of ``relative`` inside ``directory`` (already resolved).

    Refused: absolute names, ``..``, NUL, anything that resolves outside
    ``directory`` through a symlink, and anything but a regular file.
    """
    if "\0" in relative or PurePosixPath(relative).is_absolute() or ".." in PurePosixPath(relative).parts:
        raise Unreadable("is outside the scenario directory")
    path = (directory / relative).resolve()
    if directory not in path.parents:
        raise Unreadable("is outside the scenario directory")
    try:
        # O_NOFOLLOW: a link swapped in after resolve() is not followed either;
        # O_NONBLOCK: a FIFO cannot hang the import before fstat() refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Unreadable("does not exist") from None
    except OSError as exc:
        raise Unreadable(f"cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Unreadable("is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise Unreadable(f"is larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("is not UTF-8 text") from None


def _asset_target(raw: Any) -> str | None:
    """An asset's target directory as an absolute, normal path (``~`` is
    /root), or None when it is not one: relative, ``..``, control characters."""
    target = str(raw or "~")
    if target == "~" or target.startswith("~/"):
        target = "/root" + target[1:]
    if not target.startswith("/") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return None
    if ".." in PurePosixPath(target).parts:
        return None
    return posixpath.normpath(target)


FENCE_MARK = re.compile(r"```([^\n`]*)\n(.*?)```\{\{(exec|copy)(?: [^}]*)?\}\}", re.DOTALL)
INLINE_MARK = re.compile(r"`([^`\n]+)`\{\{(exec|copy)(?: [^}]*)?\}\}")


def _markdown(text: str) -> str:
    def fence(match: re.Match[str]) -> str:
        language = match.group(1).strip().split(" ")[0] or "bash"
        role = "run" if match.group(3) == "exec" else "copy"
        return f"```{language} {role}\n{match.group(2)}```"

    text = FENCE_MARK.sub(fence, text)
    # An inline command marked {{exec}} becomes a runnable block of its own.
    return INLINE_MARK.sub(
        lambda m: f"\n```bash {'run' if m.group(2) == 'exec' else 'copy'}\n{m.group(1)}\n```\n", text
    )


def _slug(text: str, fallback: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50].strip("-")
    return slug if SLUG.match(slug or "") else fallback


def read_scenario(directory: Path, *, order: int = 1) -> LabDef:
    """The lab a Killercoda scenario directory describes (raises ContentError)."""
    directory = directory.resolve()
    index = directory / "index.json"
    problems: list[Problem] = []

    def problem(message: str, path: Path = index, line: int | None = None) -> None:
        problems.append(Problem(path, line, message))

    try:
        meta: dict[str, Any] = json.loads(read_beneath(directory, "index.json"))
    except Unreadable as exc:
        if not index.exists() and not index.is_symlink():
            raise ContentError(
                [Problem(index, None, "file is missing: a Killercoda scenario has an index.json")]
            ) from None
        raise ContentError([Problem(index, None, f"index.json {exc}")]) from None
    except json.JSONDecodeError as exc:
        raise ContentError([Problem(index, exc.lineno, f"invalid JSON: {exc.msg}")]) from None
    if not isinstance(meta, dict):
        raise ContentError([Problem(index, 1, "expected a JSON object")])

    def read(relative: Any, what: str) -> str:
        if not relative:
            return ""
        if not isinstance(relative, str):
            problem(f"{what}: expected a file name, got {relative!r}")
            return ""
        try:
            return read_beneath(directory, relative)
        except Unreadable as exc:
            problem(f"{what}: {relative!r} {exc}")
        return ""

    def mapping(value: Any, what: str) -> dict[str, Any]:
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            problem(f"'{what}' must be an object")
            return {}
        return value

    title = str(meta.get("title") or "").strip()
    if not title:
        problem("'title' is required")
    details = mapping(meta.get("details"), "details")
    intro = mapping(details.get("intro"), "details.intro")
    setup_parts = []
    if intro.get("background"):
        setup_parts.append(read(intro["background"], "intro background"))
    steps: list[StepDef] = []
    raw_steps = details.get("steps") or []
    if not isinstance(raw_steps, list) or not raw_steps:
        problem("'details.steps' must be a non-empty list")
        raw_steps = []
    for number, raw in enumerate(raw_steps, start=1):
        if not isinstance(raw, dict):
            problem(f"step {number} must be an object")
            continue
        step_title = str(raw.get("title") or f"Step {number}")
        body = _markdown(read(raw.get("text"), f"step {number} text"))
        if raw.get("background"):
            setup_parts.append(read(raw["background"], f"step {number} background"))
        exercises = []
        verify = read(raw.get("verify"), f"step {number} verify") if raw.get("verify") else ""
        if verify.strip():
            exercises.append(
                ExerciseDef(
                    slug=f"step-{number}-{_slug(step_title, 'check')}"[:60].strip("-"),
                    title=step_title,
                    checks=[
                        {
                            "type": "run",
                            "name": f"{step_title}: verify",
                            "command": f"bash -c {shlex.quote(verify)}",
                            "timeout": 30,
                        }
                    ],
                    hints=[],
                    solution="",
                    solution_after=3,
                    order=1,
                )
            )
        steps.append(StepDef(order=number, title=step_title, body=body, exercises=exercises))

    files: dict[str, str] = {}
    asset_setup: list[str] = []
    for host, assets in mapping(details.get("assets"), "details.assets").items():
        if not isinstance(assets, list):
            problem(f"'details.assets.{host}' must be a list")
            continue
        for asset in assets:
            if not isinstance(asset, dict) or not isinstance(asset.get("file"), str) or not asset["file"]:
                problem(f"asset for {host}: expected an object with a 'file', got {asset!r}")
                continue
            source = asset["file"]
            content = read(f"assets/{source}", f"asset {source} for {host}")
            target = _asset_target(asset.get("target"))
            if target is None:
                problem(
                    f"asset {source} for {host}: target {asset.get('target')!r} must be an absolute path without '..'"
                )
                continue
            name = PurePosixPath(source).name
            if target.rstrip("/") == "/root" or target.startswith("/root/"):
                files[str(PurePosixPath(target[len("/root") :].lstrip("/")) / name)] = content
            else:
                encoded = base64.b64encode(content.encode()).decode()
                destination = shlex.quote(str(PurePosixPath(target) / name))
                asset_setup.append(f"mkdir -p {shlex.quote(target)} && echo {encoded} | base64 -d > {destination}")
            if asset.get("chmod"):
                asset_setup.append(
                    f"chmod {shlex.quote(str(asset['chmod']))} {shlex.quote(str(PurePosixPath(target) / name))}"
                )
    # Assets are in place before any background script runs, as on Killercoda.
    setup_parts = asset_setup + setup_parts
    # Read before the verdict, so that their problems are reported too.
    finish = mapping(details.get("finish"), "details.finish")
    intro_text = _markdown(read(intro.get("text"), "intro text")) if intro.get("text") else ""
    finish_text = _markdown(read(finish.get("text"), "finish text")) if finish.get("text") else ""
    if problems:
        raise ContentError(problems)
    environment: dict[str, Any] = {"image": "lab-base"}
    if files:
        environment["files"] = files
    if setup_parts:
        environment["setup"] = "\n".join(part for part in setup_parts if part.strip()) + "\n"
    return LabDef(
        slug=_slug(directory.name, "scenario"),
        order=order,
        title=title,
        summary=str(meta.get("description") or ""),
        intro=intro_text,
        finish=finish_text,
        environment=environment,
        needs=[],
        steps=steps,
        solution="",
        path=directory,
    )
