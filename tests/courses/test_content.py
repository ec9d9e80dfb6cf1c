"""Courses as files: validation errors name the file and line; import is idempotent and keeps progress."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from courses import content
from courses.content import ContentError, read_course
from courses.importer import import_course
from courses.killercoda import read_scenario
from courses.models import Course, Exercise, Lab, Lesson
from courses.rendering import render_markdown

BASE = Path(__file__).resolve().parents[2]
BUNDLED = BASE / "content" / "intro-to-kubernetes"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


LAB_YAML = """
title: Namespaces by hand
environment:
  image: busybox
  memory: 128M
steps:
  - file: steps/01-hostname.md
    exercises:
      - slug: hostname
        title: Record the hostname
        checks:
          - type: run
            name: hostname.txt exists
            command: test -s /root/hostname.txt
            hint: Write it with `hostname > /root/hostname.txt`.
        hints: [Try the hostname command.]
        solution: "`hostname > /root/hostname.txt`"
  - file: steps/02-more.md
    exercises:
      - slug: greeting
        title: Greet
        checks:
          - {type: file, path: /root/greeting.txt, contains: hello}
"""


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    return write(
        tmp_path / "demo-course",
        {
            "course.yaml": "title: Demo course\nsummary: A course for the tests.\n",
            "01-first/module.yaml": "title: First module\nsummary: Where it starts.\n",
            "01-first/lessons/01-hello.md": "---\ntitle: Hello\n---\nSome *text* and ![a picture](assets/x.svg).\n",
            "01-first/lessons/02-plain.md": "# Plain heading\n\nBody.\n",
            "01-first/labs/01-ns/lab.yaml": LAB_YAML,
            "01-first/labs/01-ns/steps/01-hostname.md": "# Hostname\n\n```sh run\nhostname\n```\n",
            "01-first/labs/01-ns/steps/02-more.md": "# More\n\nText.\n",
            "01-first/labs/01-ns/solution.sh": "hostname > /root/hostname.txt\necho hello > /root/greeting.txt\n",
            "01-first/labs/01-ns/files/notes.txt": "read me\n",
            "02-cluster/module.yaml": "title: Cluster\n",
            "02-cluster/labs/01-deploy/lab.yaml": """
                title: Deploy an app
                environment: {services: [kubernetes]}
                needs: [kubernetes, pods, helm]
                steps:
                  - file: steps/01-deploy.md
                    exercises:
                      - slug: deployed
                        title: Deploy it
                        checks:
                          - {type: kube, kind: Deployment, name: web}
            """,
            "02-cluster/labs/01-deploy/steps/01-deploy.md": "# Deploy\n",
            "02-cluster/labs/01-deploy/solution.sh": "kubectl create deployment web --image=nginx\n",
        },
    )


def test_a_valid_course_reads_with_its_structure(course_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a platform without helm in its lab image, to see the gate at work (lab-base has helm)
    monkeypatch.setattr("courses.content.AVAILABLE_NEEDS", content.AVAILABLE_NEEDS - {"helm"})
    course = read_course(course_dir)
    assert course.slug == "demo-course"
    assert [m.slug for m in course.modules] == ["first", "cluster"]
    lab = course.modules[0].labs[0]
    assert lab.environment["memory"] == 128 * 2**20
    assert lab.environment["files"] == {"notes.txt": "read me\n"}
    assert [s.title for s in lab.steps] == ["Hostname", "More"]
    assert lab.enabled
    cluster_lab = course.modules[1].labs[0]
    assert cluster_lab.needs == ["helm", "kubernetes", "pods"]
    assert not cluster_lab.enabled and cluster_lab.disabled_reason == (
        "This lab needs the helm CLI, which the platform's lab image does not include yet."
    )
    assert course.stats() == {
        "modules": 2,
        "lessons": 2,
        "labs": 2,
        "enabled_labs": 1,
        "exercises": 3,
        "per_module": [{"slug": "first", "labs": 1, "exercises": 2}, {"slug": "cluster", "labs": 1, "exercises": 1}],
    }


PLANTED = [
    # (file, text to find, replacement, expected line, words in the message)
    ("01-first/labs/01-ns/lab.yaml", "memory: 128M", "memory: lots", 4, "'memory' must be a size"),
    ("01-first/labs/01-ns/lab.yaml", "type: run", "type: telepathy", 11, "unknown type 'telepathy'"),
    ("01-first/labs/01-ns/lab.yaml", "- slug: greeting", "- slug: hostname", 19, "already used on line 8"),
    ("01-first/labs/01-ns/lab.yaml", "path: /root/greeting.txt", "path: greeting.txt", 22, "'path' must be absolute"),
    ("02-cluster/labs/01-deploy/lab.yaml", "title: Deploy an app\n", "title: [unclosed\n", 2, "invalid YAML"),
]


def test_needs_are_known_and_pods_come_with_the_cluster(course_dir: Path) -> None:
    plant(course_dir, "02-cluster/labs/01-deploy/lab.yaml", "services: [kubernetes]", "services: [docker]")
    with pytest.raises(ContentError) as caught:
        read_course(course_dir)
    lab = "demo-course/02-cluster/labs/01-deploy/lab.yaml"
    assert f"{lab}:3: 'needs: [pods]' needs the kubernetes service" in str(caught.value)
    assert f"{lab}:3: 'needs: [helm]' needs the kubernetes service" in str(caught.value)
    plant(
        course_dir, "02-cluster/labs/01-deploy/lab.yaml", "needs: [kubernetes, pods, helm]", "needs: [kubernetes, gpus]"
    )
    with pytest.raises(ContentError) as caught:
        read_course(course_dir)
    assert f"{lab}:3: 'needs' must be a list of docker, kubernetes, pods, services, helm" in str(caught.value)


def test_a_lab_declares_its_cluster_nodes_and_bad_counts_name_the_line(course_dir: Path) -> None:
    lab = "02-cluster/labs/01-deploy/lab.yaml"
    plant(course_dir, lab, "needs: [kubernetes, pods, helm]\n", "needs: [kubernetes, pods, helm]\nnodes: 3\n")
    course = read_course(course_dir)
    cluster_lab = course.modules[1].labs[0]
    assert cluster_lab.environment["kube_nodes"] == 3
    assert "kube_nodes" not in course.modules[0].labs[0].environment  # default: one node
    for bad in ("9", "0", "two", "true"):
        plant(course_dir, lab, "nodes: 3", f"nodes: {bad}")
        with pytest.raises(ContentError) as caught:
            read_course(course_dir)
        assert f"demo-course/{lab}:4: 'nodes' must be a whole number from 1 to 5" in str(caught.value)
        plant(course_dir, lab, f"nodes: {bad}", "nodes: 3")
    plant(
        course_dir,
        "01-first/labs/01-ns/lab.yaml",
        "title: Namespaces by hand\n",
        "title: Namespaces by hand\nnodes: 2\n",
    )
    with pytest.raises(ContentError) as caught:
        read_course(course_dir)
    where = "demo-course/01-first/labs/01-ns/lab.yaml:2"
    assert f"{where}: 'nodes' is the lab cluster's: add kubernetes to environment.services" in str(caught.value)


@pytest.mark.django_db
def test_the_node_count_reaches_the_sandbox_spec(course_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("courses.content.AVAILABLE_NEEDS", content.AVAILABLE_NEEDS - {"helm"})
    lab = "02-cluster/labs/01-deploy/lab.yaml"
    plant(course_dir, lab, "needs: [kubernetes, pods, helm]\n", "needs: [kubernetes, pods, helm]\nnodes: 3\n")
    import_course(read_course(course_dir))
    spec = Lab.objects.get(slug="deploy").sandbox_spec()
    assert spec["kube_nodes"] == 3 and spec["services"] == ["kubernetes"]
    from runtime.sandbox.spec import SandboxSpec

    assert SandboxSpec.from_json({k: v for k, v in spec.items() if k != "labels"}).kube_nodes == 3
    assert "kube_nodes" not in Lab.objects.get(slug="ns").sandbox_spec()


def plant(course_dir: Path, file: str, old: str, new: str) -> None:
    path = course_dir / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(("file", "old", "new", "line", "words"), PLANTED)
def test_each_planted_error_names_file_and_line(
    course_dir: Path, file: str, old: str, new: str, line: int, words: str
) -> None:
    plant(course_dir, file, old, new)
    with pytest.raises(ContentError) as caught:
        read_course(course_dir)
    messages = [str(p) for p in caught.value.problems]
    assert any(m.startswith(f"demo-course/{file}:{line}: ") and words in m for m in messages), messages


def test_every_error_is_reported_at_once(course_dir: Path) -> None:
    for file, old, new, _, _ in PLANTED:
        plant(course_dir, file, old, new)
    (course_dir / "01-first/labs/01-ns/solution.sh").unlink()
    with pytest.raises(ContentError) as caught:
        read_course(course_dir)
    text = str(caught.value)
    for _, _, _, _, words in PLANTED:
        assert words in text
    assert "solution.sh: every lab needs a solution.sh" in text


def test_validate_course_command_prints_problems_and_fails(
    course_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("validate_course", str(course_dir))
    assert "demo-course: OK" in capsys.readouterr().out
    plant(course_dir, *PLANTED[0][:3])
    with pytest.raises(CommandError, match="1 problem"):
        call_command("validate_course", str(course_dir))
    assert "lab.yaml:4: 'memory' must be a size" in capsys.readouterr().err


@pytest.mark.django_db
def test_import_is_idempotent_and_archives_instead_of_deleting(course_dir: Path) -> None:
    _, report = import_course(read_course(course_dir))
    assert report.created["exercises"] == 3
    exercise_ids = dict(Exercise.objects.values_list("slug", "pk"))
    _, again = import_course(read_course(course_dir))
    assert again.created == {} and again.updated == {} and again.archived == {}
    assert dict(Exercise.objects.values_list("slug", "pk")) == exercise_ids

    # Change a check's text, move an exercise, drop a lesson and an exercise.
    plant(course_dir, "01-first/labs/01-ns/lab.yaml", "test -s /root/hostname.txt", "grep -q . /root/hostname.txt")
    (course_dir / "01-first/lessons/02-plain.md").unlink()
    lab_yaml = course_dir / "01-first/labs/01-ns/lab.yaml"
    lab_yaml.write_text(lab_yaml.read_text().split("      - slug: greeting")[0])
    _, changed = import_course(read_course(course_dir))
    assert changed.archived == {"exercises": 1, "lessons": 1}
    hostname = Exercise.objects.get(slug="hostname")
    assert hostname.pk == exercise_ids["hostname"]
    assert hostname.checks[0]["command"] == "grep -q . /root/hostname.txt"
    greeting = Exercise.objects.get(slug="greeting")
    assert greeting.pk == exercise_ids["greeting"] and greeting.archived_at is not None
    assert Lesson.objects.get(slug="plain").archived_at is not None
    assert list(Exercise.objects.active().filter(lab__slug="ns").values_list("slug", flat=True)) == ["hostname"]


@pytest.mark.django_db
def test_import_rewrites_asset_links_and_stores_the_environment(
    course_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("courses.content.AVAILABLE_NEEDS", content.AVAILABLE_NEEDS - {"helm"})
    import_course(read_course(course_dir))
    lesson = Lesson.objects.get(slug="hello")
    assert "](/courses/demo-course/assets/x.svg)" in lesson.body
    lab = Lab.objects.get(slug="ns")
    spec = lab.sandbox_spec(labels={"session": "s"})
    assert spec["image"] == "busybox" and spec["files"] == {"notes.txt": "read me\n"}
    assert Lab.objects.get(slug="deploy").enabled is False


def test_killercoda_scenario_becomes_a_lab(tmp_path: Path) -> None:
    scenario = write(
        tmp_path / "my-scenario",
        {
            "intro.md": "Welcome!\n",
            "background.sh": "echo prepared > /tmp/bg\n",
            "step1/text.md": "Create a file:\n\n```\ntouch /root/done\n```{{exec}}\n\nOr `ls /root`{{copy}}.\n",
            "step1/verify.sh": "#!/bin/bash\n[[ -f /root/done ]]\n",
            "step2/text.md": "Read it.\n",
            "finish.md": "Well done.\n",
            "assets/app.yaml": "kind: Pod\n",
        },
    )
    (scenario / "index.json").write_text(
        json.dumps(
            {
                "title": "Files 101",
                "description": "Touch a file.",
                "details": {
                    "intro": {"text": "intro.md", "background": "background.sh"},
                    "steps": [
                        {"title": "Touch it", "text": "step1/text.md", "verify": "step1/verify.sh"},
                        {"title": "Read it", "text": "step2/text.md"},
                    ],
                    "finish": {"text": "finish.md"},
                    "assets": {"host01": [{"file": "app.yaml", "target": "~"}]},
                },
                "backend": {"imageid": "ubuntu"},
            }
        )
    )
    lab = read_scenario(scenario)
    assert lab.title == "Files 101" and [s.title for s in lab.steps] == ["Touch it", "Read it"]
    check = lab.steps[0].exercises[0].checks[0]
    assert check["type"] == "run" and check["command"].startswith("bash -c ") and "/root/done" in check["command"]
    assert lab.steps[1].exercises == []
    assert lab.environment["setup"].strip() == "echo prepared > /tmp/bg"
    assert lab.environment["files"] == {"app.yaml": "kind: Pod\n"}
    html = render_markdown(lab.steps[0].body)
    assert 'data-runnable="true"' in html and 'data-runnable="false"' in html


@pytest.mark.django_db
def test_killercoda_import_command_adds_the_lab_to_a_module(course_dir: Path, tmp_path: Path) -> None:
    import_course(read_course(course_dir))
    scenario = write(tmp_path / "kc", {"s1.md": "Do it.\n", "v1.sh": "true\n"})
    (scenario / "index.json").write_text(
        json.dumps({"title": "KC lab", "details": {"steps": [{"title": "One", "text": "s1.md", "verify": "v1.sh"}]}})
    )
    call_command("import_course", str(scenario), "--killercoda", "--into", "demo-course/first")
    lab = Lab.objects.get(module__slug="first", slug="kc")
    assert lab.exercises.count() == 1
    call_command("import_course", str(scenario), "--killercoda", "--into", "demo-course/first")
    assert Lab.objects.filter(slug="kc").count() == 1
    with pytest.raises(CommandError, match="no module"):
        call_command("import_course", str(scenario), "--killercoda", "--into", "demo-course/nope")


def test_broken_killercoda_index_names_the_file(tmp_path: Path) -> None:
    scenario = tmp_path / "bad"
    scenario.mkdir()
    (scenario / "index.json").write_text('{"title": "x",\n "details": }')
    with pytest.raises(ContentError) as caught:
        read_scenario(scenario)
    assert str(caught.value).startswith(f"{scenario / 'index.json'}:2: invalid JSON")


@pytest.mark.skipif(not BUNDLED.exists(), reason="the bundled course is not written yet")
def test_the_bundled_course_is_valid_and_big_enough() -> None:
    stats = read_course(BUNDLED).stats()
    assert stats["modules"] == 8
    assert stats["exercises"] >= 40
    assert all(module["labs"] >= 1 for module in stats["per_module"])
    assert stats["enabled_labs"] >= 4


@pytest.mark.skipif(not BUNDLED.exists(), reason="the bundled course is not written yet")
def test_planted_errors_in_a_copy_of_the_bundled_course_are_each_reported(tmp_path: Path) -> None:
    copy = tmp_path / "intro-to-kubernetes"
    shutil.copytree(BUNDLED, copy)
    labs = sorted(copy.glob("*/labs/*/lab.yaml"))
    lessons = sorted(copy.glob("*/lessons/*.md"))
    first, second = labs[0], labs[1]
    first.write_text(first.read_text() + "\nbogus_field: 1\n")
    bogus_line = len(first.read_text().splitlines())
    text = second.read_text()
    second.write_text(text.replace("type: run", "type: nonsense", 1) if "type: run" in text else text + "steps: 5\n")
    (lessons[0]).write_text("no title here, no heading\n")
    (labs[2].parent / "solution.sh").unlink()
    with pytest.raises(ContentError) as caught:
        read_course(copy)
    report = [str(p) for p in caught.value.problems]
    relative = lambda p: str(p.relative_to(tmp_path))  # noqa: E731
    assert any(r.startswith(f"{relative(first)}:{bogus_line}: unknown field 'bogus_field'") for r in report), report
    assert any(r.startswith(relative(second) + ":") for r in report), report
    assert any(r.startswith(f"{relative(lessons[0])}:1: no title") for r in report), report
    assert any(r.startswith(relative(labs[2].parent / "solution.sh")) for r in report), report


@pytest.mark.django_db
def test_course_stats_command_prints_one_json_object(course_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("course_stats", str(course_dir))
    stats = json.loads(capsys.readouterr().out)
    assert set(stats) == {"modules", "lessons", "labs", "enabled_labs", "exercises", "per_module"}
    assert Course.objects.count() == 0  # stats read files, they import nothing


def test_a_check_type_declared_by_the_grader_is_validated_from_that_declaration_alone(
    course_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One list of check types and their fields: the grader's ``register``. A new type is known
    to content import, with its required and optional fields, its service and its own
    validation, without a word of courses/content.py changed."""
    from grader.checks import base

    monkeypatch.setattr(base, "REGISTRY", dict(base.REGISTRY))
    monkeypatch.setattr(content, "CHECK_TYPES", dict(content.CHECK_TYPES))

    def shout_problems(spec: Mapping[str, Any]) -> list[tuple[str | None, str]]:
        return [] if str(spec.get("word", "")).isupper() else [("word", "'word' must be in capitals")]

    @base.register("shout", required={"word"}, optional={"times"}, service="docker", validate=shout_problems)
    def check_shout(spec: object, target: object, timeout: float) -> base.Outcome:
        return base.Outcome(True)

    assert set(content.CHECK_TYPES) == set(base.REGISTRY)  # the same list, whichever side reads it
    lab = "01-first/labs/01-ns/lab.yaml"
    greeting = "{type: file, path: /root/greeting.txt, contains: hello}"
    plant(course_dir, lab, greeting, "{type: shout, word: HI, times: 2}")
    with pytest.raises(ContentError) as caught:
        read_course(course_dir)  # the lab has no docker service: the declared service is asked for
    assert "check 1 (shout) needs the docker service" in str(caught.value)
    plant(course_dir, lab, "memory: 128M", "memory: 128M\n  services: [docker]")
    read_course(course_dir)  # declared fields, declared service: valid
    plant(course_dir, lab, "{type: shout, word: HI, times: 2}", "{type: shout, word: hi, loud: true}")
    with pytest.raises(ContentError) as caught:
        read_course(course_dir)
    problems = str(caught.value)
    assert "check 1 (shout): unknown field 'loud'" in problems
    assert "check 1: 'word' must be in capitals" in problems
    plant(course_dir, lab, "{type: shout, word: hi, loud: true}", "{type: shout, times: 2}")
    with pytest.raises(ContentError) as caught:
        read_course(course_dir)
    assert "check 1 (shout): 'word' is required" in str(caught.value)
