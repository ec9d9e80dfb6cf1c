"""Every enabled lab of the bundled course is provably solvable.

Each lab runs twice in a real sandbox of its own environment, through the
real grader's checks: on a fresh sandbox no exercise passes and every check
fails except guard rails (an ``rbac`` check with ``allowed: false`` holds before
any work: it is there to fail a solution that grants too much, and a ``connectivity`` check
that expects ``open``, there to fail a policy that blocks too much); after the lab's
solution.sh every check passes. A lab whose solution does not pass fails CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from courses.content import LabDef, read_course
from grader.checks import run_checks
from grader.checks.base import Target
from runtime.client import Client

BASE = Path(__file__).resolve().parents[2]
COURSE = BASE / "content" / "intro-to-kubernetes"
SPEC_KEYS = (
    "image",
    "memory",
    "pids",
    "cpus",
    "disk",
    "env",
    "files",
    "setup",
    "services",
    "allow_outbound",
    "kube_nodes",
)


def enabled_labs() -> list[LabDef]:
    if not COURSE.exists():
        return []
    return [lab for module in read_course(COURSE).modules for lab in module.labs if lab.enabled]


def is_guard_rail(check: dict) -> bool:
    """Checks that hold before any work and are there to fail a solution that does too much:
    an access that must stay denied, a connection that a NetworkPolicy must not block."""
    if check["type"] == "connectivity":
        return check.get("expect") == "open"
    return check["type"] == "rbac" and check.get("allowed") is False


def describe(results: dict) -> str:
    return "\n".join(f"  {t['status']:>7}  {t['name']}: {t['output'][:300]}" for t in results["tests"])


@pytest.mark.slow
@pytest.mark.parametrize("lab", enabled_labs(), ids=lambda lab: f"{lab.path.parent.parent.name}/{lab.slug}")
def test_fresh_sandbox_fails_every_check_and_the_solution_passes_them_all(runtimed: str, lab: LabDef) -> None:
    spec = {key: lab.environment[key] for key in SPEC_KEYS if key in lab.environment}
    spec["labels"] = {"test": "lab-solutions"}
    with Client(runtimed, timeout=60) as rt:
        images = {image["name"] for image in rt.images()}
        if spec.get("image", "lab-base") not in images:
            pytest.fail(
                f"the {spec.get('image')} image is missing in the test runtimed: run `make test`, which builds it"
            )
        sandbox = rt.create_sandbox(spec)
        sid = str(sandbox["id"])
        try:
            docker_url = "unix://" + rt.docker_socket(sid) if "docker" in spec.get("services", ()) else None
            kubeconfig = rt.kubeconfig(sid) if "kubernetes" in spec.get("services", ()) else None
            target = Target(sandbox_id=sid, runtime_socket=runtimed, docker_url=docker_url, kubeconfig=kubeconfig)
            exercises = [ex for step in lab.steps for ex in step.exercises]
            for exercise in exercises:
                fresh = run_checks(target, exercise.checks)
                assert not fresh["passed"], f"{exercise.slug}: passes before any work:\n{describe(fresh)}"
                early = [
                    outcome["name"]
                    for check, outcome in zip(exercise.checks, fresh["tests"], strict=True)
                    if outcome["status"] == "passed" and not is_guard_rail(check)
                ]
                assert not early, f"{exercise.slug}: {early} pass before any work:\n{describe(fresh)}"
            solved = rt.exec(sid, ["bash", "-c", lab.solution], timeout=300, cwd="/root")
            assert solved.exit_code == 0, (
                f"solution.sh failed ({solved.exit_code}):\n{solved.stdout_text[-2000:]}\n{solved.stderr_text[-2000:]}"
            )
            for exercise in exercises:
                after = run_checks(target, exercise.checks)
                assert after["passed"], f"{exercise.slug}: the solution does not pass:\n{describe(after)}"
        finally:
            rt.remove_sandbox(sid)


def test_the_bundled_course_has_enabled_labs_to_prove() -> None:
    assert len(enabled_labs()) >= 5
    assert any("docker" in lab.needs for lab in enabled_labs()), "the Docker-build lab is proved too"
    assert any("kubernetes" in lab.needs for lab in enabled_labs()), "labs on the lab cluster are proved too"
