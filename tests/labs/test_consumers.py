"""The terminal WebSocket against a real runtimed: who may attach, what flows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from labs import services
from labs.models import LabSession, TerminalObservation
from labs.routing import websocket_urlpatterns
from tests.factories import InstructorFactory, LabFactory, StudentFactory
from tests.labs.helpers import provisioned

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

app = URLRouter(websocket_urlpatterns)


@database_sync_to_async
def ready_session(owner: Any) -> LabSession:
    from django.db import transaction

    lab = LabFactory.create()
    session = services.lab_session_start(user=owner, lab=lab)
    transaction.on_commit(lambda: None)
    result = provisioned(session)
    assert result is not None and result.status == LabSession.Status.READY, result and result.error
    return result


async def connect(user: Any, session: LabSession, n: int = 1) -> tuple[WebsocketCommunicator, bool, Any]:
    """Open terminal ``n``: (communicator, admitted, close code if refused).

    A refusal is an accepted socket closed at once with an application code
    (so the browser can tell why); admitted means the first frame was hello."""
    communicator = WebsocketCommunicator(app, f"/ws/labs/{session.pk}/term/{n}/?rows=30&cols=100")
    communicator.scope["user"] = user
    connected, code = await communicator.connect(timeout=20)
    if not connected:
        return communicator, False, code
    first = await communicator.receive_output(timeout=20)
    if first["type"] == "websocket.close":
        return communicator, False, first.get("code")
    communicator.hello = json.loads(first["text"])
    return communicator, True, None


async def read_until(communicator: WebsocketCommunicator, needle: bytes, timeout: float = 20) -> bytes:
    seen = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while needle not in seen:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"{needle!r} never arrived; got {seen[-500:]!r}")
        message = await communicator.receive_output(timeout=left)
        if message["type"] == "websocket.close":
            raise AssertionError(f"closed ({message.get('code')}) before {needle!r}; got {seen[-500:]!r}")
        data = message.get("bytes")
        if data:
            seen += data
            await communicator.send_to(text_data=json.dumps({"type": "ack", "bytes": len(data)}))
    return seen


async def hello(communicator: WebsocketCommunicator) -> dict[str, Any]:
    message: dict[str, Any] = communicator.hello
    assert message["type"] == "hello"
    return message


async def test_owner_types_and_reads_output(runtime_socket: str) -> None:
    owner = await database_sync_to_async(StudentFactory.create)()
    session = await ready_session(owner)
    communicator, connected, _ = await connect(owner, session)
    assert connected
    assert (await hello(communicator))["mode"] == "rw"
    await communicator.send_to(bytes_data=b"echo $((6*7))\n")
    await read_until(communicator, b"42")
    await communicator.disconnect()


async def test_anonymous_is_refused(runtime_socket: str) -> None:
    owner = await database_sync_to_async(StudentFactory.create)()
    session = await ready_session(owner)
    _communicator, connected, code = await connect(AnonymousUser(), session)
    assert not connected
    assert code == 4404


async def test_outsider_cannot_attach(runtime_socket: str) -> None:
    owner = await database_sync_to_async(StudentFactory.create)()
    classmate = await database_sync_to_async(StudentFactory.create)()
    session = await ready_session(owner)
    _communicator, connected, code = await connect(classmate, session)
    assert not connected
    assert code == 4404
    # Nothing leaked to the classmate: no terminal was even created.
    await database_sync_to_async(session.refresh_from_db)()
    assert session.terminals == {}


async def test_instructor_observes_read_only_and_is_recorded(runtime_socket: str) -> None:
    owner = await database_sync_to_async(StudentFactory.create)()
    teacher = await database_sync_to_async(InstructorFactory.create)()
    session = await ready_session(owner)
    student_ws, connected, _ = await connect(owner, session)
    assert connected
    await hello(student_ws)
    await student_ws.send_to(bytes_data=b"echo student-was-here\n")
    await read_until(student_ws, b"student-was-here\r\n")

    teacher_ws, connected, _ = await connect(teacher, session)
    assert connected
    assert (await hello(teacher_ws))["mode"] == "ro"
    # The observer sees the student's screen (the scrollback replay)...
    await read_until(teacher_ws, b"student-was-here")
    # ...but their keystrokes go nowhere.
    await teacher_ws.send_to(bytes_data=b"echo teacher-typed-$((1+1))\n")
    await student_ws.send_to(bytes_data=b"echo after-$((2+3))\n")
    out = await read_until(student_ws, b"after-5")
    assert b"teacher-typed-2" not in out
    assert (
        await database_sync_to_async(TerminalObservation.objects.filter(session=session, observer=teacher).count)() == 1
    )
    await teacher_ws.disconnect()
    await student_ws.disconnect()
    ended = await database_sync_to_async(
        lambda: TerminalObservation.objects.get(session=session, observer=teacher).ended_at
    )()
    assert ended is not None


async def test_an_instructor_of_another_course_is_refused(runtime_socket: str) -> None:
    from courses.models import Course

    owner = await database_sync_to_async(StudentFactory.create)()
    teacher = await database_sync_to_async(InstructorFactory.create)()
    other_teacher = await database_sync_to_async(InstructorFactory.create)()
    session = await ready_session(owner)
    course = await database_sync_to_async(lambda: Course.objects.get(modules__labs__sessions=session))()
    await database_sync_to_async(course.instructors.add)(teacher)
    _communicator, connected, code = await connect(other_teacher, session)
    assert not connected and code == 4404


async def test_reconnect_finds_the_same_shell_and_replays_scrollback(runtime_socket: str) -> None:
    owner = await database_sync_to_async(StudentFactory.create)()
    session = await ready_session(owner)
    first, connected, _ = await connect(owner, session)
    assert connected
    await hello(first)
    await first.send_to(bytes_data=b"MARK=remembered-$((40+2)); echo $MARK\n")
    await read_until(first, b"remembered-42\r\n")
    await first.disconnect()

    again, connected, _ = await connect(owner, session)
    assert connected
    await hello(again)
    await read_until(again, b"remembered-42")  # the scrollback
    await again.send_to(bytes_data=b"echo still-$MARK\n")  # the same shell: its variable is there
    await read_until(again, b"still-remembered-42")
    await again.disconnect()


async def test_two_terminals_are_two_shells(runtime_socket: str) -> None:
    owner = await database_sync_to_async(StudentFactory.create)()
    session = await ready_session(owner)
    one, _, _ = await connect(owner, session, 1)
    two, _, _ = await connect(owner, session, 2)
    await hello(one)
    await hello(two)
    await one.send_to(bytes_data=b"X=first; echo pid-$$\n")
    out_one = await read_until(one, b"pid-")
    await two.send_to(bytes_data=b"echo x-is-[$X]\n")
    await read_until(two, b"x-is-[]")
    await database_sync_to_async(session.refresh_from_db)()
    assert set(session.terminals) == {"1", "2"}
    assert out_one
    await one.disconnect()
    await two.disconnect()


async def owners_terminal() -> WebsocketCommunicator:
    """Terminal 1 of a new student's ready lab session, open."""
    owner = await database_sync_to_async(StudentFactory.create)()
    session = await ready_session(owner)
    communicator, connected, _ = await connect(owner, session)
    assert connected
    return communicator


async def test_flow_control_pauses_output_until_acknowledged(runtime_socket: str, settings) -> None:
    settings.TERMINAL_HIGH_WATERMARK = 64 * 1024
    settings.TERMINAL_LOW_WATERMARK = 16 * 1024
    communicator = await owners_terminal()
    await hello(communicator)
    received = await flood_until_paused(communicator)
    await resume_after_flood(communicator, received)
    await communicator.disconnect()


async def flood_until_paused(
    communicator: WebsocketCommunicator, midway: Callable[[], Awaitable[None]] | None = None
) -> int:
    """Start ``yes`` in the shell and read without acknowledging until the output stops; the
    caller set TERMINAL_HIGH_WATERMARK to 64 KiB, so it must stop near there. ``midway`` runs
    once, after 32 KiB. Returns the bytes received."""
    await communicator.send_to(bytes_data=b"yes flood-line\n")
    received = 0
    # (receive_nothing waits without cancelling the consumer, unlike a timed-out receive_output.)
    while not await communicator.receive_nothing(timeout=3):
        message = await communicator.receive_output(timeout=5)
        assert message["type"] != "websocket.close", message
        received += len(message.get("bytes") or b"")
        if midway is not None and received >= 32 * 1024:
            await midway()
            midway = None
        assert received < 64 * 1024 + 70_000, "output kept coming without acknowledgements"
    assert received >= 64 * 1024
    return received


async def resume_after_flood(communicator: WebsocketCommunicator, received: int) -> None:
    """Ctrl-C gets through even while output is paused, and after the acks the prompt returns."""
    await communicator.send_to(bytes_data=b"\x03")
    await communicator.send_to(text_data=json.dumps({"type": "ack", "bytes": received}))
    await communicator.send_to(bytes_data=b"echo stopped-$((3*3))\n")
    await read_until(communicator, b"stopped-9", timeout=30)


async def test_oversized_messages_close_the_socket(runtime_socket: str, settings) -> None:
    settings.TERMINAL_MAX_MESSAGE = 4096
    owner = await database_sync_to_async(StudentFactory.create)()
    session = await ready_session(owner)
    communicator, _connected, _ = await connect(owner, session)
    await hello(communicator)
    await communicator.send_to(bytes_data=b"x" * 5000)
    while True:
        message = await communicator.receive_output(timeout=10)
        if message["type"] == "websocket.close":
            assert message["code"] == 1009
            break
