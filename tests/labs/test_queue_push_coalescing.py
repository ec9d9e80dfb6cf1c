"""Queue places are pushed in coalesced batches (labs/queuepush.py), not once per change.

A class of N starting at once changes the provisioning queue with every claim; pushing every
waiting session its place on each change was O(N) messages per change, O(N²) over the herd.
Now a burst of changes within one interval costs at most two batches (the first change's,
and the one that ends the interval with the places as they are then), one message per waiting
session each, and the last places every page gets are the right ones.

Real channel layer (the run's Redis), real database commits (the trailing batch is sent
from a timer thread with its own connection), the claim step of lab_session_provision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django.utils import timezone

from labs import queuepush, services
from labs.models import LabSession
from tests.labs.test_provisioning_queue import built, starting

# long enough that a burst of claims surely falls within one interval on a loaded machine
INTERVAL = 3.0


@pytest.fixture(autouse=True)
def own_window(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A longer interval (keys of the test's own: tests/conftest.py), and a channel layer of
    this test's loop (channels_redis binds its receivers to one)."""
    monkeypatch.setattr(queuepush, "INTERVAL", INTERVAL)
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


class Pages:
    """A channel in the group of each session, read on the test's loop."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channels: dict[Any, str] = {}

    async def add(self, *sessions: LabSession) -> None:
        for s in sessions:
            self.channels[s.pk] = await self.layer.new_channel()
            await self.layer.group_add(s.group_name, self.channels[s.pk])

    async def queue_events(self, pk: Any, *, until: Any = None, wait: float = 0.5) -> list[dict[str, Any]]:
        """The lab.queue events of one session's page: until one equals ``until`` (waiting up
        to a generous bound for it), then whatever else comes within ``wait`` seconds."""
        got: list[dict[str, Any]] = []
        if until is not None:
            while not got or got[-1] != until:
                try:
                    message = await asyncio.wait_for(self.layer.receive(self.channels[pk]), INTERVAL + 20)
                except TimeoutError:
                    return got
                if message["type"] == "lab.queue":
                    got.append(message["queue"])
        while True:
            try:
                message = await asyncio.wait_for(self.layer.receive(self.channels[pk]), wait)
            except TimeoutError:
                return got
            if message["type"] == "lab.queue":
                got.append(message["queue"])


def _claim(session: LabSession) -> None:
    assert services._claim_for_provisioning(str(session.pk)) is not None


def _truth(session: LabSession) -> Any:
    session.refresh_from_db()
    return services.session_state(session)["queue"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("waiting,claimed", [(12, 6), (20, 20)])
async def test_a_burst_of_claims_costs_two_batches_not_one_per_claim(waiting: int, claimed: int) -> None:
    def setup() -> list[LabSession]:
        for seconds in (8, 10, 12):
            built(seconds)  # recent builds: every place carries an estimate, which must be right too
        now = timezone.now()
        return [starting(now - timedelta(seconds=100 - i)) for i in range(waiting)]

    sessions = await database_sync_to_async(setup)()
    pages = Pages()
    await pages.add(*sessions)

    def herd() -> None:  # the workers take the oldest, one after another
        for s in sessions[:claimed]:
            _claim(s)

    await database_sync_to_async(herd)()
    got: dict[Any, list[dict[str, Any]]] = {}
    for s in sessions[claimed:]:  # the places the pages are left with are the right ones
        truth = await database_sync_to_async(_truth)(s)
        assert truth is not None
        got[s.pk] = await pages.queue_events(s.pk, until=truth)
        assert got[s.pk] and got[s.pk][-1] == truth, (got[s.pk], truth)
    for s in sessions[:claimed]:
        got[s.pk] = await pages.queue_events(s.pk)
    total = sum(len(v) for v in got.values())
    # one message per claim per session behind it would be sum(waiting-1-i for i < claimed)
    per_change = sum(waiting - 1 - i for i in range(claimed))
    assert total <= 2 * waiting < per_change, (total, per_change)
    assert all(len(v) <= 2 for v in got.values()), got


@pytest.mark.django_db(transaction=True)
async def test_a_single_change_is_pushed_at_once_to_every_waiting_session() -> None:
    now = timezone.now()
    sessions = [await database_sync_to_async(starting)(now - timedelta(seconds=10 - i)) for i in range(4)]
    pages = Pages()
    await pages.add(*sessions[1:])
    await database_sync_to_async(services.lab_session_stop)(session=sessions[0])
    # the leading batch, and nothing after it (nothing changed): every session still waiting, its place
    for ahead, s in enumerate(sessions[1:]):
        assert await pages.queue_events(s.pk, wait=INTERVAL + 1 if ahead == 2 else 0.3) == [
            {"ahead": ahead, "estimate_seconds": None}
        ]


@pytest.mark.django_db(transaction=True)
async def test_a_window_whose_opener_died_delays_nothing_past_the_next_change() -> None:
    """A process that opened a window and died before its timer fired leaves the queue
    marked dirty; the next change after the window pushes the places as they are."""
    now = timezone.now()
    sessions = [await database_sync_to_async(starting)(now - timedelta(seconds=10 - i)) for i in range(3)]
    pages = Pages()
    await pages.add(sessions[2])
    await database_sync_to_async(queuepush._redis().set)(f"{queuepush.KEY_PREFIX}:dirty", 1)
    await database_sync_to_async(services.lab_session_stop)(session=sessions[0])
    got = await pages.queue_events(sessions[2].pk, until={"ahead": 1, "estimate_seconds": None})
    assert got == [{"ahead": 1, "estimate_seconds": None}]
