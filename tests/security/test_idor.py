"""IDOR battery: every URL and WebSocket route that takes an id, tried by the
owner's classmate, an outsider, an instructor of the course, an instructor of
another course, and nobody.

What is private here is a student's lab session (its page, terminals, events,
port previews, reset, stop, pause and resume), their submissions and their progress (check,
hint, solution), and the instructor's views of students. A refused caller
gets exactly what an unknown id gives — the same status and body — so the
answer does not even tell that the session exists.

``ROUTES`` lists every URL pattern of the project and ``WS_ROUTES`` every
WebSocket route; ``test_every_route_is_in_the_battery`` fails when a pattern
is added without being listed (and so without being attacked here).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from config.routing import websocket_urlpatterns
from grader.models import ExerciseProgress, Submission
from labs.models import LabSession, TerminalObservation
from tests.security.conftest import World, client_for, session_cookie, ws_outcome

# --- the inventory ---------------------------------------------------------------------------
#
# Every named URL pattern, by what protects it:
#   "session"     takes a lab session id (and maybe more ids): owner only, instructors of the
#                 course read-only; attacked below, one case per pattern in SESSION_CASES.
#   "instructor"  instructor pages: students and outsiders get 403; attacked below.
#   "content"     course content by slug or id, the same for every signed-in user; the page
#                 shows only the visitor's own sessions (checked below).
#   "own"         the visitor's own data, no id in the URL.
#   "account"     sign-up, log-in, password flows (Django's auth views; token-protected).
#   "public"      no data: health check.
#   "lti"         the LTI tool's endpoints (login, launch, deep linking, JWKS, LMS courses and
#                 their roster import by id): attacked in tests/security/test_lti_launch.py.
ROUTES: dict[str, str] = {
    "healthz": "public",
    "signup": "account",
    "login": "account",
    "logout": "account",
    "password_change": "account",
    "password_reset": "account",
    "password_reset_done": "account",
    "password_reset_confirm": "account",
    "password_reset_complete": "account",
    "labs:lab": "content",
    "labs:start": "content",
    "labs:session": "session",
    "labs:reset": "session",
    "labs:stop": "session",
    "labs:pause": "session",
    "labs:resume": "session",
    "labs:port": "session",
    "labs:port-path": "session",
    "labs:files": "session",
    "labs:file-content": "session",
    "labs:file-validate": "session",
    "grader:check": "session",
    "grader:hint": "session",
    "grader:solution": "session",
    "grader:submission": "session",
    "courses:home": "content",
    "courses:progress": "own",
    "courses:instructor": "instructor",
    "courses:instructor-csv": "instructor",
    "courses:instructor-student": "instructor",
    "courses:instructor-live": "instructor",  # attacked in test_class_view.py
    "courses:instructor-live-json": "instructor",
    "courses:instructor-message": "instructor",  # attacked in test_class_messages.py
    "courses:message-dismiss": "own",  # the recipient's own; attacked in test_class_messages.py
    "courses:course": "content",
    "courses:asset": "content",
    "courses:module": "content",
    "courses:lesson": "content",
    "lti:login": "lti",
    "lti:launch": "lti",
    "lti:jwks": "lti",
    "lti:deep-link": "lti",
    "lti:classes": "lti",
    "lti:roster-import": "lti",
}
WS_ROUTES = {
    "ws/whoami/": "own",
    "ws/labs/<str:session>/term/<int:n>/": "session",
    "ws/labs/<str:session>/events/": "session",
    "labs/<str:session>/port/<int:port>/": "session",
    "labs/<str:session>/port/<int:port>/<path:path>": "session",
    "": "public",  # the catch-all: refuses every path with 4404 (test_ws_unknown_path.py)
}


def _named_patterns(patterns: list[Any], namespace: str = "") -> set[str]:
    names: set[str] = set()
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue  # Django's admin: staff only, see test_admin_is_staff_only
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            names |= _named_patterns(entry.url_patterns, inner)
        elif isinstance(entry, URLPattern):
            names.add(f"{namespace}{entry.name}" if entry.name else f"<unnamed {entry.pattern}>")
    return names


def test_every_route_is_in_the_battery() -> None:
    routed = _named_patterns(get_resolver().url_patterns)
    assert routed - ROUTES.keys() == set(), "new URL patterns: list them in ROUTES and attack them here"
    assert ROUTES.keys() - routed == set(), "ROUTES lists patterns that no longer exist"
    ws = {str(route.pattern) for route in websocket_urlpatterns}
    assert ws == WS_ROUTES.keys(), "WebSocket routes changed: update WS_ROUTES and the cases below"
    covered = {case[0] for case in SESSION_CASES}
    wanted = {name for name, kind in ROUTES.items() if kind == "session"}
    assert covered == wanted, f"session routes without an attack case: {wanted - covered}"


# --- session-scoped HTTP routes ----------------------------------------------------------------
#
# (url name, method, kwargs builder, roles that may use it). Roles: owner, instructor
# (of the course; read-only). Everybody else must get the unknown-id answer.


def _session_kwargs(w: World, session_id: Any) -> dict[str, Any]:
    return {"session_id": session_id}


def _exercise_kwargs(w: World, session_id: Any) -> dict[str, Any]:
    return {"session_id": session_id, "exercise_id": w.exercise.pk}


def _submission_kwargs(w: World, session_id: Any) -> dict[str, Any]:
    return {"session_id": session_id, "submission_id": w.submission.pk}


def _port_kwargs(w: World, session_id: Any) -> dict[str, Any]:
    return {"session_id": session_id, "port": 8080}


def _port_path_kwargs(w: World, session_id: Any) -> dict[str, Any]:
    return {"session_id": session_id, "port": 8080, "path": "api/secret"}


SESSION_CASES = [
    ("labs:session", "get", _session_kwargs, {"owner", "instructor"}),
    ("labs:reset", "post", _session_kwargs, {"owner"}),
    ("labs:stop", "post", _session_kwargs, {"owner"}),
    ("labs:pause", "post", _session_kwargs, {"owner"}),
    ("labs:resume", "post", _session_kwargs, {"owner"}),
    ("labs:port", "get", _port_kwargs, {"owner", "instructor"}),
    ("labs:port-path", "get", _port_path_kwargs, {"owner", "instructor"}),
    ("labs:files", "get", _session_kwargs, {"owner", "instructor"}),
    ("labs:file-content", "get", _session_kwargs, {"owner", "instructor"}),
    ("labs:file-content", "post", _session_kwargs, {"owner"}),
    ("labs:file-validate", "post", _session_kwargs, {"owner"}),
    ("grader:check", "post", _exercise_kwargs, {"owner"}),
    ("grader:hint", "post", _exercise_kwargs, {"owner"}),
    ("grader:solution", "post", _exercise_kwargs, {"owner"}),
    ("grader:submission", "get", _submission_kwargs, {"owner", "instructor"}),
]
INTRUDERS = ["classmate", "outsider", "other_instructor", "anonymous"]


def _request(client: Client, method: str, url: str) -> Any:
    return client.get(url) if method == "get" else client.post(url)


def _fingerprint(w: World) -> dict[str, Any]:
    """Everything an intruder's request must leave unchanged."""
    w.session.refresh_from_db()
    return {
        "session": (w.session.status, w.session.end_reason, w.session.sandbox_id, w.session.terminals),
        "submissions": Submission.objects.filter(user=w.owner).count(),
        "progress": list(
            ExerciseProgress.objects.filter(user=w.owner).values_list(
                "hints_revealed", "solution_shown", "attempts", "failed_attempts"
            )
        ),
    }


def _same_answer(a: Any, b: Any, ids: tuple[Any, Any]) -> bool:
    """Whether two responses are the same but for the id asked for (echoed in
    the 404 page) and the per-render CSRF token of the page's log-out form."""

    def norm(response: Any, session_id: Any) -> bytes:
        body = response.content.replace(str(session_id).encode(), b"<id>")
        return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", body)

    return a.status_code == b.status_code and norm(a, ids[0]) == norm(b, ids[1])


def _anonymous_answer(response: Any) -> tuple[int, str]:
    """Anonymous callers of the HTML views go to the login page; the JSON
    endpoints answer 404. The login redirect must not depend on the id
    beyond echoing the requested path in ``next``."""
    location = response.get("Location", "")
    return response.status_code, location.split("?")[0]


@pytest.mark.django_db
@pytest.mark.parametrize("who", INTRUDERS)
@pytest.mark.parametrize(("name", "method", "kwargs", "allowed"), SESSION_CASES, ids=[c[0] for c in SESSION_CASES])
def test_intruder_learns_nothing_about_a_session(
    world: World, who: str, name: str, method: str, kwargs: Any, allowed: set[str]
) -> None:
    client = client_for(world.user(who))
    before = _fingerprint(world)
    missing = uuid.uuid4()
    target = _request(client, method, reverse(name, kwargs=kwargs(world, world.session.pk)))
    unknown = _request(client, method, reverse(name, kwargs=kwargs(world, missing)))
    if who == "anonymous":
        assert target.status_code in (302, 404)
        assert _anonymous_answer(target)[0] == _anonymous_answer(unknown)[0]
        assert _anonymous_answer(target)[1] == _anonymous_answer(unknown)[1]
    else:
        assert target.status_code == 404, (who, name, target.status_code)
        # The very same answer as for an id that does not exist: no existence oracle.
        assert _same_answer(target, unknown, (world.session.pk, missing))
    for leak in (b"OWNER-PRIVATE-OUTPUT", b"the secret solution", b"first hint", b"sb-fake", b"owner"):
        assert leak not in target.content
    assert _fingerprint(world) == before


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "method", "kwargs", "allowed"), SESSION_CASES, ids=[c[0] for c in SESSION_CASES])
def test_instructor_of_the_course_gets_only_what_observing_allows(
    world: World, name: str, method: str, kwargs: Any, allowed: set[str]
) -> None:
    client = client_for(world.instructor)
    before = _fingerprint(world)
    response = _request(client, method, reverse(name, kwargs=kwargs(world, world.session.pk)))
    if "instructor" in allowed:
        # Passed the access check. The port preview then finds no sandbox to reach: 502 when
        # no runtimed runs, 503 when runtimed refuses the made-up sandbox's missing credential.
        assert response.status_code in (200, 502, 503), (name, response.status_code)
    else:
        assert response.status_code == 404, (name, response.status_code)
        assert _fingerprint(world) == before


@pytest.mark.django_db
def test_observer_page_is_read_only(world: World) -> None:
    page = client_for(world.instructor).get(reverse("labs:session", kwargs={"session_id": world.session.pk}))
    assert page.status_code == 200
    assert page.context["mode"] == "ro"
    assert b'data-role="check"' not in page.content


@pytest.mark.django_db
def test_owner_gets_their_own_session_and_submission(world: World) -> None:
    client = client_for(world.owner)
    page = client.get(reverse("labs:session", kwargs={"session_id": world.session.pk}))
    assert page.status_code == 200 and page.context["mode"] == "rw"
    status = client.get(
        reverse("grader:submission", kwargs={"session_id": world.session.pk, "submission_id": world.submission.pk})
    )
    assert status.status_code == 200
    assert status.json()["tests"][0]["output"] == "OWNER-PRIVATE-OUTPUT"


@pytest.mark.django_db
def test_own_session_cannot_reach_someone_elses_submission(world: World) -> None:
    """The classmate's own session id with the owner's submission id: the
    submission is looked up inside the session the caller may see."""
    response = client_for(world.classmate).get(
        reverse(
            "grader:submission",
            kwargs={"session_id": world.classmate_session.pk, "submission_id": world.submission.pk},
        )
    )
    assert response.status_code == 404
    assert b"OWNER-PRIVATE-OUTPUT" not in response.content


@pytest.mark.django_db
def test_own_session_cannot_check_an_exercise_of_another_lab(world: World) -> None:
    from tests.grader.helpers import ExerciseFactory

    elsewhere = ExerciseFactory.create()
    for name in ("grader:check", "grader:hint", "grader:solution"):
        response = client_for(world.classmate).post(
            reverse(name, kwargs={"session_id": world.classmate_session.pk, "exercise_id": elsewhere.pk})
        )
        assert response.status_code == 409, name
    assert not Submission.objects.filter(exercise=elsewhere).exists()
    assert not ExerciseProgress.objects.filter(exercise=elsewhere).exists()


@pytest.mark.django_db
def test_a_stopped_session_stays_private(world: World) -> None:
    world.session.status = LabSession.Status.STOPPED
    world.session.save(update_fields=["status"])
    response = client_for(world.classmate).get(reverse("labs:session", kwargs={"session_id": world.session.pk}))
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("session_id", ["not-a-uuid", "../../etc/passwd", "00000000-0000-0000-0000-000000000000"])
def test_malformed_session_ids_are_plain_not_found(world: World, session_id: str) -> None:
    response = client_for(world.classmate).get(f"/labs/{session_id}/")
    assert response.status_code == 404


# --- content routes: the same for everyone, showing only the visitor's own sessions ---------------


@pytest.mark.django_db
def test_lab_and_module_pages_show_only_the_visitors_own_session(world: World) -> None:
    client = client_for(world.classmate)
    urls = [
        reverse("labs:lab", kwargs={"lab_id": world.lab.pk}),
        reverse("courses:module", kwargs={"course": world.course.slug, "module": world.lab.module.slug}),
        reverse("courses:course", kwargs={"course": world.course.slug}),
        reverse("courses:progress"),
        reverse("courses:home"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert str(world.session.pk).encode() not in response.content, url
        assert b"OWNER-PRIVATE-OUTPUT" not in response.content, url


@pytest.mark.django_db
def test_starting_a_lab_never_hands_over_someone_elses_session(world: World) -> None:
    response = client_for(world.classmate).post(reverse("labs:start", kwargs={"lab_id": world.lab.pk}))
    assert response.status_code == 302
    assert str(world.session.pk) not in response["Location"]
    assert str(world.classmate_session.pk) in response["Location"]


# --- instructor routes ------------------------------------------------------------------------------


INSTRUCTOR_URLS: list[tuple[str, dict[str, Any] | None]] = [
    ("courses:instructor", {}),
    ("courses:instructor-csv", {}),
    ("courses:instructor-student", None),  # the owner's id, filled in below
]


def _instructor_url(w: World, name: str, kwargs: dict[str, Any] | None) -> str:
    return reverse(name, kwargs=kwargs if kwargs is not None else {"user_id": w.owner.pk})


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "classmate", "outsider"])
@pytest.mark.parametrize(("name", "kwargs"), INSTRUCTOR_URLS, ids=[u[0] for u in INSTRUCTOR_URLS])
def test_students_cannot_reach_instructor_views(world: World, who: str, name: str, kwargs: Any) -> None:
    response = client_for(world.user(who)).get(_instructor_url(world, name, kwargs))
    assert response.status_code == 403
    assert b"OWNER-PRIVATE-OUTPUT" not in response.content
    assert b"owner@example.com" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "kwargs"), INSTRUCTOR_URLS, ids=[u[0] for u in INSTRUCTOR_URLS])
def test_anonymous_is_sent_to_log_in_from_instructor_views(world: World, name: str, kwargs: Any) -> None:
    response = Client().get(_instructor_url(world, name, kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_instructor_sees_their_students_history(world: World) -> None:
    client = client_for(world.instructor)
    history = client.get(reverse("courses:instructor-student", kwargs={"user_id": world.owner.pk}))
    assert history.status_code == 200 and b"OWNER-PRIVATE-OUTPUT" in history.content
    matrix = client.get(reverse("courses:instructor"), {"course": world.course.slug})
    assert matrix.status_code == 200
    csv = client.get(reverse("courses:instructor-csv"), {"course": world.course.slug})
    assert csv.status_code == 200 and b"owner@example.com" in csv.content


@pytest.mark.django_db
def test_instructor_of_another_course_sees_none_of_it(world: World) -> None:
    client = client_for(world.other_instructor)
    history = client.get(reverse("courses:instructor-student", kwargs={"user_id": world.owner.pk}))
    assert history.status_code == 200
    assert b"OWNER-PRIVATE-OUTPUT" not in history.content
    assert b"Make a pod" not in history.content
    for name in ("courses:instructor", "courses:instructor-csv"):
        response = client.get(reverse(name), {"course": world.course.slug})
        assert response.status_code == 404, name
        assert b"owner@example.com" not in response.content
    # Without a course asked for, the dashboard shows the course they teach, not this one.
    dashboard = client.get(reverse("courses:instructor"))
    assert dashboard.status_code == 200
    assert dashboard.context["course"] is None or dashboard.context["course"].pk != world.course.pk
    assert b"make-a-pod" not in dashboard.content


@pytest.mark.django_db
def test_instructor_module_filter_is_scoped_to_the_course(world: World) -> None:
    """A module id of a course the instructor does not teach is ignored, not shown."""
    from tests.factories import ModuleFactory

    foreign = ModuleFactory.create(course=world.course.__class__.objects.get(slug="other-course"))
    response = client_for(world.instructor).get(
        reverse("courses:instructor"), {"course": world.course.slug, "module": str(foreign.pk)}
    )
    assert response.status_code == 200
    assert response.context["module"] is None


@pytest.mark.django_db
def test_admin_is_staff_only(world: World) -> None:
    for who in ("owner", "instructor", "outsider"):
        response = client_for(world.user(who)).get("/admin/auth/user/")
        assert response.status_code == 302, who
        assert response["Location"].startswith("/admin/login/"), who


@pytest.mark.django_db
def test_password_reset_link_needs_its_token(world: World) -> None:
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    uid = urlsafe_base64_encode(force_bytes(world.owner.pk))
    client = Client()
    page = client.get(reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": "set-password"}))
    page = client.post(
        reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": "forged-token"}),
        {"new_password1": "Pwned-by-classmate-123", "new_password2": "Pwned-by-classmate-123"},
    )
    assert page.status_code == 200 and page.context["validlink"] is False
    world.owner.refresh_from_db()
    assert not world.owner.check_password("Pwned-by-classmate-123")


# --- WebSocket routes ----------------------------------------------------------------------------------


def _ws_paths(w: World, session_id: Any) -> dict[str, str]:
    return {
        "ws/labs/<str:session>/term/<int:n>/": f"/ws/labs/{session_id}/term/1/",
        "ws/labs/<str:session>/events/": f"/ws/labs/{session_id}/events/",
        "labs/<str:session>/port/<int:port>/": f"/labs/{session_id}/port/8080/",
        "labs/<str:session>/port/<int:port>/<path:path>": f"/labs/{session_id}/port/8080/socket",
    }


WS_SESSION_ROUTES = [route for route, kind in WS_ROUTES.items() if kind == "session"]


async def _handshake(user: Any, path: str) -> tuple[str, list[dict[str, Any]]]:
    """Open ``path`` through the real ASGI application, as a browser on the
    site's own origin would; return the outcome and what was sent."""
    from config.asgi import application

    cookie = await database_sync_to_async(session_cookie)(user)
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), *cookie]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=20)
    received: list[dict[str, Any]] = []
    first = None
    if connected:
        first = await communicator.receive_output(timeout=20)
        received.append(first)
        while first.get("type") != "websocket.close" and not await communicator.receive_nothing(timeout=0.2):
            message = await communicator.receive_output(timeout=5)
            received.append(message)
            if message.get("type") == "websocket.close":
                break
    await communicator.disconnect()
    return ws_outcome(connected, code, first), received


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("who", INTRUDERS)
@pytest.mark.parametrize("route", WS_SESSION_ROUTES)
async def test_intruder_cannot_open_a_sessions_sockets(
    world: World, who: str, route: str, fresh_channel_layer: None
) -> None:
    user = world.user(who)
    outcome, received = await _handshake(user, _ws_paths(world, world.session.pk)[route])
    unknown, _ = await _handshake(user, _ws_paths(world, uuid.uuid4())[route])
    assert outcome in ("closed:4404", "denied:4404"), outcome
    assert outcome == unknown  # the same refusal as for a session that does not exist
    # Nothing but the close: no hello, no state, no bytes of the terminal.
    assert [m["type"] for m in received if m["type"] != "websocket.accept"] in ([], ["websocket.close"])
    assert not await database_sync_to_async(TerminalObservation.objects.exists)()
    session = await database_sync_to_async(LabSession.objects.get)(pk=world.session.pk)
    assert session.terminals == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("who", ["owner", "instructor"])
@pytest.mark.parametrize("route", WS_SESSION_ROUTES)
async def test_owner_and_instructor_pass_the_sockets_access_check(
    world: World, who: str, route: str, fresh_channel_layer: None
) -> None:
    """Admitted callers get past ``lab_session_for_user``: the events socket
    opens; the terminal and the port preview then find no runtimed behind the
    made-up sandbox (4503 / 1011), which is not the access refusal 4404.
    (An observer only watches shells the owner opened: terminal 1 is recorded.)"""
    world.session.terminals = {"1": "pty-fake"}
    await database_sync_to_async(world.session.save)(update_fields=["terminals"])
    outcome, received = await _handshake(world.user(who), _ws_paths(world, world.session.pk)[route])
    assert "4404" not in outcome, outcome
    if route.endswith("events/"):
        assert outcome == "open"
        state = json.loads(received[0]["text"])
        assert state["status"] == "ready"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_observer_heartbeats_do_not_keep_a_session_alive(world: World, fresh_channel_layer: None) -> None:
    from config.asgi import application

    cookie = await database_sync_to_async(session_cookie)(world.instructor)
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), *cookie]
    communicator = WebsocketCommunicator(application, f"/ws/labs/{world.session.pk}/events/", headers=headers)
    connected, _ = await communicator.connect(timeout=20)
    assert connected
    await communicator.receive_json_from(timeout=20)
    before = (await database_sync_to_async(LabSession.objects.get)(pk=world.session.pk)).last_activity_at
    await communicator.send_json_to({"type": "heartbeat"})
    assert await communicator.receive_nothing(timeout=0.5)
    after = (await database_sync_to_async(LabSession.objects.get)(pk=world.session.pk)).last_activity_at
    assert after == before
    await communicator.disconnect()
