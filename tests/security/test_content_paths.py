"""Paths built from content and requests: a Killercoda scenario naming files
outside itself, and asset URLs trying to leave a course's assets/.

Every attack is refused and reads nothing: the secret planted next to the
course (or the scenario) never shows up in a response, a lab, or an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from courses.content import ContentError
from courses.killercoda import read_scenario
from tests.factories import CourseFactory

SECRET = "TOP-SECRET-OUTSIDE-THE-COURSE"

# --- Killercoda scenarios -------------------------------------------------------------------------


def _scenario(tmp_path: Path, details: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    """A scenario directory with a valid step, plus ``details`` merged in;
    ``secret.txt`` sits next to it, outside."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "secret.txt").write_text(SECRET)
    scenario = tmp_path / "scenario"
    (scenario / "assets").mkdir(parents=True)
    (scenario / "step1.md").write_text("Do it.\n")
    for name, text in (files or {}).items():
        (scenario / name).parent.mkdir(parents=True, exist_ok=True)
        (scenario / name).write_text(text)
    meta = {"title": "Attack", "details": {"steps": [{"title": "One", "text": "step1.md"}], **details}}
    (scenario / "index.json").write_text(json.dumps(meta))
    return scenario


def _refused(scenario: Path) -> str:
    with pytest.raises(ContentError) as caught:
        read_scenario(scenario)
    message = str(caught.value)
    assert SECRET not in message
    assert "root:x:0:0" not in message
    return message


TRAVERSING_NAMES = [
    "../secret.txt",
    "../../../../../../etc/passwd",
    "/etc/passwd",
    "step1.md/../../secret.txt",
    "./../secret.txt",
    "..\\secret.txt",  # a backslash is a file-name character on Linux: no such file
    "%2e%2e/secret.txt",  # not decoded: no such file
    "step1.md\x00../secret.txt",
]


@pytest.mark.parametrize("name", TRAVERSING_NAMES)
@pytest.mark.parametrize("field", ["text", "verify", "background"])
def test_scenario_step_files_cannot_leave_the_directory(tmp_path: Path, field: str, name: str) -> None:
    scenario = _scenario(tmp_path, {"steps": [{"title": "One", "text": "step1.md", field: name}]})
    _refused(scenario)


@pytest.mark.parametrize("name", TRAVERSING_NAMES)
def test_scenario_intro_and_finish_cannot_leave_the_directory(tmp_path: Path, name: str) -> None:
    _refused(_scenario(tmp_path, {"intro": {"text": name}}))
    _refused(_scenario(tmp_path / "b", {"finish": {"text": name}}))
    _refused(_scenario(tmp_path / "c", {"intro": {"background": name}}))


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "../../secret.txt", "../index.json/../../secret.txt", "/etc/passwd"]
)
def test_scenario_asset_names_cannot_leave_assets(tmp_path: Path, name: str) -> None:
    scenario = _scenario(tmp_path, {"assets": {"host01": [{"file": name, "target": "~"}]}})
    _refused(scenario)


def test_planted_symlinks_are_not_followed_out(tmp_path: Path) -> None:
    scenario = _scenario(
        tmp_path,
        {
            "intro": {"text": "intro.md", "background": "bg.sh"},
            "steps": [{"title": "One", "text": "step1.md", "verify": "verify.sh"}],
            "assets": {"host01": [{"file": "passwd", "target": "~"}, {"file": "dir/secret.txt"}]},
        },
    )
    (scenario / "intro.md").symlink_to(tmp_path / "secret.txt")
    (scenario / "bg.sh").symlink_to("/etc/passwd")
    (scenario / "verify.sh").symlink_to("../secret.txt")
    (scenario / "assets" / "passwd").symlink_to("/etc/passwd")
    (scenario / "assets" / "dir").symlink_to(tmp_path)
    message = _refused(scenario)
    for name in ("intro.md", "bg.sh", "verify.sh", "assets/passwd", "assets/dir/secret.txt"):
        assert name in message, name


def test_planted_index_json_link_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "other.json"
    outside.write_text(json.dumps({"title": SECRET, "details": {"steps": [{"text": "x"}]}}))
    scenario = tmp_path / "scenario"
    scenario.mkdir()
    (scenario / "index.json").symlink_to(outside)
    _refused(scenario)


def test_assets_directory_linked_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text(SECRET)
    scenario = tmp_path / "scenario"
    scenario.mkdir()
    (scenario / "step1.md").write_text("Do it.\n")
    (scenario / "assets").symlink_to(tmp_path)
    meta = {
        "title": "Attack",
        "details": {
            "steps": [{"title": "One", "text": "step1.md"}],
            "assets": {"host01": [{"file": "secret.txt", "target": "~"}]},
        },
    }
    (scenario / "index.json").write_text(json.dumps(meta))
    _refused(scenario)


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    scenario = _scenario(
        tmp_path,
        {
            "intro": {"text": "fifo"},
            "steps": [{"title": "One", "text": "step1.md", "verify": "assets"}],
        },
    )
    os.mkfifo(scenario / "fifo")  # reading it would wait for a writer forever
    message = _refused(scenario)
    assert "not a regular file" in message


@pytest.mark.parametrize(
    "target", ["/root/../../etc", "~/../../etc", "../etc", "relative/dir", "/tmp/x\n rm -rf /", "~/a/../../.."]
)
def test_asset_targets_cannot_leave_where_they_point(tmp_path: Path, target: str) -> None:
    scenario = _scenario(
        tmp_path, {"assets": {"host01": [{"file": "app.yaml", "target": target}]}}, {"assets/app.yaml": "kind: Pod\n"}
    )
    message = _refused(scenario)
    assert "target" in message


def test_well_formed_assets_still_import(tmp_path: Path) -> None:
    """The refusals above are about the paths: sane names import as before."""
    scenario = _scenario(
        tmp_path,
        {
            "assets": {
                "host01": [
                    {"file": "app.yaml", "target": "~"},
                    {"file": "sub/conf.yaml", "target": "~/conf"},
                    {"file": "tool.sh", "target": "/usr/local/bin", "chmod": "+x"},
                ]
            }
        },
        {"assets/app.yaml": "kind: Pod\n", "assets/sub/conf.yaml": "a: 1\n", "assets/tool.sh": "echo hi\n"},
    )
    lab = read_scenario(scenario)
    assert lab.environment["files"] == {"app.yaml": "kind: Pod\n", "conf/conf.yaml": "a: 1\n"}
    assert "/usr/local/bin/tool.sh" in lab.environment["setup"]


@pytest.mark.parametrize(
    "details",
    [
        {"intro": "intro.md"},
        {"assets": ["app.yaml"]},
        {"assets": {"host01": "app.yaml"}},
        {"assets": {"host01": ["app.yaml"]}},
        {"assets": {"host01": [{"file": 7}]}},
        {"steps": [{"title": "One", "text": ["step1.md"]}]},
    ],
)
def test_malformed_index_is_a_content_error_not_a_crash(tmp_path: Path, details: dict[str, Any]) -> None:
    _refused(_scenario(tmp_path, details))


# --- course assets over HTTP ----------------------------------------------------------------------


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    (tmp_path / "secret.txt").write_text(SECRET)
    course = tmp_path / "course"
    (course / "assets" / "img").mkdir(parents=True)
    (course / "assets" / "img" / "ok.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (course / "assets" / "page.html").write_text("<script>alert(document.cookie)</script>")
    (course / "assets" / "evil.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>")
    (course / "course.yaml").write_text("slug: c\n")
    (course / "assets" / "link.png").symlink_to(tmp_path / "secret.txt")
    (course / "assets" / "passwd").symlink_to("/etc/passwd")
    (course / "assets" / "up").symlink_to(tmp_path)
    (course / "assets" / "inside.png").symlink_to("img/ok.png")  # a link within assets/ is fine
    os.mkfifo(course / "assets" / "fifo")
    return course


@pytest.fixture
def asset_client(db: None, course_dir: Path) -> tuple[Client, str]:
    course = CourseFactory.create(source=str(course_dir))
    return Client(), f"/courses/{course.slug}/assets/"


ATTACKS = [
    "../secret.txt",
    "..%2fsecret.txt",
    "..%2Fsecret.txt",
    "%2e%2e/secret.txt",
    "%2e%2e%2fsecret.txt",
    ".%2e/secret.txt",
    "img/../../secret.txt",
    "img/%2e%2e/%2e%2e/secret.txt",
    "..%5csecret.txt",
    "..\\secret.txt",
    "%252e%252e%252fsecret.txt",  # double-encoded: decoded once, it names no file
    "..%252fsecret.txt",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "//etc/passwd",
    "img/ok.png%00../../secret.txt",
    "img/ok.png%00",
    "%00",
    "link.png",
    "passwd",
    "up/secret.txt",
    "up/course/assets/img/ok.png/../../../../secret.txt",
    "fifo",
    "img",
    "img/",
    "",
    "%c0%ae%c0%ae/secret.txt",  # overlong UTF-8 dots
    "..%c0%afsecret.txt",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_asset_urls_cannot_leave_assets(asset_client: tuple[Client, str], attack: str) -> None:
    client, base = asset_client
    response = client.get(base + attack)
    assert response.status_code == 404, attack
    body = response.getvalue()
    assert SECRET.encode() not in body
    assert b"root:x:0:0" not in body


def test_assets_directory_linked_out_of_the_course_is_refused(db: None, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text(SECRET)
    course_root = tmp_path / "course"
    course_root.mkdir()
    (course_root / "assets").symlink_to(tmp_path)
    course = CourseFactory.create(source=str(course_root))
    response = Client().get(f"/courses/{course.slug}/assets/secret.txt")
    assert response.status_code == 404


def test_assets_are_served_inline_only_when_harmless(asset_client: tuple[Client, str]) -> None:
    client, base = asset_client
    png = client.get(base + "img/ok.png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert png.getvalue() == b"\x89PNG\r\n\x1a\n"
    assert client.get(base + "inside.png").status_code == 200
    html = client.get(base + "page.html")
    assert html.status_code == 200
    assert html["Content-Disposition"].startswith("attachment")
    for response in (png, html, client.get(base + "evil.svg")):
        policy = response["Content-Security-Policy"]
        assert "sandbox" in policy and "default-src 'none'" in policy
        assert response["X-Content-Type-Options"] == "nosniff"
