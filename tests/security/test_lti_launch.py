"""Attacks on the LTI launch: every forged, stale, replayed or misdirected launch is refused
with a clear page and signs nobody in; a learner never becomes an instructor.

The id_tokens are real JWTs from the test LMS (tests/lti/platform.py), altered the way an
attacker could: another key, another audience, another issuer, old, replayed, unknown deployment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from accounts.roles import INSTRUCTOR, STUDENT, roles_of
from lti.models import LtiContext, LtiIdentity, Platform
from tests.lti.platform import INSTRUCTOR as INSTRUCTOR_ROLES
from tests.lti.platform import (
    LEARNER,
    LMS,
    SmallCourse,
    id_token_and_state,
    launch,
    register,
    rsa_key,
    running_lms,
    small_course,
    start,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def lms(db: None) -> Iterator[LMS]:
    with running_lms() as started:
        yield started


@pytest.fixture
def course(db: None) -> SmallCourse:
    return small_course()


LIS = "http://purl.imsglobal.org/vocab/lis/v2/"


def _refused(response: Any, client: Client, why: str) -> None:
    assert response.status_code in (400, 403), response.status_code
    text = response.content.decode()
    assert "data-lti-error" in text and why in text, text[-1500:]
    assert "_auth_user_id" not in client.session


def test_a_token_signed_with_another_key_is_refused(lms: Any) -> None:
    other_pem, _ = rsa_key()
    client = Client()
    response = launch(client, lms, lms.claims(sub="evil", roles=LEARNER), key=other_pem)
    _refused(response, client, "Signature verification failed")
    assert not LtiIdentity.objects.exists()


def test_a_token_for_another_tool_is_refused(lms: Any) -> None:
    client = Client()
    # Registered issuer, but the token was meant for another client id.
    response = launch(client, lms, lms.claims(sub="a", roles=LEARNER, aud="some-other-tool"))
    _refused(response, client, "Registration not found")
    # Several audiences with ours among them, but issued for (azp) someone else.
    client = Client()
    response = launch(client, lms, lms.claims(sub="a", roles=LEARNER, aud=[lms.client_id, "x"], azp="x"))
    _refused(response, client, "Registration not found")  # the tool it is for is "x"
    # Several audiences, ours not first, and azp naming us: that one is fine.
    ok = launch(Client(), lms, lms.claims(sub="b", roles=LEARNER, aud=["x", lms.client_id], azp=lms.client_id))
    assert ok.status_code == 302
    # Several audiences and no azp at all.
    client = Client()
    response = launch(client, lms, lms.claims(sub="a", roles=LEARNER, aud=[lms.client_id, "x"]))
    _refused(response, client, "azp")
    assert list(LtiIdentity.objects.values_list("sub", flat=True)) == ["b"]


def test_an_expired_token_is_refused(lms: Any) -> None:
    client = Client()
    old = int(time.time()) - 3600
    response = launch(client, lms, lms.claims(sub="late", roles=LEARNER, iat=old, exp=old + 300))
    _refused(response, client, "expired")


def test_a_token_without_expiry_is_refused(lms: Any) -> None:
    client = Client()
    response = launch(client, lms, lms.claims(sub="forever", roles=LEARNER), drop=("exp",))
    _refused(response, client, "exp")


def test_a_replayed_launch_is_refused(lms: Any, course: Any) -> None:
    client = Client()
    posted = id_token_and_state(client, lms, lms.claims(sub="s", roles=LEARNER))
    first = client.post("/lti/launch/", posted)
    assert first.status_code == 302
    # The same id_token again, in the same browser (cookies and all): refused, and it signs nobody in.
    client.cookies.pop("sessionid")
    again = client.post("/lti/launch/", posted)
    _refused(again, client, "already used")
    # ... and from another browser, which never started that login.
    stranger = Client()
    _refused(stranger.post("/lti/launch/", posted), stranger, "refused")


def test_an_unknown_deployment_is_refused(lms: Any) -> None:
    client = Client()
    claims = lms.claims(sub="d", roles=LEARNER)
    claims["https://purl.imsglobal.org/spec/lti/claim/deployment_id"] = "deployment-nobody-registered"
    _refused(launch(client, lms, claims), client, "Unable to find deployment")


def test_an_unregistered_issuer_is_refused_at_login_and_launch(lms: Any) -> None:
    client = Client()
    login = client.post("/lti/login/", {"iss": "https://evil.example", "login_hint": "x", "client_id": lms.client_id})
    _refused(login, client, "registration")
    # A token claiming another issuer, signed by the registered LMS: no such registration.
    response = launch(client, lms, lms.claims(sub="x", roles=LEARNER, iss="https://evil.example"))
    _refused(response, client, "Registration not found")


def test_an_inactive_registration_logs_nobody_in(lms: Any) -> None:
    Platform.objects.update(active=False)
    client = Client()
    login = client.post("/lti/login/", {"iss": lms.issuer, "login_hint": "x", "client_id": lms.client_id})
    _refused(login, client, "registration")


def test_a_launch_without_state_or_with_another_browsers_state_is_refused(lms: Any) -> None:
    victim, attacker = Client(), Client()
    posted = id_token_and_state(attacker, lms, lms.claims(sub="attacker", roles=LEARNER))
    # Login CSRF: the attacker makes the victim's browser post the attacker's launch.
    _refused(victim.post("/lti/launch/", posted), victim, "refused")
    # No state at all, in the browser that did start the login.
    _refused(attacker.post("/lti/launch/", {"id_token": posted["id_token"]}), attacker, "state")
    # The right state cookie name with a forged value.
    forged = {**posted, "state": "state-" + "0" * 36}
    _refused(attacker.post("/lti/launch/", forged), attacker, "State not found")
    assert not LtiIdentity.objects.exists()
    # No id_token: a clear page, not a crash.
    _refused(Client().post("/lti/launch/", {}), Client(), "no id_token")


@pytest.mark.parametrize(
    "roles, custom",
    [
        (LEARNER, {"role": "Instructor", "roles": INSTRUCTOR_ROLES[0]}),
        ([LIS + "institution/person#Instructor", LIS + "membership#Learner"], {}),
        (["http://evil.example/vocab/lis/v2/membership#Instructor"], {}),
        ([LIS + "membership#Learner#Instructor", LIS + "membership#Instructor "], {}),
        (["urn:lti:role:ims/lis/Learner/Instructor"], {}),
        ("http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor", {}),  # a string, not a list
        ([LIS + "membership#Mentor"], {}),
    ],
)
def test_a_learner_never_becomes_an_instructor(lms: Any, course: Any, roles: Any, custom: dict[str, str]) -> None:
    client = Client()
    claims = lms.claims(sub="sneaky", roles=roles, target=course.lab_target)
    if custom:
        claims["https://purl.imsglobal.org/spec/lti/claim/custom"] = {"target": course.lab_target, **custom}
    response = launch(client, lms, claims)
    assert response.status_code == 302 and response["Location"] == f"/labs/{course.lab.pk}/"
    user = LtiIdentity.objects.get(sub="sneaky").user
    assert roles_of(user) == {STUDENT} and not user.is_staff and not user.is_superuser
    assert client.get("/instructor/").status_code == 403


def test_an_instructor_role_from_the_lms_is_taken_back_by_a_learner_launch(lms: Any, course: Any) -> None:
    launch(Client(), lms, lms.claims(sub="ta", roles=INSTRUCTOR_ROLES, target="course:k8s"))
    assert INSTRUCTOR in roles_of(LtiIdentity.objects.get(sub="ta").user)
    client = Client()
    launch(client, lms, lms.claims(sub="ta", roles=LEARNER, context="other-course", target="course:k8s"))
    assert INSTRUCTOR not in roles_of(LtiIdentity.objects.get(sub="ta").user)
    assert client.get("/instructor/").status_code == 403


def test_a_learner_cannot_deep_link_or_answer_a_deep_link(lms: Any, course: Any) -> None:
    client = Client()
    response = launch(client, lms, lms.claims(sub="s", roles=LEARNER, message="LtiDeepLinkingRequest"))
    assert response.status_code == 403 and b"Only an instructor" in response.content
    assert "_auth_user_id" not in client.session and not LtiIdentity.objects.exists()
    # Signed in by an ordinary launch, the learner posts a deep-linking answer of their own making.
    launch(client, lms, lms.claims(sub="s", roles=LEARNER))
    forged = client.post("/lti/deep-link/", {"launch_id": "lti1p3-launch-whatever", "target": "course:k8s"})
    assert forged.status_code == 400 and b"belongs to no deep-linking launch" in forged.content


def test_issuer_a_cannot_sign_in_users_of_issuer_b(lms: Any, course: Any) -> None:
    lms_b, server_b = start("/b")
    try:
        register(lms_b)
        lms_b.tool_jwks = lms.tool_jwks
        # The same sub on both platforms: two people, never one account.
        launch(Client(), lms, lms.claims(sub="u-1", roles=INSTRUCTOR_ROLES))
        launch(Client(), lms_b, lms_b.claims(sub="u-1", roles=LEARNER))
        a = LtiIdentity.objects.get(issuer=lms.issuer, sub="u-1").user
        b = LtiIdentity.objects.get(issuer=lms_b.issuer, sub="u-1").user
        assert a != b and INSTRUCTOR in roles_of(a) and INSTRUCTOR not in roles_of(b)
        # A's key signing a token that claims B's issuer: B's key set does not vouch for it.
        client = Client()
        forged = lms.claims(sub="u-1", roles=INSTRUCTOR_ROLES, iss=lms_b.issuer)
        _refused(launch(client, lms, forged), client, "Unable to find public key")
        # A login started with A, finished by a token from B (validly signed by B, with A's nonce).
        client = Client()
        started = client.post("/lti/login/", {"iss": lms.issuer, "login_hint": "h", "client_id": lms.client_id})
        query = dict(part.split("=", 1) for part in started["Location"].split("?", 1)[1].split("&"))
        now = int(time.time())
        token = lms_b.sign(
            {**lms_b.claims(sub="u-1", roles=INSTRUCTOR_ROLES), "nonce": query["nonce"], "iat": now, "exp": now + 60}
        )
        crossed = client.post("/lti/launch/", {"id_token": token, "state": query["state"]})
        _refused(crossed, client, "another registration")
        assert roles_of(b) == {STUDENT}
        assert LtiContext.objects.filter(platform__issuer=lms_b.issuer).count() == 1
    finally:
        server_b.shutdown()
        server_b.server_close()


def test_a_deep_link_return_address_that_is_not_http_is_refused(lms: Any, course: Any) -> None:
    client = Client()
    claims = lms.claims(sub="t", roles=INSTRUCTOR_ROLES, message="LtiDeepLinkingRequest")
    claims["https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"]["deep_link_return_url"] = (
        "javascript:alert(document.cookie)"
    )
    picker = launch(client, lms, claims)
    launch_id = picker.content.decode().split('name="launch_id" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/lti/deep-link/", {"launch_id": launch_id, "target": "course:k8s"})
    assert answer.status_code == 400 and b"javascript:" not in answer.content


def test_a_local_account_named_like_an_lti_user_never_becomes_that_user(lms: Any, course: Any) -> None:
    from lti.services import _username
    from tests.factories import StudentFactory

    squatter = StudentFactory.create(username=_username(lms.issuer, "victim"), email="victim@lms.example")
    client = Client()
    response = launch(client, lms, lms.claims(sub="victim", roles=LEARNER))
    assert response.status_code == 302
    victim = LtiIdentity.objects.get(issuer=lms.issuer, sub="victim").user
    assert victim != squatter and int(client.session["_auth_user_id"]) == victim.pk
    # Nor does a local account with the LMS user's email: accounts are never linked by email.
    assert victim.email == squatter.email


def test_only_the_lms_courses_own_instructors_may_import_its_roster(lms: Any, course: Any) -> None:
    from tests.factories import InstructorFactory

    teacher, other_teacher = Client(), Client()
    launch(teacher, lms, lms.claims(sub="t-a", roles=INSTRUCTOR_ROLES, context="course-a"))
    launch(other_teacher, lms, lms.claims(sub="t-b", roles=INSTRUCTOR_ROLES, context="course-b"))
    course_a = LtiContext.objects.get(context_id="course-a")
    lms.members = [{"user_id": "s-1", "roles": LEARNER, "status": "Active"}]
    # An instructor of another LMS course, a site instructor who never launched, and a learner of
    # this very course: the same answer as for an id that does not exist.
    local = Client()
    local.force_login(InstructorFactory.create())
    learner = Client()
    launch(learner, lms, lms.claims(sub="s-2", roles=LEARNER, context="course-a"))
    for outsider in (other_teacher, local, learner):
        assert outsider.post(f"/lti/classes/{course_a.pk}/roster/").status_code == 404
        assert outsider.post("/lti/classes/999999/roster/").status_code == 404
    assert not LtiIdentity.objects.filter(sub="s-1").exists()
    listed = other_teacher.get("/lti/classes/").content.decode()
    assert "course-b" in listed.lower() and "course-a" not in listed.lower()
    assert Client().post(f"/lti/classes/{course_a.pk}/roster/").status_code == 302  # to the login page
    assert teacher.post(f"/lti/classes/{course_a.pk}/roster/").status_code == 302
    assert LtiIdentity.objects.filter(sub="s-1").exists()
