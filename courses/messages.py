"""Hints and messages from the live class view to students' lab pages (issue #18).

An instructor who teaches a course sends a plain-text message to one student of its
class (``courses.selectors.class_members``) or to the whole class. Each recipient gets
a ``ClassMessage`` row, so a student who is not connected sees it on their next lab
page of the course and dismisses their own copy.

Delivery: every events socket a student opens on a lab session of theirs joins the
group ``message_group(course, student)`` (labs/consumers.py; observers never join), and
the send pushes there after commit (CONVENTIONS.md #4). On (re)connect the socket sends
the student's unread messages of the course, so a push lost while it was away costs
nothing.

Bounds: ``MAX_LENGTH`` characters per message; ``SENDS_PER_MINUTE`` sends per
instructor (a broadcast is one send), counted in the database so every web process
sees the same count.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from courses.models import ClassMessage, Course

log = logging.getLogger(__name__)

MAX_LENGTH = 1000
SENDS_PER_MINUTE = 10
RATE_WINDOW = timedelta(minutes=1)
# Unread messages a lab page shows at most (newest kept): a class's broadcasts are bounded
# by the rate limit, but a page need not render weeks of them.
INBOX_LIMIT = 50


class MessageError(Exception):
    """A send refused, with what the instructor should do (``status``: the HTTP status)."""

    status = 400


class NotInClass(MessageError):
    status = 404


class RateLimited(MessageError):
    status = 429


@dataclass(frozen=True)
class Sent:
    batch: uuid.UUID
    recipients: int


def message_group(course_id: int, user_id: int) -> str:
    return f"classmsg.{int(course_id)}.{int(user_id)}"


def clean_text(raw: Any) -> str:
    """The message as stored: plain text, ``\\n`` line ends, no control characters other
    than tab and newline, trimmed. Raises ``MessageError`` for empty or too long text."""
    if not isinstance(raw, str):
        raise MessageError("Write a message.")
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    bad = sorted({f"U+{ord(c):04X}" for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0})
    if bad:
        raise MessageError(f"The message contains control characters ({', '.join(bad[:3])}); remove them.")
    text = text.strip()
    if not text:
        raise MessageError("Write a message.")
    if len(text) > MAX_LENGTH:
        raise MessageError(f"The message is {len(text)} characters long; at most {MAX_LENGTH} are allowed.")
    return text


def as_dict(message: ClassMessage) -> dict[str, Any]:
    sender = message.sender
    return {
        "id": message.pk,
        "text": message.text,
        "from": sender.get_full_name() or sender.get_username(),
        "broadcast": message.broadcast,
        "created": message.created_at.isoformat(),
    }


def unread_messages(*, user: Any, course: Course | int) -> list[ClassMessage]:
    """``user``'s unread messages in ``course``, oldest first (at most ``INBOX_LIMIT``, the newest)."""
    course_id = course.pk if isinstance(course, Course) else int(course)
    rows = list(
        ClassMessage.objects.unread()
        .filter(recipient_id=user.pk, course_id=course_id)
        .select_related("sender")
        .order_by("-created_at", "-pk")[:INBOX_LIMIT]
    )
    return rows[::-1]


@dataclass(frozen=True)
class SentMessage:
    """One send as its instructor sees it on the class view: how many have read it."""

    text: str
    created_at: datetime
    broadcast: bool
    recipients: int
    read: int
    to: str  # the recipient's username, for a message to one student


SENT_SHOWN = 10


def sent_messages(*, course: Course, sender: Any, limit: int = SENT_SHOWN) -> list[SentMessage]:
    """``sender``'s latest sends in ``course``, newest first, with their read counts (one query)."""
    from django.db.models import Count, Max

    rows = (
        ClassMessage.objects.filter(course=course, sender_id=sender.pk)
        .values("batch", "text", "broadcast", "created_at")
        .annotate(recipients=Count("id"), read=Count("read_at"), to=Max("recipient__username"))
        .order_by("-created_at", "-batch")[:limit]
    )
    return [
        SentMessage(
            text=row["text"],
            created_at=row["created_at"],
            broadcast=row["broadcast"],
            recipients=row["recipients"],
            read=row["read"],
            to=row["to"] or "",
        )
        for row in rows
    ]


def _recent_sends(sender: Any, now: datetime) -> int:
    return int(
        ClassMessage.objects.filter(sender=sender, created_at__gt=now - RATE_WINDOW).values("batch").distinct().count()
    )


@transaction.atomic
def send_class_message(*, sender: Any, course: Course, text: Any, to: Any) -> Sent:
    """Send ``text`` from ``sender`` to the student ``to`` (a user id) of ``course``'s class,
    or to the whole class when ``to`` is ``"all"``.

    The caller checked that ``sender`` teaches ``course``; the recipient must be in the class
    as ``sender`` sees it (``class_members``), else ``NotInClass``, whether or not such a user
    exists."""
    from courses.selectors import MAX_STUDENTS, class_members

    body = clean_text(text)
    now = timezone.now()
    # One send at a time per instructor, so two tabs cannot both pass the limit (a row lock
    # on PostgreSQL; SQLite serialises writers by itself).
    get_user_model().objects.select_for_update().filter(pk=sender.pk).first()
    if _recent_sends(sender, now) >= SENDS_PER_MINUTE:
        raise RateLimited(f"At most {SENDS_PER_MINUTE} messages a minute; wait a moment and send again.")
    members = class_members(course, viewer=sender)
    broadcast = to == "all"
    if broadcast:
        recipients = list(members.order_by("pk").values_list("pk", flat=True)[:MAX_STUDENTS])
        if not recipients:
            raise NotInClass("This class has no students yet.")
    else:
        try:
            wanted = int(str(to))
        except (TypeError, ValueError):
            raise NotInClass("No such student in this class.") from None
        if wanted == sender.pk or not members.filter(pk=wanted).exists():
            raise NotInClass("No such student in this class.")
        recipients = [wanted]
    batch = uuid.uuid4()
    rows = ClassMessage.objects.bulk_create(
        [
            ClassMessage(
                course=course,
                sender=sender,
                recipient_id=pk,
                text=body,
                broadcast=broadcast,
                batch=batch,
                created_at=now,
            )
            for pk in recipients
        ]
    )
    pushes = [
        (
            message_group(course.pk, row.recipient_id),
            {"type": "class.message", "message": _payload(row, sender, body, broadcast, now)},
        )
        for row in rows
    ]
    transaction.on_commit(lambda: _push(pushes))
    return Sent(batch=batch, recipients=len(recipients))


def _payload(row: ClassMessage, sender: Any, text: str, broadcast: bool, now: datetime) -> dict[str, Any]:
    if row.pk is None:  # a backend that returns no ids from bulk_create
        row = ClassMessage.objects.get(batch=row.batch, recipient_id=row.recipient_id)
    return {
        "id": row.pk,
        "text": text,
        "from": sender.get_full_name() or sender.get_username(),
        "broadcast": broadcast,
        "created": now.isoformat(),
    }


@transaction.atomic
def dismiss_class_message(*, user: Any, message_id: Any) -> bool:
    """Mark ``user``'s message ``message_id`` read. False when it is not theirs (or not a
    message at all); dismissing twice is fine."""
    try:
        pk = int(str(message_id))
    except (TypeError, ValueError):
        return False
    row = ClassMessage.objects.filter(pk=pk, recipient_id=user.pk).first()
    if row is None:
        return False
    if row.read_at is None:
        row.read_at = timezone.now()
        row.save(update_fields=["read_at"])
        group = message_group(row.course_id, user.pk)
        transaction.on_commit(lambda: _push([(group, {"type": "class.message_dismissed", "id": pk})]))
    return True


def _push(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Best effort: the rows are the truth, and a page that missed a push gets its unread
    messages when its socket (re)connects."""
    from courses.signals import class_message_pushes

    try:
        class_message_pushes.send(sender=None, pushes=messages)  # delivered by labs (labs/apps.py)
    except Exception:
        log.warning("class messages: %d pushes not delivered", len(messages), exc_info=True)
