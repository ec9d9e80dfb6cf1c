"""Stored XSS: whatever a student, an instructor or a course author can put in
a field comes back out of every page that shows it as text, never as markup
a browser would run.

Pages are parsed (html.parser), not searched for substrings: a page fails if
it holds a script that is not one of ours, an ``on*`` attribute, a
``javascript:``-like URL, a frame/object/embed/base, or a JSON island that no
longer parses (a ``</script>`` broke out of it).
"""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from courses.models import Lesson
from courses.rendering import render_markdown
from grader.models import ExerciseProgress
from tests.security.conftest import World, client_for

PAYLOADS = [
    '<script>alert("xss-script")</script>',
    '<img src=x onerror=alert("xss-img")>',
    '"><svg onload=alert("xss-svg")>',
    "'><iframe src=javascript:alert(1)></iframe>",
    '<a href="javascript:alert(2)">click</a>',
    '<a href="JaVaScRiPt&colon;alert(3)">click</a>',
    "[md-link](javascript:alert(4))",
    "[md-link2](  jav\tascript:alert(5))",
    "![md-img](javascript:alert(6))",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<details open ontoggle=alert(7)>x</details>",
    "</script><script>alert(8)</script>",
    '<form action="javascript:alert(9)"><button>go</button></form>',
    "<base href=//evil.example/>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(10)">',
    "<style>@import 'javascript:alert(11)';</style>",
    "`code`</code><script>alert(12)</script>",
    "```html\n</code></pre><script>alert(13)</script>\n```",
    '```bash" onmouseover="alert(14)\ncode\n```',
]
EVIL = "\n\n".join(PAYLOADS)
SHORT = '"><svg onload=alert(1)><script>alert(2)</script><img src=x onerror=alert(3)>'

URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "data", "srcdoc", "background", "poster", "cite"}
# (<svg> is allowed: the pages draw icons with it; its handlers and scripts are caught above.)
FORBIDDEN_TAGS = {"iframe", "frame", "frameset", "object", "embed", "base", "applet", "math", "style"}
BAD_SCHEME = re.compile(r"^(javascript|vbscript|data|livescript):", re.IGNORECASE)


class Scanner(HTMLParser):
    """Collects everything in a page a browser would run."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._json_island: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): value or "" for name, value in attrs}
        for name, value in values.items():
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name in URL_ATTRS:
                # Browsers ignore ASCII whitespace and control characters inside a scheme.
                squeezed = re.sub(r"[\x00-\x20\x7f]", "", value)
                if BAD_SCHEME.match(squeezed):
                    self.problems.append(f"<{tag} {name}={value!r}>")
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}>")
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            self.problems.append("<meta http-equiv=refresh>")
        if tag == "script":
            if values.get("type") == "application/json" and "src" not in values:
                self._json_island = []
            elif not values.get("src", "").startswith("/static/"):
                self.problems.append(f"<script {values}>")

    def handle_data(self, data: str) -> None:
        if self._json_island is not None:
            self._json_island.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._json_island is not None:
            try:
                json.loads("".join(self._json_island))
            except ValueError:
                self.problems.append("a JSON island that no longer parses")
            self._json_island = None


def executable_markup(html: str | bytes) -> list[str]:
    scanner = Scanner()
    scanner.feed(html.decode() if isinstance(html, bytes) else html)
    scanner.close()
    return scanner.problems


def test_the_scanner_catches_each_payload_unescaped() -> None:
    """The detector itself: every raw payload is flagged (so a pass below means something)."""
    for payload in PAYLOADS:
        if payload.startswith(("[", "!", "`", "```")):
            continue  # Markdown: only dangerous once rendered
        assert executable_markup(f"<p>{payload}</p>"), payload
    assert executable_markup('<a href="java\tscript:alert(1)">x</a>')


# --- Markdown rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_rendered_markdown_is_sanitised(payload: str) -> None:
    html = render_markdown(payload)
    assert executable_markup(html) == [], html


def test_rendered_markdown_keeps_what_authors_need() -> None:
    html = render_markdown(
        "## Title\n\n[docs](https://kubernetes.io) ![d](/courses/c/assets/x.png)\n\n```bash run\nls\n```"
    )
    assert '<h2 id="title">' in html
    assert 'href="https://kubernetes.io"' in html and 'src="/courses/c/assets/x.png"' in html
    assert 'data-runnable="true"' in html


# --- pages built from the fields ----------------------------------------------------------------------


@pytest.fixture
def poisoned(world: World) -> World:
    """Every free-text field set to attacks: content by an author, names by an admin."""
    w = world
    for user in (w.owner, w.classmate):
        user.first_name = SHORT
        user.last_name = SHORT
        user.save(update_fields=["first_name", "last_name"])
    # Usernames cannot hold markup through sign-up or the admin (validator), but
    # the templates must not rely on that.
    w.owner.username = SHORT[:150]
    w.owner.save(update_fields=["username"])
    w.course.title = SHORT
    w.course.summary = EVIL
    w.course.save(update_fields=["title", "summary"])
    module = w.lab.module
    module.title = SHORT
    module.summary = EVIL
    module.save(update_fields=["title", "summary"])
    w.lab.title = SHORT
    w.lab.intro = EVIL
    w.lab.finish = EVIL
    w.lab.save(update_fields=["title", "intro", "finish"])
    w.step.title = SHORT
    w.step.body = EVIL
    w.step.save(update_fields=["title", "body"])
    w.exercise.title = SHORT
    w.exercise.checks = [{"type": "run", "name": SHORT, "command": "true"}]
    w.exercise.hints = [EVIL, SHORT]
    w.exercise.solution = EVIL
    w.exercise.save(update_fields=["title", "checks", "hints", "solution"])
    ExerciseProgress.objects.filter(user=w.owner, exercise=w.exercise).update(hints_revealed=1, failed_attempts=2)
    w.submission.results = {
        "score": 0,
        "max_score": 1,
        "output": SHORT,
        "tests": [{"name": SHORT, "status": "failed", "output": EVIL, "hint": SHORT}],
    }
    w.submission.error = SHORT
    w.submission.save(update_fields=["results", "error"])
    Lesson.objects.create(module=module, slug="evil-lesson", title=SHORT, body=EVIL + "\n\n## " + SHORT, order=1)
    return w


def _pages(w: World) -> list[tuple[Any, str, dict[str, str]]]:
    module = w.lab.module
    return [
        (w.owner, reverse("courses:home"), {}),
        (w.owner, reverse("courses:course", kwargs={"course": w.course.slug}), {}),
        (w.owner, reverse("courses:module", kwargs={"course": w.course.slug, "module": module.slug}), {}),
        (
            w.owner,
            reverse("courses:lesson", kwargs={"course": w.course.slug, "module": module.slug, "lesson": "evil-lesson"}),
            {},
        ),
        (w.owner, reverse("courses:progress"), {}),
        (w.owner, reverse("labs:lab", kwargs={"lab_id": w.lab.pk}), {}),
        (w.owner, reverse("labs:session", kwargs={"session_id": w.session.pk}), {}),
        (w.instructor, reverse("labs:session", kwargs={"session_id": w.session.pk}), {}),
        (w.instructor, reverse("courses:instructor"), {"course": w.course.slug}),
        (w.instructor, reverse("courses:instructor"), {"course": w.course.slug, "q": SHORT}),
        (w.instructor, reverse("courses:instructor-student", kwargs={"user_id": w.owner.pk}), {}),
        (w.instructor, "/no-such-page/" + SHORT, {}),
    ]


@pytest.mark.django_db
def test_no_page_runs_what_a_field_holds(poisoned: World) -> None:
    for user, url, params in _pages(poisoned):
        response = client_for(user).get(url, params)
        assert response.status_code in (200, 404), (url, response.status_code)
        problems = executable_markup(response.content)
        assert problems == [], (url, problems)
        # The text is still there, shown as text (so the test looked at the right page).
        assert b"&lt;svg onload=alert(1)&gt;" in response.content or b"&lt;script&gt;" in response.content, url


@pytest.mark.django_db
def test_json_endpoints_carry_sanitised_html_and_plain_text(poisoned: World) -> None:
    w = poisoned
    client = client_for(w.owner)
    status = client.get(
        reverse("grader:submission", kwargs={"session_id": w.session.pk, "submission_id": w.submission.pk})
    )
    assert status["Content-Type"] == "application/json"
    # Check output is data the page inserts with textContent (static/js/lab-checks.js).
    assert status.json()["tests"][0]["output"] == EVIL
    hint = client.post(reverse("grader:hint", kwargs={"session_id": w.session.pk, "exercise_id": w.exercise.pk}))
    assert hint.status_code == 200 and hint["Content-Type"] == "application/json"
    for html in hint.json()["hints"]:
        assert executable_markup(html) == [], html
    solution = client.post(
        reverse("grader:solution", kwargs={"session_id": w.session.pk, "exercise_id": w.exercise.pk})
    )
    assert solution.status_code == 200
    assert executable_markup(solution.json()["solution"]) == []


@pytest.mark.django_db
def test_csv_export_cannot_carry_a_formula(world: World) -> None:
    world.owner.username = "=HYPERLINK(1)"
    world.owner.email = "+cmd@example.com"
    world.owner.save(update_fields=["username", "email"])
    response = client_for(world.instructor).get(reverse("courses:instructor-csv"), {"course": world.course.slug})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    owner_rows = [row for row in rows if "HYPERLINK" in row[0]]
    assert owner_rows
    for row in owner_rows:
        assert row[0].startswith("'=") and row[1].startswith("'+")


@pytest.mark.django_db
def test_signup_refuses_markup_in_a_username_and_shows_it_inert() -> None:
    response = Client().post(
        reverse("signup"),
        {"username": SHORT, "email": "x@example.com", "password1": "x-Secret-9876", "password2": "x-Secret-9876"},
    )
    assert response.status_code == 200  # the form again, with an error
    assert response.context["form"].errors.get("username")
    assert executable_markup(response.content) == []
