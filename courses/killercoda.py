"""Killercoda scenarios as labs.

A scenario directory holds ``index.json`` (title, description, details with
intro, steps, finish and assets, backend). It becomes one lab: each step's
text is a step, each step's ``verify`` script one ``run`` check (exit 0 =
pass) of an exercise named after the step, the intro's ``background`` script
(and the steps' ones, which Killercoda runs as the step opens) the lab's
setup, and assets files placed in the sandbox. ``{{exec}}`` and ``{{copy}}``
after code blocks become our click-to-run and copy-only blocks.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

from courses.content import SLUG, ContentError, ExerciseDef, LabDef, Problem, StepDef

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
        meta: dict[str, Any] = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContentError([Problem(index, None, "file is missing: a Killercoda scenario has an index.json")]) from None
    except json.JSONDecodeError as exc:
        raise ContentError([Problem(index, exc.lineno, f"invalid JSON: {exc.msg}")]) from None
    if not isinstance(meta, dict):
        raise ContentError([Problem(index, 1, "expected a JSON object")])

    def read(relative: Any, what: str) -> str:
        if not relative:
            return ""
        path = (directory / str(relative)).resolve()
        if directory not in path.parents:
            problem(f"{what}: {relative} is outside the scenario directory")
            return ""
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            problem(f"{what}: {relative} does not exist")
        except UnicodeDecodeError:
            problem(f"{what}: {relative} is not UTF-8 text")
        return ""

    title = str(meta.get("title") or "").strip()
    if not title:
        problem("'title' is required")
    details = meta.get("details") or {}
    if not isinstance(details, dict):
        problem("'details' must be an object")
        details = {}
    intro = details.get("intro") or {}
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
    for host, assets in (details.get("assets") or {}).items():
        for asset in assets or []:
            source = asset.get("file", "")
            content = read(f"assets/{source}", f"asset {source} for {host}")
            target = str(asset.get("target") or "~").replace("~", "/root")
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
    if problems:
        raise ContentError(problems)
    environment: dict[str, Any] = {"image": "lab-base"}
    if files:
        environment["files"] = files
    if setup_parts:
        environment["setup"] = "\n".join(part for part in setup_parts if part.strip()) + "\n"
    finish = details.get("finish") or {}
    return LabDef(
        slug=_slug(directory.name, "scenario"),
        order=order,
        title=title,
        summary=str(meta.get("description") or ""),
        intro=_markdown(read(intro.get("text"), "intro text")) if intro.get("text") else "",
        finish=_markdown(read(finish.get("text"), "finish text")) if finish.get("text") else "",
        environment=environment,
        needs=[],
        steps=steps,
        solution="",
        path=directory,
    )
