"""runtime/loops.py: the event-loop stall watch (``KUBELAB_STALL_MS``)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from runtime.loops import StallWatch


def _blocks_the_loop_for_a_while() -> None:
    time.sleep(0.4)  # a synchronous call on the loop, as a slow handler would be


def test_a_blocked_loop_is_reported_once_with_the_culprit_on_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.stall")

    async def main() -> None:
        watch = StallWatch("test", threshold=0.1, log=log)
        watch.start()
        await asyncio.sleep(0.05)
        _blocks_the_loop_for_a_while()
        await asyncio.sleep(0.1)  # the loop turns again: the heartbeat resumes
        watch.stop()

    with caplog.at_level(logging.WARNING, logger="test.stall"):
        asyncio.run(main())
    stalls = [r.getMessage() for r in caplog.records if "event loop silent" in r.getMessage()]
    assert len(stalls) == 1, stalls  # one report per stall, not one per check
    assert stalls[0].startswith("test: event loop silent for ")
    assert "_blocks_the_loop_for_a_while" in stalls[0]


def test_a_turning_loop_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.stall.quiet")

    async def main() -> None:
        watch = StallWatch("quiet", threshold=0.5, log=log)
        watch.start()
        for _ in range(20):
            await asyncio.sleep(0.01)
        watch.stop()

    with caplog.at_level(logging.WARNING, logger="test.stall.quiet"):
        asyncio.run(main())
    assert not [r for r in caplog.records if "event loop silent" in r.getMessage()]


@pytest.mark.parametrize(("value", "threshold"), [("", None), ("x", None), ("0", None), ("-5", None), ("80", 0.08)])
def test_it_is_off_unless_an_operator_sets_a_positive_threshold(
    monkeypatch: pytest.MonkeyPatch, value: str, threshold: float | None
) -> None:
    monkeypatch.setenv("KUBELAB_STALL_MS", value)
    watch = StallWatch.from_env("x")
    assert (watch.threshold if watch else None) == threshold
