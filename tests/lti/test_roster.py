"""Names and Role Provisioning: an instructor imports the class roster from the LMS."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.roles import INSTRUCTOR, STUDENT, roles_of
from lti.models import LtiContext, LtiIdentity, LtiMembership
from tests.lti.platform import INSTRUCTOR as INSTRUCTOR_ROLES
from tests.lti.platform import LEARNER, launch

pytestmark = pytest.mark.django_db


def _member(sub: str, roles: list[str], status: str = "Active") -> dict[str, Any]:
    return {"user_id": sub, "roles": roles, "status": status, "name": f"N {sub}", "email": f"{sub}@lms.example"}


def test_the_roster_import_creates_links_and_enrols_the_class(lms: Any, course: Any) -> None:
    teacher = Client()
    launch(teacher, lms, lms.claims(sub="t-1", roles=INSTRUCTOR_ROLES, target="course:k8s"))
    launch(Client(), lms, lms.claims(sub="s-known", roles=LEARNER))
    lms.members = [
        _member("t-1", INSTRUCTOR_ROLES),
        _member("s-known", LEARNER),
        _member("s-new-1", LEARNER),
        _member("s-new-2", LEARNER),
        _member("ta-1", ["http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"]),
        _member("s-gone", LEARNER, status="Inactive"),
    ]
    context = LtiContext.objects.get(context_id="course-101")
    page = teacher.get("/lti/classes/")
    assert page.status_code == 200 and b"Import roster" in page.content
    answer = teacher.post(f"/lti/classes/{context.pk}/roster/", follow=True)
    assert b"5 enrolled (4 new accounts), 1 inactive" in answer.content
    # Two pages of members (Link: rel="next") were read.
    enrolled = {m.user.lti_identity.sub: m for m in LtiMembership.objects.filter(context=context)}
    assert set(enrolled) == {"t-1", "s-known", "s-new-1", "s-new-2", "ta-1", "s-gone"}
    assert enrolled["s-gone"].active is False
    new = LtiIdentity.objects.get(issuer=lms.issuer, sub="s-new-1").user
    assert roles_of(new) == {STUDENT} and new.first_name == "N s-new-1" and new.email == "s-new-1@lms.example"
    assert INSTRUCTOR in roles_of(LtiIdentity.objects.get(sub="ta-1").user)
    # The imported student later launches: the same account.
    launch(Client(), lms, lms.claims(sub="s-new-1", roles=LEARNER))
    assert LtiIdentity.objects.get(sub="s-new-1").user == new


def test_a_student_cannot_import_the_roster(lms: Any, course: Any) -> None:
    launch(Client(), lms, lms.claims(sub="t-1", roles=INSTRUCTOR_ROLES))
    student = Client()
    launch(student, lms, lms.claims(sub="s-1", roles=LEARNER))
    context = LtiContext.objects.get(context_id="course-101")
    assert student.post(f"/lti/classes/{context.pk}/roster/").status_code == 404
    assert student.get("/lti/classes/").status_code == 404
    assert LtiMembership.objects.filter(context=context).count() == 2
