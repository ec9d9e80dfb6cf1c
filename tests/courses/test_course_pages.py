from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from courses.models import Lesson
from tests.factories import PASSWORD, LabFactory, ModuleFactory, StudentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def student_client(client: Client) -> Client:
    student = StudentFactory.create()
    assert client.login(username=student.username, password=PASSWORD)
    return client


def test_home_lists_imported_courses_and_course_page_lists_modules(student_client: Client) -> None:
    module = ModuleFactory.create(title="Basics of Docker")
    lab = LabFactory.create(module=module, title="Namespaces by hand")
    LabFactory.create(module=module, title="Archived lab", archived_at="2026-01-01T00:00:00Z")
    Lesson.objects.create(module=module, slug="layers", title="Layers", body="# x")
    home = student_client.get("/")
    assert module.course.title in home.content.decode()
    page = student_client.get(f"/courses/{module.course.slug}/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "Basics of Docker" in text and "Namespaces by hand" in text and "Layers" in text
    assert "Archived lab" not in text
    assert f"/labs/{lab.pk}/" in text


def test_lesson_page_renders_sanitised_markdown_with_a_toc(student_client: Client) -> None:
    module = ModuleFactory.create()
    Lesson.objects.create(
        module=module,
        slug="intro",
        title="Intro",
        order=1,
        body="## First part\n\nHello <script>alert(1)</script>\n\n[x](javascript:alert(2))\n\n```bash run\nls\n```\n",
    )
    Lesson.objects.create(module=module, slug="next", title="Next one", order=2, body="Text")
    page = student_client.get(f"/courses/{module.course.slug}/{module.slug}/intro/")
    text = page.content.decode()
    assert page.status_code == 200
    assert '<h2 id="first-part">First part</h2>' in text
    assert '<a href="#first-part">First part</a>' in text
    assert "<script>alert(1)" not in text
    assert "&lt;script&gt;alert(1)" in text  # shown as text, never run
    assert 'href="javascript:' not in text
    assert 'data-runnable="true"' in text
    assert "Next one" in text


def test_unknown_course_is_404(student_client: Client) -> None:
    assert student_client.get("/courses/nope/").status_code == 404


def test_assets_are_served_from_the_course_only(student_client: Client, tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "layers.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "secret.txt").write_text("not for you")
    module = ModuleFactory.create(course__source=str(tmp_path))
    slug = module.course.slug
    ok = student_client.get(f"/courses/{slug}/assets/layers.svg")
    assert ok.status_code == 200 and ok["Content-Type"] == "image/svg+xml"
    assert "sandbox" in ok["Content-Security-Policy"]
    assert student_client.get(f"/courses/{slug}/assets/../secret.txt").status_code == 404
    assert student_client.get(f"/courses/{slug}/assets/%2e%2e/secret.txt").status_code == 404
