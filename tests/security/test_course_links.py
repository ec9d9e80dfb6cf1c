"""Course content is read from plain files only: a lesson, a lab's setup or solution, or a
YAML file that is a symlink (to /etc/shadow, to the platform's secret key) is refused with
the file named, and nothing it points at is read into a page."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from courses.content import ContentError, read_course

BUNDLED = Path(__file__).resolve().parents[2] / "content" / "intro-to-kubernetes"


@pytest.fixture
def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    shutil.copytree(BUNDLED, root)
    assert read_course(root).modules  # the copy is a valid course to start with
    return root


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.glob(pattern))[0]


@pytest.mark.parametrize(
    "victim",
    [
        "*/lessons/*.md",
        "*/module.yaml",
        "*/labs/*/lab.yaml",
        "*/labs/*/solution.sh",
        "*/labs/*/intro.md",
        "course.yaml",
    ],
)
def test_a_linked_file_is_refused_and_never_read(course: Path, tmp_path: Path, victim: str) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("# Leak\nTOP-SECRET-KEY-MATERIAL\n")
    target = _first(course, victim)
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(ContentError) as refused:
        read_course(course)
    text = str(refused.value)
    assert str(target.relative_to(course.parent)) in text and "symlinks are not allowed" in text
    assert "TOP-SECRET" not in text


def test_a_linked_directory_and_a_fifo_are_refused(course: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (_first(course, "*/lessons")).joinpath("zz-linked").symlink_to(outside, target_is_directory=True)
    os.mkfifo(_first(course, "*/lessons") / "99-pipe.md")
    with pytest.raises(ContentError) as refused:
        read_course(course)  # returns at once: a FIFO is never opened
    text = str(refused.value)
    assert "zz-linked" in text and "99-pipe.md" in text and "only regular files" in text
