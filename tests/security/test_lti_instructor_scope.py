"""An instructor made by an LMS launch teaches the LMS course they launched from, nothing else.

Before, `lti/services.py` gave every LMS instructor the site-wide instructor role and
`labs.selectors.teaches` let any instructor teach a course that lists none: a teacher of any
course in any registered LMS saw every student's progress, e-mail and terminal on the site.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labs.selectors import teaches
from lti.models import LtiIdentity
from tests.factories import InstructorFactory
from tests.lti.platform import INSTRUCTOR, LEARNER, LMS, SmallCourse, launch, running_lms, small_course

pytestmark = pytest.mark.django_db


@pytest.fixture
def lms(db: None) -> Iterator[LMS]:
    with running_lms() as started:
        yield started


@pytest.fixture
def course(db: None) -> SmallCourse:
    return small_course()


def _user(lms: Any, sub: str) -> Any:
    return LtiIdentity.objects.select_related("user").get(issuer=lms.issuer, sub=sub).user


def test_an_lms_instructor_does_not_teach_a_course_they_did_not_launch_into(lms: Any, course: Any) -> None:
    other = type(course.course).objects.create(slug="other", title="Other course")
    client = Client()
    launch(client, lms, lms.claims(sub="teach-a", roles=INSTRUCTOR, target="course:k8s"))
    teacher = _user(lms, "teach-a")
    assert teaches(teacher, course.course)
    assert not teaches(teacher, other)
    # Nor through the pages that show a class: the dashboard, its CSV and the live class view.
    for url in (
        reverse("courses:instructor") + "?course=other",
        reverse("courses:instructor-live", args=["other"]),
        reverse("courses:instructor-live-json", args=["other"]),
    ):
        assert client.get(url).status_code in (403, 404), url


def test_an_lms_instructor_of_another_lms_course_does_not_teach_this_one(lms: Any, course: Any) -> None:
    launch(Client(), lms, lms.claims(sub="teach-b", roles=INSTRUCTOR, context="elsewhere", target="course:k8s"))
    elsewhere = type(course.course).objects.create(slug="third", title="Third")
    launch(Client(), lms, lms.claims(sub="teach-c", roles=INSTRUCTOR, context="c3", target="course:third"))
    assert not teaches(_user(lms, "teach-c"), course.course)
    assert teaches(_user(lms, "teach-c"), elsewhere)


def test_a_learner_launch_takes_back_what_an_instructor_launch_gave(lms: Any, course: Any) -> None:
    launch(Client(), lms, lms.claims(sub="flip", roles=INSTRUCTOR, target="course:k8s"))
    assert teaches(_user(lms, "flip"), course.course)
    launch(Client(), lms, lms.claims(sub="flip", roles=LEARNER, target="course:k8s"))
    assert not teaches(_user(lms, "flip"), course.course)


def test_the_sites_own_instructors_keep_an_unlisted_course(lms: Any, course: Any) -> None:
    local = InstructorFactory.create()
    assert teaches(local, course.course)
    launch(Client(), lms, lms.claims(sub="teach-d", roles=INSTRUCTOR, target="course:k8s"))
    # An LMS instructor is now listed on the course; the site's own instructors still teach it...
    assert teaches(local, course.course)
    # ...until the course lists one of the site's own instructors, who then teach it alone with the LMS one.
    listed = InstructorFactory.create()
    course.course.instructors.add(listed)
    assert teaches(listed, course.course) and teaches(_user(lms, "teach-d"), course.course)
    assert not teaches(local, course.course)


def test_an_lms_instructor_sees_only_their_lms_courses_students(lms: Any, course: Any) -> None:
    """The class view, the progress table and its CSV listed every student of the site:
    an LMS instructor saw the names and e-mail addresses of people their LMS never
    vouched for (issue #18)."""
    from datetime import timedelta

    from django.utils import timezone

    from labs.models import LabSession
    from tests.factories import StudentFactory

    teacher = Client()
    launch(teacher, lms, lms.claims(sub="teach-e", roles=INSTRUCTOR, context="mine", target="course:k8s"))
    launch(Client(), lms, lms.claims(sub="pupil-e", roles=LEARNER, context="mine", target="course:k8s"))
    launch(Client(), lms, lms.claims(sub="other-e", roles=LEARNER, context="theirs", target="course:k8s"))
    site = StudentFactory.create(username="site-student", email="site-student@school.example")
    now = timezone.now()
    LabSession.objects.create(user=site, lab=course.lab, created_at=now, expires_at=now + timedelta(hours=1))
    pupil = _user(lms, "pupil-e")
    pages = {
        "table": teacher.get(reverse("courses:instructor") + "?course=k8s"),
        "csv": teacher.get(reverse("courses:instructor-csv") + "?course=k8s"),
        "live": teacher.get(reverse("courses:instructor-live", args=["k8s"])),
        "json": teacher.get(reverse("courses:instructor-live-json", args=["k8s"])),
    }
    for name, answer in pages.items():
        assert answer.status_code == 200, name
        body = answer.content.decode()
        if name != "json":  # the JSON names only who is stuck or in a lab; its count is below
            assert "Given pupil-e" in body or pupil.username in body, name
        assert "site-student" not in body and "other-e" not in body, name
    assert pages["json"].json()["students"] == 1
