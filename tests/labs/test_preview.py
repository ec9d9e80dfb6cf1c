"""Port preview: a web app inside the sandbox, reached through the platform."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import AsyncClient

from labs import services
from labs.models import LabSession
from runtime.client import Client as RuntimeClient
from tests.factories import InstructorFactory, LabFactory, StudentFactory
from tests.labs.helpers import provisioned

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "cookie=[$HTTP_COOKIE] auth=[$HTTP_AUTHORIZATION] prefix=[$HTTP_X_FORWARDED_PREFIX] q=[$QUERY_STRING]"
"""


@pytest.fixture
def web_app_session(runtime_socket: str, transactional_db: None) -> LabSession:
    owner = StudentFactory.create()
    with transaction.atomic():
        session = services.lab_session_start(user=owner, lab=LabFactory.create())
    ready = provisioned(session)
    assert ready is not None and ready.status == "ready", ready and ready.error
    script = (
        "mkdir -p /root/www/cgi-bin && echo hello-from-the-sandbox > /root/www/index.html"
        f" && cat > /root/www/cgi-bin/env <<'EOF'\n{CGI}EOF\n"
        " chmod +x /root/www/cgi-bin/env && busybox httpd -p 8080 -h /root/www"
    )
    with RuntimeClient(runtime_socket) as rt:
        result = rt.exec(ready.sandbox_id, ["sh", "-c", script], timeout=10)
    assert result.exit_code == 0, result.stderr_text
    assert ready.user.username  # loaded now: the async tests may not query lazily
    return ready


async def read(response: object) -> bytes:
    """The body of an async streaming response."""
    return b"".join([chunk async for chunk in response.streaming_content])  # type: ignore[attr-defined]


async def as_user(user: object | None) -> AsyncClient:
    client = AsyncClient()
    if user is not None:
        await client.aforce_login(user)  # type: ignore[arg-type]
    return client


def url(session: LabSession, rest: str) -> str:
    return f"/labs/{session.pk}/port/{rest}"


async def test_owner_reaches_the_app_in_the_sandbox(web_app_session: LabSession) -> None:
    client = await as_user(web_app_session.user)
    response = await client.get(url(web_app_session, "8080/index.html"))
    body = await read(response)
    assert response.status_code == 200, body
    assert body.strip() == b"hello-from-the-sandbox"
    assert "sandbox" in response["Content-Security-Policy"]


async def test_platform_credentials_never_reach_the_app(web_app_session: LabSession) -> None:
    client = await as_user(web_app_session.user)
    response = await client.get(
        url(web_app_session, "8080/cgi-bin/env?x=1"), headers={"Authorization": "Bearer secret"}
    )
    body = (await read(response)).decode()
    assert response.status_code == 200, body
    assert "cookie=[]" in body and "auth=[]" in body
    assert f"prefix=[/labs/{web_app_session.pk}/port/8080]" in body
    assert "q=[x=1]" in body


async def test_observing_instructor_may_look_but_a_classmate_may_not(web_app_session: LabSession) -> None:
    classmate = await sync_to_async(StudentFactory.create)()
    teacher = await sync_to_async(InstructorFactory.create)()
    target = url(web_app_session, "8080/index.html")
    assert (await (await as_user(classmate)).get(target)).status_code == 404
    assert (await (await as_user(None)).get(target)).status_code == 404
    seen = await (await as_user(teacher)).get(target)
    assert seen.status_code == 200
    await read(seen)


async def test_a_port_with_nothing_listening_says_so(web_app_session: LabSession) -> None:
    client = await as_user(web_app_session.user)
    response = await client.get(url(web_app_session, "9999/"))
    assert response.status_code == 502
    body = (await read(response)).decode()
    assert "Nothing answers on port 9999" in body
    assert response["X-Runtime-Error"] == "unreachable"
