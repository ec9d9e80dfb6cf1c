"""The lab page's editor views (labs/editor.py) over a real provisioned sandbox: the owner
lists, opens, saves, and is told when the terminal changed the file; an observing
instructor reads only; a classmate gets what an unknown session gives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from labs import services
from labs.models import LabSession
from runtime.client import Client as RuntimeClient
from tests.factories import InstructorFactory, LabFactory, StudentFactory
from tests.labs.helpers import provisioned

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(runtime_socket: str) -> LabSession:
    with transaction.atomic():
        started = services.lab_session_start(user=StudentFactory.create(), lab=LabFactory.create())
    ready = provisioned(started)
    assert ready is not None and ready.status == "ready", ready and ready.error
    return ready


def as_user(user: Any) -> Client:
    c = Client()
    c.force_login(user)
    return c


def sandbox_sh(runtime_socket: str, session: LabSession, script: str) -> str:
    with RuntimeClient(runtime_socket) as rt:
        r = rt.exec(session.sandbox_id, ["sh", "-c", script], timeout=10)
    assert r.exit_code == 0, r.stderr_text
    return r.stdout_text


def save(client: Client, session: LabSession, body: dict[str, Any]) -> Any:
    return client.post(f"/labs/{session.pk}/files/content/", json.dumps(body), content_type="application/json")


def test_owner_lists_opens_saves_and_is_told_of_a_change_made_in_the_terminal(
    session: LabSession, runtime_socket: str
) -> None:
    sandbox_sh(runtime_socket, session, "printf 'apiVersion: v1\\n' > /root/pod.yaml")
    owner = as_user(session.user)
    listing = owner.get(f"/labs/{session.pk}/files/", {"path": ""})
    assert listing.status_code == 200
    assert "pod.yaml" in [e["name"] for e in listing.json()["entries"]]

    opened = owner.get(f"/labs/{session.pk}/files/content/", {"path": "pod.yaml"}).json()
    assert opened["content"] == "apiVersion: v1\n"
    saved = save(owner, session, {"path": "pod.yaml", "content": "apiVersion: v1\nkind: Pod\n", "etag": opened["etag"]})
    assert saved.status_code == 200, saved.content
    assert sandbox_sh(runtime_socket, session, "cat /root/pod.yaml") == "apiVersion: v1\nkind: Pod\n"

    sandbox_sh(runtime_socket, session, "echo '# terminal' >> /root/pod.yaml")
    stale = save(owner, session, {"path": "pod.yaml", "content": "lost?\n", "etag": saved.json()["etag"]})
    assert stale.status_code == 409 and "changed in the sandbox" in stale.json()["error"]
    assert sandbox_sh(runtime_socket, session, "tail -n 1 /root/pod.yaml") == "# terminal\n"

    created = save(owner, session, {"path": "new.sh", "content": "echo hi\n", "etag": None})
    assert created.status_code == 200
    assert sandbox_sh(runtime_socket, session, "sh /root/new.sh") == "hi\n"
    bad = save(owner, session, {"path": 3, "content": "x"})
    assert bad.status_code == 400


def test_an_observer_reads_but_cannot_save_and_a_classmate_sees_nothing(
    session: LabSession, runtime_socket: str
) -> None:
    sandbox_sh(runtime_socket, session, "echo owner-private > /root/notes.txt")
    instructor = as_user(InstructorFactory.create())
    read = instructor.get(f"/labs/{session.pk}/files/content/", {"path": "notes.txt"})
    assert read.status_code == 200 and read.json()["content"] == "owner-private\n"
    assert save(instructor, session, {"path": "notes.txt", "content": "x", "etag": "*"}).status_code == 404

    classmate = as_user(StudentFactory.create())
    for response in (
        classmate.get(f"/labs/{session.pk}/files/", {"path": ""}),
        classmate.get(f"/labs/{session.pk}/files/content/", {"path": "notes.txt"}),
        save(classmate, session, {"path": "notes.txt", "content": "owned\n", "etag": "*"}),
    ):
        assert response.status_code == 404
        assert b"owner-private" not in response.content
    assert sandbox_sh(runtime_socket, session, "cat /root/notes.txt") == "owner-private\n"


def test_a_planted_link_to_etc_shadow_is_refused_through_the_page(session: LabSession, runtime_socket: str) -> None:
    sandbox_sh(runtime_socket, session, "ln -s /etc/shadow /root/x")
    owner = as_user(session.user)
    read = owner.get(f"/labs/{session.pk}/files/content/", {"path": "x"})
    assert read.status_code == 403 and "symbolic link" in read.json()["error"]
    assert save(owner, session, {"path": "x", "content": "owned\n", "etag": "*"}).status_code == 403
    assert sandbox_sh(runtime_socket, session, "test -L /root/x && echo still-a-link") == "still-a-link\n"
