"""Attacks on the live class view (issue #18): its page and the JSON its refresh polls.

Who may see a course's class: its instructors (and superusers). Students get 403 like every
instructor page; an instructor of another course gets exactly what an unknown course gets
(404, same body), the course slug in the URL being the only id and never trusted; a
conditional GET (``If-None-Match``) with an ETag seen by the course's own instructor gets no
304 for anyone else; and nothing of a student's check output reaches the view.

The view is refreshed by polling (no WebSocket route: ``WS_ROUTES`` in test_idor.py is
unchanged), so there is no socket to attack.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.security.conftest import World, client_for

pytestmark = pytest.mark.django_db

NAMES = ["courses:instructor-live", "courses:instructor-live-json"]


def _without_csrf(body: bytes) -> bytes:
    """The page without its CSRF token (masked afresh on every response)."""
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", body)


def _url(name: str, slug: str) -> str:
    return reverse(name, kwargs={"course": slug})


@pytest.mark.parametrize("who", ["owner", "classmate", "outsider"])
@pytest.mark.parametrize("name", NAMES)
def test_students_get_403(world: World, who: str, name: str) -> None:
    response = client_for(world.user(who)).get(_url(name, world.course.slug))
    assert response.status_code == 403
    assert b"owner@example.com" not in response.content and b"make-a-pod" not in response.content


@pytest.mark.parametrize("name", NAMES)
def test_anonymous_is_sent_to_log_in(world: World, name: str) -> None:
    response = Client().get(_url(name, world.course.slug))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", NAMES)
def test_instructor_of_another_course_gets_what_an_unknown_course_gets(world: World, name: str) -> None:
    client = client_for(world.other_instructor)
    theirs = client.get(_url(name, world.course.slug))
    unknown = client.get(_url(name, "no-such-course"))
    assert theirs.status_code == unknown.status_code == 404
    # the same page but for the path it echoes
    same = _without_csrf(unknown.content).replace(b"no-such-course", world.course.slug.encode())
    assert _without_csrf(theirs.content) == same
    assert b"owner" not in theirs.content and b"make-a-pod" not in theirs.content
    # ... and their own course answers
    assert client.get(_url(name, "other-course")).status_code == 200


def test_a_stolen_etag_gives_no_304_to_another_instructor(world: World) -> None:
    url = _url("courses:instructor-live-json", world.course.slug)
    etag = client_for(world.instructor).get(url)["ETag"]
    response = client_for(world.other_instructor).get(url, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 404


@pytest.mark.parametrize("name", NAMES)
def test_the_courses_instructor_sees_the_class_but_no_check_output(world: World, name: str) -> None:
    from grader.models import ExerciseProgress

    ExerciseProgress.objects.filter(user=world.owner).update(failed_attempts=5)  # stuck: named
    response = client_for(world.instructor).get(_url(name, world.course.slug))
    assert response.status_code == 200
    assert b"owner" in response.content
    assert b"OWNER-PRIVATE-OUTPUT" not in response.content
    assert b"the secret solution" not in response.content


def test_hostile_names_are_escaped_in_page_and_json(world: World) -> None:
    from grader.models import ExerciseProgress

    world.owner.first_name = '<script>alert(1)</script><svg onload="x">'
    world.owner.save(update_fields=["first_name"])
    ExerciseProgress.objects.filter(user=world.owner).update(failed_attempts=5)
    client = client_for(world.instructor)
    page = client.get(_url("courses:instructor-live", world.course.slug))
    data = client.get(_url("courses:instructor-live-json", world.course.slug)).json()
    for html in (page.content.decode(), data["html"]):
        assert "<script>alert(1)" not in html and "<svg onload" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("slug", ["secure-course%2F..%2Fother-course", "..", "SECURE-COURSE", "secure-course%00"])
def test_course_slugs_are_data(world: World, slug: Any) -> None:
    response = client_for(world.instructor).get(f"/instructor/courses/{slug}/live.json")
    assert response.status_code == 404


def test_an_archived_course_is_not_shown(world: World) -> None:
    from django.utils import timezone

    world.course.archived_at = timezone.now()
    world.course.save(update_fields=["archived_at"])
    assert client_for(world.instructor).get(_url("courses:instructor-live", world.course.slug)).status_code == 404


@pytest.mark.parametrize("name", NAMES)
def test_posts_are_refused(world: World, name: str) -> None:
    response = client_for(world.instructor).post(_url(name, world.course.slug))
    assert response.status_code == 405
