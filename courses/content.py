"""Courses as files: reading, validating and describing a course directory.

The format is documented in docs/authoring.md (and docs/checks.md for checks).
This module turns a directory into plain dataclasses, collecting *every*
problem it finds as ``path:line: message`` instead of stopping at the first,
so that an instructor fixes a broken course in one pass. It touches no
database: ``courses.importer`` writes what this module read.

YAML is loaded with a loader that remembers the line of every mapping and
key, so an error in a lab.yaml points at the line to fix.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SLUG_DIR = re.compile(r"^(?P<order>\d{2,3})-(?P<slug>[a-z0-9]+(?:-[a-z0-9]+)*)$")
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
SERVICES = ("docker", "kubernetes")
# What a lab can need: its services, and what the lab cluster must do for it: "pods" (its
# Pods run: kubectl logs/exec, rollouts that finish), "services" (Services route traffic and
# cluster DNS answers), "helm" (the helm CLI in the lab image). A lab whose needs the
# platform does not meet yet is imported disabled, with the reason shown on its page.
NEEDS = (*SERVICES, "pods", "services", "helm")
MAX_KUBE_NODES = 5  # nodes of a lab cluster (runtime.sandbox.spec.SandboxSpec.kube_nodes)
CLUSTER_NEEDS = ("pods", "services", "helm")
AVAILABLE_NEEDS: frozenset[str] = frozenset({"docker", "kubernetes", "pods", "services", "helm"})
IMAGES = ("lab-base", "busybox")
MAX_FILE_BYTES = 256 * 1024
MAX_CHECK_TIMEOUT = 60

NEED_REASONS = {
    "docker": "This lab needs the per-sandbox Docker engine, which is not available on this platform yet.",
    "kubernetes": "This lab needs the per-student Kubernetes cluster, which is not available on this platform yet.",
    "pods": "This lab runs Pods, which the per-student clusters of this platform cannot start.",
    "services": "This lab sends traffic to Services, which the per-student clusters of this platform do not route.",
    "helm": "This lab needs the helm CLI, which the platform's lab image does not include yet.",
}

# Every check may carry these. ``title`` is the label the student sees
# (``name`` too, except in kube and rbac checks, where it names the object).
COMMON_CHECK_FIELDS = frozenset({"type", "title", "name", "hint", "timeout"})
# Problems a check type's own validation finds: (the field they are about, or None; message).
CheckProblems = Iterable[tuple[str | None, str]]


@dataclass(frozen=True)
class CheckType:
    """What content import knows of a check type: its fields (besides ``COMMON_CHECK_FIELDS``),
    the service it needs, and the type's own validation (what its grader would refuse, said at
    import instead)."""

    required: frozenset[str]
    optional: frozenset[str]
    service: str | None = None
    validate: Callable[[Mapping[str, Any]], CheckProblems] | None = None


# Filled by the app that grades checks (grader/checks: each type declares itself where it is
# implemented, through ``declare_check_type``): the one list of check types and their fields.
# courses sits below grader (the apps' order: courses/__init__.py), so it keeps the registry.
CHECK_TYPES: dict[str, CheckType] = {}


def declare_check_type(
    name: str,
    *,
    required: Iterable[str] = (),
    optional: Iterable[str] = (),
    service: str | None = None,
    validate: Callable[[Mapping[str, Any]], CheckProblems] | None = None,
) -> None:
    """Make check type ``name`` known to content import (and its fields the only ones allowed)."""
    CHECK_TYPES[name] = CheckType(frozenset(required), frozenset(optional), service, validate)


# --- errors -----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


class ContentError(Exception):
    """A course directory with problems; ``problems`` lists every one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class Problems:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[Problem] = []

    def add(self, path: Path, line: int | None, message: str) -> None:
        try:
            shown = path.relative_to(self.root.parent)
        except ValueError:
            shown = path
        self.items.append(Problem(shown, line, message))


# --- YAML with line numbers ----------------------------------------------------------


class LineDict(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


class LineList(list[Any]):
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[str(key)] = loader.construct_object(value_node, deep=True)
        result.key_lines[str(key)] = key_node.start_mark.line + 1
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(path: Path, problems: Problems) -> LineDict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(path, None, "file is missing")
        return None
    except UnicodeDecodeError as exc:
        problems.add(path, None, f"not UTF-8 text ({exc.reason})")
        return None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        problems.add(path, line, f"invalid YAML: {exc.problem}")
        return None
    if not isinstance(data, LineDict):
        problems.add(path, 1, "expected a mapping of keys to values at the top level")
        return None
    return data


def _line(data: Any, key: str) -> int:
    return data.key_lines.get(key, data.line) if isinstance(data, LineDict) else 0


# --- what a course is -----------------------------------------------------------------


@dataclass
class ExerciseDef:
    slug: str
    title: str
    checks: list[dict[str, Any]]
    hints: list[str]
    solution: str
    solution_after: int
    order: int


@dataclass
class StepDef:
    order: int
    title: str
    body: str
    exercises: list[ExerciseDef]


@dataclass
class LabDef:
    slug: str
    order: int
    title: str
    summary: str
    intro: str
    finish: str
    environment: dict[str, Any]
    needs: list[str]
    steps: list[StepDef]
    solution: str
    path: Path

    @property
    def enabled(self) -> bool:
        return all(need in AVAILABLE_NEEDS for need in self.needs)

    @property
    def disabled_reason(self) -> str:
        missing = [need for need in self.needs if need not in AVAILABLE_NEEDS]
        return " ".join(NEED_REASONS[need] for need in missing)

    @property
    def exercise_count(self) -> int:
        return sum(len(step.exercises) for step in self.steps)


@dataclass
class LessonDef:
    slug: str
    order: int
    title: str
    body: str


@dataclass
class ModuleDef:
    slug: str
    order: int
    title: str
    summary: str
    lessons: list[LessonDef] = field(default_factory=list)
    labs: list[LabDef] = field(default_factory=list)


@dataclass
class CourseDef:
    slug: str
    title: str
    summary: str
    path: Path
    modules: list[ModuleDef] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        labs = [lab for module in self.modules for lab in module.labs]
        return {
            "modules": len(self.modules),
            "lessons": sum(len(m.lessons) for m in self.modules),
            "labs": len(labs),
            "enabled_labs": sum(lab.enabled for lab in labs),
            "exercises": sum(lab.exercise_count for lab in labs),
            "per_module": [
                {"slug": m.slug, "labs": len(m.labs), "exercises": sum(lab.exercise_count for lab in m.labs)}
                for m in self.modules
            ],
        }


# --- reading ------------------------------------------------------------------------


def _ordered_dirs(parent: Path, problems: Problems) -> list[tuple[int, str, Path]]:
    found: list[tuple[int, str, Path]] = []
    if not parent.is_dir():
        return found
    for child in sorted(parent.iterdir()):
        if child.name.startswith(".") or not child.is_dir() or child.name == "assets":
            continue
        match = SLUG_DIR.match(child.name)
        if not match:
            problems.add(
                child, None, "directory name must be NN-slug (two digits, a dash, lowercase words with dashes)"
            )
            continue
        found.append((int(match["order"]), match["slug"], child))
    return found


def _markdown_file(path: Path, problems: Problems) -> tuple[str, str]:
    """(title, body) of a Markdown file with optional front matter."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(path, None, "file is missing")
        return "", ""
    except UnicodeDecodeError as exc:
        problems.add(path, None, f"not UTF-8 text ({exc.reason})")
        return "", ""
    title = ""
    match = FRONT_MATTER.match(text)
    if match:
        try:
            meta = yaml.load(match.group(1), Loader=_Loader)  # noqa: S506
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 2 if exc.problem_mark else 1
            problems.add(path, line, f"invalid front matter: {exc.problem}")
            meta = None
        if meta is not None and not isinstance(meta, dict):
            problems.add(path, 2, "front matter must be a mapping (title: ...)")
        elif meta:
            title = str(meta.get("title") or "")
        text = text[match.end() :]
    if not title:
        heading = re.search(r"^# (.+)$", text, re.MULTILINE)
        if heading:
            title = heading.group(1).strip()
            text = text[: heading.start()] + text[heading.end() :].lstrip("\n")
    if not title:
        problems.add(path, 1, "no title: add front matter (title: ...) or a '# heading'")
    return title, text.strip() + "\n"


def _text(data: LineDict, key: str, path: Path, problems: Problems, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            problems.add(path, data.line, f"'{key}' is required")
        return ""
    if not isinstance(value, str):
        problems.add(path, _line(data, key), f"'{key}' must be text, got {type(value).__name__}")
        return ""
    return value.strip()


def parse_size(value: Any) -> int | None:
    if isinstance(value, int) and value > 0:
        return value
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*", value, re.IGNORECASE)
    if not match:
        return None
    units = {
        "": 1,
        "K": 1000,
        "M": 1000**2,
        "G": 1000**3,
        "T": 1000**4,
        "KI": 1024,
        "MI": 1024**2,
        "GI": 1024**3,
        "TI": 1024**4,
    }
    unit = (match.group(2) or "").upper()
    # Like Docker and the runtime's CLI: 256M means MiB.
    if unit in {"K", "M", "G", "T"}:
        unit += "I"
    return int(float(match.group(1)) * units[unit])


def parse_duration(value: Any) -> int | None:
    if isinstance(value, int) and value > 0:
        return value
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", value)
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _environment(lab: LineDict, lab_dir: Path, path: Path, problems: Problems) -> dict[str, Any]:
    raw = lab.get("environment") or LineDict()
    if not isinstance(raw, dict):
        problems.add(path, _line(lab, "environment"), "'environment' must be a mapping")
        return {}
    env: dict[str, Any] = {}
    known = {"image", "memory", "pids", "cpus", "disk", "services", "env", "allow_outbound"}
    for key in raw:
        if key not in known:
            problems.add(
                path, _line(raw, key), f"unknown environment field '{key}' (known: {', '.join(sorted(known))})"
            )
    image = raw.get("image", "lab-base")
    if image not in IMAGES:
        problems.add(path, _line(raw, "image"), f"image must be one of {', '.join(IMAGES)}, got {image!r}")
    env["image"] = image
    for key in ("memory", "disk"):
        if key in raw:
            size = parse_size(raw[key])
            if size is None:
                problems.add(path, _line(raw, key), f"'{key}' must be a size such as 512M or 1G, got {raw[key]!r}")
            else:
                env[key] = size
    if "pids" in raw:
        if not isinstance(raw["pids"], int) or raw["pids"] < 16:
            problems.add(path, _line(raw, "pids"), "'pids' must be a whole number of at least 16")
        else:
            env["pids"] = raw["pids"]
    if "cpus" in raw:
        if not isinstance(raw["cpus"], int | float) or not 0 < raw["cpus"] <= 64:
            problems.add(path, _line(raw, "cpus"), "'cpus' must be a number between 0 and 64, such as 1 or 0.5")
        else:
            env["cpus"] = float(raw["cpus"])
    services = raw.get("services") or []
    if not isinstance(services, list) or any(s not in SERVICES for s in services):
        problems.add(path, _line(raw, "services"), f"'services' must be a list of {', '.join(SERVICES)}")
    else:
        env["services"] = list(services)
    variables = raw.get("env") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str | int | float) for v in variables.values()):
        problems.add(path, _line(raw, "env"), "'env' must map variable names to text values")
    else:
        bad = [k for k in variables if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k))]
        if bad:
            problems.add(path, _line(raw, "env"), f"invalid environment variable name(s): {', '.join(map(str, bad))}")
        env["env"] = {str(k): str(v) for k, v in variables.items()}
    outbound = raw.get("allow_outbound") or []
    if not isinstance(outbound, list):
        problems.add(path, _line(raw, "allow_outbound"), "'allow_outbound' must be a list of CIDRs")
    else:
        for cidr in outbound:
            try:
                ipaddress.ip_network(str(cidr), strict=False)
            except ValueError:
                problems.add(path, _line(raw, "allow_outbound"), f"not a CIDR: {cidr!r}")
        env["allow_outbound"] = [str(c) for c in outbound]
    setup = lab_dir / "setup.sh"
    if setup.exists():
        env["setup"] = setup.read_text(encoding="utf-8", errors="replace")
    files_dir = lab_dir / "files"
    if files_dir.is_dir():
        files: dict[str, str] = {}
        total = 0
        for file in sorted(files_dir.rglob("*")):
            if file.is_symlink():
                problems.add(file, None, "symlinks are not allowed in files/")
                continue
            if not file.is_file():
                continue
            total += file.stat().st_size
            if total > MAX_FILE_BYTES:
                problems.add(file, None, f"files/ holds more than {MAX_FILE_BYTES // 1024} KiB in total")
                break
            try:
                files[str(file.relative_to(files_dir))] = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                problems.add(file, None, "files/ must hold text files (UTF-8)")
        env["files"] = files
    if "time_limit" in lab:
        seconds = parse_duration(lab["time_limit"])
        if seconds is None:
            problems.add(
                path,
                _line(lab, "time_limit"),
                f"'time_limit' must be a duration such as 45m, got {lab['time_limit']!r}",
            )
        else:
            env["time_limit"] = seconds
    return env


def _check(
    check: Any, index: int, where: LineDict, path: Path, problems: Problems, services: list[str]
) -> dict[str, Any]:
    line = check.line if isinstance(check, LineDict) else where.line
    if not isinstance(check, dict):
        problems.add(path, line, f"check {index} must be a mapping with a 'type'")
        return {}
    kind = check.get("type")
    declared = CHECK_TYPES.get(kind) if isinstance(kind, str) else None
    if declared is None:
        problems.add(
            path,
            _line(check, "type"),
            f"check {index}: unknown type {kind!r} (known: {', '.join(sorted(CHECK_TYPES))})",
        )
        return {}
    required, optional = declared.required, declared.optional
    for name in sorted(required - set(check)):
        problems.add(path, line, f"check {index} ({kind}): '{name}' is required")
    for name in sorted(set(check) - required - optional - COMMON_CHECK_FIELDS):
        problems.add(path, _line(check, name), f"check {index} ({kind}): unknown field '{name}'")
    if "timeout" in check and (
        not isinstance(check["timeout"], int | float) or not 0 < check["timeout"] <= MAX_CHECK_TIMEOUT
    ):
        problems.add(
            path, _line(check, "timeout"), f"check {index}: 'timeout' must be 1 to {MAX_CHECK_TIMEOUT} seconds"
        )
    if declared.validate is not None:
        for key, message in declared.validate(check):
            problems.add(path, (_line(check, key) if key else None) or line, f"check {index}: {message}")
    for pattern_key in ("stdout_matches", "matches"):
        if pattern_key in check:
            try:
                re.compile(str(check[pattern_key]))
            except re.error as exc:
                problems.add(path, _line(check, pattern_key), f"check {index}: invalid regular expression: {exc}")
    service = declared.service
    if service and service not in services:
        problems.add(path, line, f"check {index} ({kind}) needs the {service} service: add it to environment.services")
    return json.loads(json.dumps(check))  # plain dicts and lists, no line bookkeeping


def _exercises(
    step: LineDict, lab_path: Path, problems: Problems, seen: dict[str, int], services: list[str]
) -> list[ExerciseDef]:
    raw = step.get("exercises") or []
    if not isinstance(raw, list):
        problems.add(lab_path, _line(step, "exercises"), "'exercises' must be a list")
        return []
    exercises = []
    for i, item in enumerate(raw, start=1):
        if not isinstance(item, LineDict):
            problems.add(lab_path, step.line, f"exercise {i} must be a mapping")
            continue
        slug = item.get("slug")
        if not isinstance(slug, str) or not SLUG.match(slug):
            problems.add(
                lab_path, _line(item, "slug") or item.line, "exercise 'slug' is required: lowercase words with dashes"
            )
            slug = f"exercise-{i}"
        elif slug in seen:
            problems.add(lab_path, _line(item, "slug"), f"exercise slug '{slug}' is already used on line {seen[slug]}")
        seen.setdefault(slug, _line(item, "slug"))
        title = _text(item, "title", lab_path, problems, required=True)
        checks_raw = item.get("checks")
        if not isinstance(checks_raw, list) or not checks_raw:
            problems.add(
                lab_path, _line(item, "checks") or item.line, f"exercise '{slug}' needs a non-empty list of checks"
            )
            checks_raw = []
        checks = [_check(c, n, item, lab_path, problems, services) for n, c in enumerate(checks_raw, start=1)]
        hints = item.get("hints") or []
        if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
            problems.add(lab_path, _line(item, "hints"), "'hints' must be a list of text")
            hints = []
        after = item.get("solution_after", 3)
        if not isinstance(after, int) or after < 0:
            problems.add(lab_path, _line(item, "solution_after"), "'solution_after' must be a whole number")
            after = 3
        exercises.append(
            ExerciseDef(
                slug=slug,
                title=title,
                checks=[c for c in checks if c],
                hints=[h.strip() for h in hints],
                solution=_text(item, "solution", lab_path, problems),
                solution_after=after,
                order=i,
            )
        )
    return exercises


def read_lab(lab_dir: Path, order: int, slug: str, problems: Problems) -> LabDef | None:
    path = lab_dir / "lab.yaml"
    data = load_yaml(path, problems)
    if data is None:
        return None
    known = {"title", "summary", "environment", "needs", "steps", "time_limit", "nodes"}
    for key in data:
        if key not in known:
            problems.add(path, _line(data, key), f"unknown field '{key}' (known: {', '.join(sorted(known))})")
    environment = _environment(data, lab_dir, path, problems)
    if "nodes" in data:
        # the lab cluster's nodes: a control plane and nodes - 1 workers (runtime/kube/apiserver/server.py)
        nodes = data["nodes"]
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_KUBE_NODES:
            problems.add(path, _line(data, "nodes"), f"'nodes' must be a whole number from 1 to {MAX_KUBE_NODES}")
        elif "kubernetes" not in environment.get("services", []):
            problems.add(
                path, _line(data, "nodes"), "'nodes' is the lab cluster's: add kubernetes to environment.services"
            )
        else:
            environment["kube_nodes"] = nodes
    needs = data.get("needs") or []
    if not isinstance(needs, list) or any(n not in NEEDS for n in needs):
        problems.add(path, _line(data, "needs"), f"'needs' must be a list of {', '.join(NEEDS)}")
        needs = []
    elif "kubernetes" not in environment.get("services", []):
        for need in (n for n in CLUSTER_NEEDS if n in needs):
            problems.add(
                path,
                _line(data, "needs"),
                f"'needs: [{need}]' needs the kubernetes service: add it to environment.services",
            )
    needs = sorted(set(needs) | set(environment.get("services", [])))
    steps_raw = data.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        problems.add(path, _line(data, "steps") or data.line, "'steps' must be a non-empty list")
        steps_raw = []
    steps: list[StepDef] = []
    seen: dict[str, int] = {}
    for i, step in enumerate(steps_raw, start=1):
        if not isinstance(step, LineDict) or not isinstance(step.get("file"), str):
            line = step.line if isinstance(step, LineDict) else data.line
            problems.add(path, line, f"step {i} needs 'file: steps/NN-name.md'")
            continue
        step_path = (lab_dir / step["file"]).resolve()
        if lab_dir.resolve() not in step_path.parents:
            problems.add(path, _line(step, "file"), f"step {i}: the file must be inside the lab directory")
            continue
        if not step_path.is_file():
            problems.add(path, _line(step, "file"), f"step {i}: {step['file']} does not exist")
            title, body = "", ""
        else:
            title, body = _markdown_file(step_path, problems)
        title = _text(step, "title", path, problems) or title
        steps.append(
            StepDef(
                order=i,
                title=title,
                body=body,
                exercises=_exercises(step, path, problems, seen, environment.get("services", [])),
            )
        )
    solution = lab_dir / "solution.sh"
    if not solution.is_file():
        problems.add(solution, None, "every lab needs a solution.sh that makes all its checks pass")
    intro = lab_dir / "intro.md"
    finish = lab_dir / "finish.md"
    return LabDef(
        slug=slug,
        order=order,
        title=_text(data, "title", path, problems, required=True),
        summary=_text(data, "summary", path, problems),
        intro=_markdown_file(intro, problems)[1] if intro.exists() else "",
        finish=_markdown_file(finish, problems)[1] if finish.exists() else "",
        environment=environment,
        needs=needs,
        steps=steps,
        solution=solution.read_text(encoding="utf-8", errors="replace") if solution.is_file() else "",
        path=lab_dir,
    )


def _lesson_file(file: Path, problems: Problems) -> LessonDef | None:
    match = SLUG_DIR.match(file.stem)
    if not match:
        problems.add(file, None, "lesson file name must be NN-slug.md")
        return None
    title, body = _markdown_file(file, problems)
    return LessonDef(slug=match["slug"], order=int(match["order"]), title=title, body=body)


def _refuse_links_and_special_files(root: Path, problems: Problems) -> None:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                problems.add(path, None, "symlinks are not allowed in course content (put the file itself there)")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                problems.add(path, None, "only regular files and directories are allowed in course content")


def read_course(root: Path) -> CourseDef:
    """Read and validate the course in ``root``; raise ContentError listing every problem."""
    root = root.resolve()
    problems = Problems(root)
    if not root.is_dir():
        raise ContentError([Problem(root, None, "not a directory")])
    # Nothing is read through a link: a course is plain files and directories, so a lesson
    # linked to /etc/shadow or var/secret_key can never be shown to students.
    _refuse_links_and_special_files(root, problems)
    if problems.items:
        raise ContentError(problems.items)
    meta = load_yaml(root / "course.yaml", problems) or LineDict()
    slug = meta.get("slug") or root.name
    if not isinstance(slug, str) or not SLUG.match(slug):
        problems.add(root / "course.yaml", _line(meta, "slug") if meta else None, f"invalid course slug {slug!r}")
    course = CourseDef(
        slug=str(slug),
        title=_text(meta, "title", root / "course.yaml", problems, required=bool(meta)) if meta else "",
        summary=_text(meta, "summary", root / "course.yaml", problems) if meta else "",
        path=root,
    )
    for order, module_slug, module_dir in _ordered_dirs(root, problems):
        module_meta = load_yaml(module_dir / "module.yaml", problems) or LineDict()
        module = ModuleDef(
            slug=module_slug,
            order=order,
            title=_text(module_meta, "title", module_dir / "module.yaml", problems, required=bool(module_meta))
            if module_meta
            else "",
            summary=_text(module_meta, "summary", module_dir / "module.yaml", problems) if module_meta else "",
        )
        lessons_dir = module_dir / "lessons"
        if lessons_dir.is_dir():
            for file in sorted(lessons_dir.glob("*.md")):
                lesson = _lesson_file(file, problems)
                if lesson:
                    module.lessons.append(lesson)
        for lab_order, lab_slug, lab_dir in _ordered_dirs(module_dir / "labs", problems):
            lab = read_lab(lab_dir, lab_order, lab_slug, problems)
            if lab:
                module.labs.append(lab)
        if not module.lessons and not module.labs:
            problems.add(module_dir, None, "a module needs at least one lesson or lab")
        course.modules.append(module)
    if not course.modules and not problems.items:
        problems.add(root, None, "no modules found (directories named NN-slug with a module.yaml)")
    if problems.items:
        raise ContentError(problems.items)
    return course
