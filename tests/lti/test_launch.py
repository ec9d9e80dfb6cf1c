"""A real launch from the test LMS: OIDC login, signed id_token, the user and where they land."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.roles import INSTRUCTOR, STUDENT, roles_of
from labs.selectors import teaches
from lti.models import LtiContext, LtiIdentity, LtiMembership
from tests.lti.platform import INSTRUCTOR as INSTRUCTOR_ROLES
from tests.lti.platform import LEARNER, launch

pytestmark = pytest.mark.django_db


def _user(lms: Any, sub: str) -> Any:
    return LtiIdentity.objects.select_related("user").get(issuer=lms.issuer, sub=sub).user


def test_a_learner_launched_to_a_lab_lands_in_it_as_a_student(lms: Any, course: Any) -> None:
    client = Client()
    response = launch(client, lms, lms.claims(sub="stu-1", roles=LEARNER, target=course.lab_target))
    assert response.status_code == 302
    assert response["Location"] == f"/labs/{course.lab.pk}/"
    page = client.get(response["Location"])
    assert page.status_code == 200 and course.lab.title in page.content.decode()
    user = _user(lms, "stu-1")
    assert roles_of(user) == {STUDENT}
    assert (user.first_name, user.last_name, user.email) == ("Given stu-1", "Family stu-1", "stu-1@lms.example")
    assert not user.has_usable_password() and not user.is_staff and not user.is_superuser
    context = LtiContext.objects.get(context_id="course-101")
    assert context.course == course.course and context.lineitems_url == f"{lms.base}/lineitems"
    assert LtiMembership.objects.get(context=context, user=user).role == STUDENT


def test_an_instructor_launch_lands_on_the_class_view(lms: Any, course: Any) -> None:
    client = Client()
    response = launch(client, lms, lms.claims(sub="teach-1", roles=INSTRUCTOR_ROLES, target=course.lab_target))
    assert response.status_code == 302
    assert response["Location"] == f"/instructor/?course=k8s&module={course.module.pk}"
    assert client.get(response["Location"]).status_code == 200
    assert INSTRUCTOR in roles_of(_user(lms, "teach-1"))


def test_a_placement_remembers_what_it_opens(lms: Any, course: Any) -> None:
    client = Client()
    launch(client, lms, lms.claims(sub="stu-2", roles=LEARNER, link="l-9", target=f"module:k8s/{course.module.slug}"))
    # The LMS sends the custom parameter on every launch, but a later launch without it still lands there.
    again = launch(Client(), lms, lms.claims(sub="stu-3", roles=LEARNER, link="l-9"))
    assert again["Location"] == f"/courses/k8s/{course.module.slug}/"


def test_a_launch_without_a_target_lands_on_the_course_of_its_lms_course(lms: Any, course: Any) -> None:
    launch(Client(), lms, lms.claims(sub="stu-4", roles=LEARNER, target="course:k8s"))
    response = launch(Client(), lms, lms.claims(sub="stu-5", roles=LEARNER, link="other"))
    assert response["Location"] == "/courses/k8s/"
    nowhere = launch(Client(), lms, lms.claims(sub="stu-6", roles=LEARNER, context="elsewhere", link="x"))
    assert nowhere["Location"] == "/"


def test_names_and_email_follow_the_lms(lms: Any, course: Any) -> None:
    launch(Client(), lms, lms.claims(sub="stu-7", roles=LEARNER))
    launch(Client(), lms, lms.claims(sub="stu-7", roles=LEARNER, given_name="Ada", email="ada@lms.example"))
    user = _user(lms, "stu-7")
    assert (user.first_name, user.email) == ("Ada", "ada@lms.example")
    assert LtiIdentity.objects.filter(sub="stu-7").count() == 1


def test_an_lms_instructor_joins_a_course_that_lists_its_instructors(lms: Any, course: Any) -> None:
    from tests.factories import InstructorFactory

    course.course.instructors.add(InstructorFactory.create())
    client = Client()
    response = launch(client, lms, lms.claims(sub="teach-2", roles=INSTRUCTOR_ROLES, target="course:k8s"))
    assert client.get(response["Location"]).status_code == 200
    assert course.course.instructors.filter(pk=_user(lms, "teach-2").pk).exists()
    # A course open to the site's own instructors stays open to them when a launch lists an LMS one.
    other = type(course.course).objects.create(slug="open", title="Open")
    launch(Client(), lms, lms.claims(sub="teach-3", roles=INSTRUCTOR_ROLES, context="c2", target="course:open"))
    assert list(other.instructors.all()) == [_user(lms, "teach-3")]
    assert teaches(InstructorFactory.create(), other)


def test_the_platforms_key_set_is_cached_and_fetched_again_when_it_rotates(lms: Any, course: Any) -> None:
    for n in range(3):
        assert launch(Client(), lms, lms.claims(sub=f"c-{n}", roles=LEARNER)).status_code == 302
    assert lms.jwks_fetches == 1
    lms.rotate_key()
    assert launch(Client(), lms, lms.claims(sub="c-after", roles=LEARNER)).status_code == 302
    assert lms.jwks_fetches == 2
