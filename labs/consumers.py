"""WebSocket consumers of a lab session: its terminals and its status events.

Terminal protocol (``/ws/labs/<session>/term/<n>/``):

* server → browser, binary: terminal output; text JSON: ``hello`` (mode, terminal),
  ``exit`` (the shell ended), ``notice``, ``pong``.
* browser → server, binary: keystrokes (dropped for read-only observers);
  text JSON: ``resize`` {rows, cols}, ``ack`` {bytes}, ``ping``.

Flow control runs end to end: the browser acknowledges output once xterm.js
has written it (its write callback); when more than TERMINAL_HIGH_WATERMARK
bytes are unacknowledged the consumer stops reading from runtimed's attach
stream, runtimed's send buffer fills, and runtimed stops reading the PTY, so
``yes`` blocks inside the sandbox instead of filling memory anywhere. Reading
resumes below TERMINAL_LOW_WATERMARK. Ctrl-C is input, which never waits on
output, so it always gets through.

Access is decided before ``accept()``, by ``lab_session_for_user``:
nobody else's bytes flow until it said yes. It lasts as long as the sign-in
that opened the socket (accounts/sockets.py): signing out, another account
signing in in the same browser, a password change or a deactivation close the
socket with 4401, pushed at once and checked again on input at most every 30 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from accounts.sockets import SignedInSocket
from courses.messages import as_dict as message_as_dict
from courses.messages import message_group, unread_messages
from labs import sandboxes, services
from labs.models import LabSession, TerminalObservation
from labs.selectors import Granted, LabSessionNotFound, lab_session_for_user
from runtime import errors as runtime_errors
from runtime.backends import AttachStream, SandboxBackend

log = logging.getLogger(__name__)

CLOSE_NOT_FOUND = 4404
CLOSE_NOT_READY = 4409
CLOSE_BAD_REQUEST = 4400
CLOSE_TOO_BIG = 1009
CLOSE_RUNTIME_DOWN = 4503
# An alias with no configured layer: Channels then gives the consumer none.
NO_CHANNEL_LAYER = "none"


async def refuse(consumer: Any, code: int) -> None:
    """Close with an application code the page can act on. A close before
    accept() would reach the browser as a bare handshake failure (1006), so
    the socket is accepted and closed at once: nothing else is sent."""
    await consumer.accept()
    await consumer.close(code=code)


@database_sync_to_async
def _access(user: Any, session_id: str, *, write: bool = False) -> Granted:
    return lab_session_for_user(user, session_id, write=write)


@database_sync_to_async
def _open_terminal(session: LabSession, number: int, pty_id: str) -> None:
    services.lab_session_open_terminal(session=session, number=number, session_id=pty_id)


@database_sync_to_async
def _record_activity(session: LabSession) -> None:
    services.lab_session_record_activity(session=session)


@database_sync_to_async
def _start_observation(session: LabSession, user: Any, number: int) -> int:
    return TerminalObservation.objects.create(session=session, observer=user, terminal=number).pk


@database_sync_to_async
def _end_observation(pk: int) -> None:
    TerminalObservation.objects.filter(pk=pk).update(ended_at=timezone.now())


class TokenBucket:
    """Input rate limit: ``rate`` bytes per second, bursts of one second."""

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.tokens = float(rate)
        self.stamp = time.monotonic()

    def take(self, n: int) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if n > self.tokens:
            return False
        self.tokens -= n
        return True


class TerminalConsumer(SignedInSocket, AsyncWebsocketConsumer):
    # Terminals talk to runtimed only. Off the channel layer, a busy Redis can
    # never take a shell down with it (and there is one listener less per tab).
    channel_layer_alias = NO_CHANNEL_LAYER
    granted: Granted | None = None
    attach: AttachStream | None = None
    rt: SandboxBackend | None = None  # the session's backend, with the session's own credential
    box = ""  # the sandbox's id in that backend
    pump: asyncio.Task[None] | None = None
    observation: int | None = None

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.number = int(kwargs["n"])
        try:
            self.granted = await _access(self.scope.get("user"), kwargs["session"])
        except LabSessionNotFound:
            await refuse(self, CLOSE_NOT_FOUND)
            return
        session = self.granted.session
        if session.status != LabSession.Status.READY or not session.sandbox_id:
            await refuse(self, CLOSE_NOT_READY)
            return
        if not 1 <= self.number <= settings.LAB_MAX_TERMINALS:
            await refuse(self, CLOSE_BAD_REQUEST)
            return
        self.unacked = 0
        self.can_send = asyncio.Event()
        self.can_send.set()
        self.bucket = TokenBucket(settings.TERMINAL_INPUT_RATE)
        self.last_activity = 0.0
        self.dropped_notice = False
        # the session's backend (which runtimed holds the sandbox, this host's or its lab node's
        # under SANDBOX_BACKEND=kubernetes, is the backend's business: read from the Node, never
        # from anything a student writes), with the session's own credential: runtimed lets it
        # act on this sandbox and no other
        try:
            if session.backend == "namespace":  # this host's runtimed: nothing blocks
                self.rt = sandboxes.for_session(session)
            else:
                self.rt = await asyncio.to_thread(sandboxes.for_session, session)
        except sandboxes.SandboxError:
            log.warning("terminal %s of %s: no sandbox backend", self.number, session.pk, exc_info=True)
            await refuse(self, CLOSE_RUNTIME_DOWN)
            return
        self.box = session.sandbox_id
        try:
            pty_id = await self._pty_session(session)
            if pty_id is None:
                await refuse(self, CLOSE_NOT_FOUND)
                return
            self.attach = await self.rt.attach(self.box, pty_id, read_only=not self.granted.can_write)
        except runtime_errors.SandboxNotFound:
            await refuse(self, CLOSE_NOT_READY)
            return
        except runtime_errors.RuntimeError:
            log.warning("terminal %s of %s: runtimed unavailable", self.number, session.pk, exc_info=True)
            await refuse(self, CLOSE_RUNTIME_DOWN)
            return
        await self.accept()
        await self.watch_sign_in()
        if not self.granted.can_write:
            self.observation = await _start_observation(session, self.scope["user"], self.number)
        await self.send(
            text_data=json.dumps({"type": "hello", "mode": self.granted.access.value, "terminal": self.number})
        )
        self.pump = asyncio.create_task(self._pump_output())

    async def _pty_session(self, session: LabSession) -> str | None:
        """The runtimed PTY session behind this terminal, created on first use by the owner."""
        assert self.rt is not None and self.granted is not None
        pty_id = session.terminals.get(str(self.number))
        if pty_id:
            try:
                info = await self.rt.get_session(self.box, pty_id)
                if not info.get("exited"):
                    return str(pty_id)
            except runtime_errors.SessionNotFound:
                pass
        if not self.granted.can_write:
            return None  # observers watch shells, they do not open them
        query = dict(
            part.split("=", 1) for part in self.scope.get("query_string", b"").decode().split("&") if "=" in part
        )
        rows = _clamp(query.get("rows"), 24, 5, 500)
        cols = _clamp(query.get("cols"), 80, 10, 1000)
        # after a resume, the shell of this terminal starts where it was when the lab was paused
        cwd = session.resume_cwds.get(str(self.number))
        try:
            created = await self.rt.create_session(self.box, rows=rows, cols=cols, cwd=cwd)
        except runtime_errors.SandboxNotFound:
            raise
        except runtime_errors.RuntimeError:
            if cwd is None:
                raise
            created = await self.rt.create_session(self.box, rows=rows, cols=cols)
        pty_id = str(created["session_id"])
        await _open_terminal(session, self.number, pty_id)
        return pty_id

    async def _pump_output(self) -> None:
        assert self.attach is not None
        try:
            while True:
                await self.can_send.wait()
                item = await self.attach.recv()
                if item is None:
                    break
                if isinstance(item, bytes):
                    if not await self.signed_in():
                        return  # closed with 4401: nothing more reaches a signed-out page
                    self.unacked += len(item)
                    if self.unacked >= settings.TERMINAL_HIGH_WATERMARK:
                        self.can_send.clear()
                    await self.send(bytes_data=item)
                    await self._activity()
                elif item.get("type") == "exit":
                    await self.send(text_data=json.dumps({"type": "exit", "code": item.get("code")}))
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.info("terminal %s: attach stream ended", self.number, exc_info=True)
        await self.close()

    async def _activity(self) -> None:
        now = time.monotonic()
        if now - self.last_activity >= 10 and self.granted is not None:
            self.last_activity = now
            await _record_activity(self.granted.session)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.attach is None or self.granted is None:
            return
        if not await self.signed_in():
            return  # the sign-in that opened the socket ended: closed with 4401, input dropped
        size = len(bytes_data or b"") + len(text_data or "")
        if size > settings.TERMINAL_MAX_MESSAGE:
            await self.close(code=CLOSE_TOO_BIG)
            return
        if bytes_data is not None:
            if not self.granted.can_write:
                return
            if not self.bucket.take(len(bytes_data)):
                if not self.dropped_notice:
                    self.dropped_notice = True
                    await self.send(
                        text_data=json.dumps(
                            {
                                "type": "notice",
                                "message": "Input is arriving too fast; some of it was dropped.",
                            }
                        )
                    )
                return
            await self.attach.send(bytes_data)
            await self._activity()
            return
        try:
            message = json.loads(text_data or "")
            kind = message.get("type")
        except (ValueError, AttributeError):
            return
        if kind == "ack":
            acked = message.get("bytes")
            if not _is_count(acked):
                return  # a page of ours sends a byte count; anything else is ignored, not fatal
            self.unacked = max(0, self.unacked - acked)
            if self.unacked <= settings.TERMINAL_LOW_WATERMARK:
                self.can_send.set()
        elif kind == "resize" and self.granted.can_write:
            rows = _clamp(message.get("rows"), 24, 2, 500)
            cols = _clamp(message.get("cols"), 80, 2, 1000)
            await self.attach.resize(rows, cols)
        elif kind == "ping":
            await self.send(text_data=json.dumps({"type": "pong"}))

    async def disconnect(self, code: int) -> None:
        await self.unwatch_sign_in()
        if self.pump is not None:
            self.pump.cancel()
        if self.attach is not None:
            await self.attach.close()
        if self.rt is not None:
            await sandboxes.release(self.rt)
        if self.observation is not None:
            await _end_observation(self.observation)


class LabEventsConsumer(SignedInSocket, AsyncJsonWebsocketConsumer):
    """Status of a lab session pushed live: provisioning progress, its place in
    the provisioning queue, ready, failed, the time left; the page's heartbeats
    count as activity.

    The pushes are a shortcut, not the source of truth: the current state is sent on
    every (re)connect and on request (``{"type": "state"}``, also what a heartbeat
    answers), which the page uses after a reconnect and every few seconds while its
    sandbox is being provisioned."""

    granted: Granted | None = None
    message_group: str | None = None
    # Queue updates reach the page at most once per QUEUE_INTERVAL seconds: when a class
    # starts at once they change with every claim, and only the latest one matters.
    QUEUE_INTERVAL = 1.0
    queue_sent_at = float("-inf")
    queue_latest: dict[str, Any] | None = None
    queue_flush: asyncio.TimerHandle | None = None
    queue_task: asyncio.Future[None] | None = None
    # Asked-for states (heartbeat, "state") answered at most once per STATE_INTERVAL seconds.
    STATE_INTERVAL = 1.0
    state_sent_at = float("-inf")

    async def connect(self) -> None:
        session_id = self.scope["url_route"]["kwargs"]["session"]
        try:
            self.granted = await _access(self.scope.get("user"), session_id)
        except LabSessionNotFound:
            await refuse(self, CLOSE_NOT_FOUND)
            return
        self.group = self.granted.session.group_name
        await self.channel_layer.group_add(self.group, self.channel_name)
        # The student's messages from their instructors (courses/messages.py): the owner's
        # sockets only, never an observer's.
        self.message_group = None
        if self.granted.can_write:
            session = self.granted.session
            self.message_group = message_group(session.lab.module.course_id, session.user_id)
            await self.channel_layer.group_add(self.message_group, self.channel_name)
        await self.accept()
        await self.watch_sign_in()
        await self.send_json(await self._state())
        if self.message_group is not None:
            # Unread messages, after the state (what the page and its tests expect first);
            # none, no message.
            unread = await self._unread_messages()
            if unread:
                await self.send_json({"type": "messages", "messages": unread})

    @database_sync_to_async
    def _unread_messages(self) -> list[dict[str, Any]]:
        assert self.granted is not None
        session = self.granted.session
        return [message_as_dict(m) for m in unread_messages(user=session.user, course=session.lab.module.course_id)]

    @database_sync_to_async
    def _state(self) -> dict[str, Any]:
        assert self.granted is not None
        session = LabSession.objects.get(pk=self.granted.session.pk)
        return services.session_state(session)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or self.granted is None:
            return
        if not await self.signed_in():
            return
        kind = content.get("type")
        if kind == "heartbeat" and self.granted.can_write:
            await _record_activity(self.granted.session)
            await self._send_state()
        elif kind == "state":
            # The page asks after a reconnect and while it waits for its sandbox, so a push
            # that never arrived (a channel layer hiccup) costs it one poll, not the lab.
            # Always the session this socket was granted: nothing in the request names one.
            await self._send_state()

    async def _send_state(self) -> None:
        """The session's current state, at most once per STATE_INTERVAL (a reader's
        question costs a query; a flood of them is answered by the first)."""
        now = asyncio.get_running_loop().time()
        if now - self.state_sent_at < self.STATE_INTERVAL:
            return
        self.state_sent_at = now
        await self.send_json(await self._state())

    async def lab_status(self, event: dict[str, Any]) -> None:
        if event["state"].get("queue") is None and self.queue_flush is not None:
            # A worker took the session: a queue update still held back is out of date.
            self.queue_flush.cancel()
            self.queue_flush = None
        await self.send_json(event["state"])

    async def lab_queue(self, event: dict[str, Any]) -> None:
        """A new place in the provisioning queue (labs.services._push_queue), throttled."""
        self.queue_latest = event["queue"]
        if self.queue_flush is not None:
            return  # a send is already due; it takes the latest place
        loop = asyncio.get_running_loop()
        wait = self.queue_sent_at + self.QUEUE_INTERVAL - loop.time()
        if wait <= 0:
            await self._send_queue()
        else:
            self.queue_flush = loop.call_later(wait, self._flush_queue)

    def _flush_queue(self) -> None:
        self.queue_task = asyncio.ensure_future(self._send_queue())

    async def _send_queue(self) -> None:
        self.queue_flush = None
        self.queue_sent_at = asyncio.get_running_loop().time()
        if self.granted is not None and self.queue_latest is not None:
            await self.send_json({"type": "queue", "session": str(self.granted.session.pk), "queue": self.queue_latest})

    # --- check verdicts pushed by grader.services ---------------------------------------
    async def grader_result(self, event: dict[str, Any]) -> None:
        await self.send_json({**event["result"], "type": "check"})

    # --- messages from the class view (issue #18), pushed by courses/messages.py --------
    async def class_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "message", "message": event["message"]})

    async def class_message_dismissed(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "message_dismissed", "id": event["id"]})

    async def disconnect(self, code: int) -> None:
        await self.unwatch_sign_in()
        if self.queue_flush is not None:
            self.queue_flush.cancel()
            self.queue_flush = None
        if self.granted is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            if self.message_group is not None:
                await self.channel_layer.group_discard(self.message_group, self.channel_name)


def _is_count(value: Any) -> bool:
    """A byte count as the page sends it: a JSON integer, not negative (not a bool, float,
    string or ``Infinity``, which Python's json accepts)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _clamp(value: Any, default: int, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity
        return default
    return max(low, min(high, number))
