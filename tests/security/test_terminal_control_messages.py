"""The terminal socket's JSON control messages are data: a value of the wrong type or size is
ignored, never a crash of the consumer.

Python's json accepts ``Infinity`` and numbers past any integer; ``int(float("inf"))`` raises
OverflowError, which the consumer did not catch in ``ack`` and ``resize``: the socket died with
a traceback in the log. A negative ``ack`` raised nothing but is not a byte count either.
Each case is followed by a round trip through the shell on the same socket (it still works)
and, for the acks, by a flood that must still pause at the watermark (flow control intact).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.labs.test_consumers import flood_until_paused, owners_terminal, read_until, resume_after_flood

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

HOSTILE_ACKS = [
    '{"type": "ack", "bytes": Infinity}',
    '{"type": "ack", "bytes": -Infinity}',
    '{"type": "ack", "bytes": NaN}',
    '{"type": "ack", "bytes": 1e400}',
    '{"type": "ack", "bytes": -1000000000000}',
    '{"type": "ack", "bytes": "4096"}',
    '{"type": "ack", "bytes": [1]}',
    '{"type": "ack", "bytes": true}',
    '{"type": "ack", "bytes": 12.5}',
    '{"type": "ack"}',
]
HOSTILE_RESIZES = [
    '{"type": "resize", "rows": Infinity, "cols": 80}',
    '{"type": "resize", "rows": 30, "cols": -Infinity}',
    '{"type": "resize", "rows": 1e400, "cols": NaN}',
]


async def test_hostile_control_messages_leave_the_terminal_working(runtime_socket: str) -> None:
    communicator = await owners_terminal()
    for i, text in enumerate(HOSTILE_ACKS + HOSTILE_RESIZES):
        await communicator.send_to(text_data=text)
        await communicator.send_to(bytes_data=f"echo alive-$(({i}+1000))\n".encode())
        await read_until(communicator, f"alive-{i + 1000}".encode())
    # the last hostile resize fell back to the defaults (24 rows, 80 columns), not to what was sent
    await communicator.send_to(bytes_data=b"echo size-$(stty size | tr ' ' x)-done\n")
    await read_until(communicator, b"size-24x80-done")  # a wrong size times out, showing it
    await communicator.disconnect()


async def test_hostile_acks_do_not_unlock_flow_control(runtime_socket: str, settings: Any) -> None:
    """None of the acks above counts as acknowledging anything: an unacknowledged flood
    still stops near the high watermark after them."""
    settings.TERMINAL_HIGH_WATERMARK = 64 * 1024
    settings.TERMINAL_LOW_WATERMARK = 16 * 1024
    communicator = await owners_terminal()
    sent_hostile = False

    async def hostile_acks() -> None:
        nonlocal sent_hostile
        sent_hostile = True
        for text in HOSTILE_ACKS:
            await communicator.send_to(text_data=text)

    received = await flood_until_paused(communicator, hostile_acks)
    assert sent_hostile
    await resume_after_flood(communicator, received)
    await communicator.disconnect()
