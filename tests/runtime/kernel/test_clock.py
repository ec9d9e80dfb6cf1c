"""runtime/kernel/clock.py: the formats Kubernetes and Docker clients read, byte for byte.

Expected strings are the wire forms of the upstream types (Go's ``time.RFC3339`` for
metav1.Time, ``2006-01-02T15:04:05.000000Z07:00`` for metav1.MicroTime, ``time.RFC3339Nano``
for ``docker cp``'s stat), written out by hand, not computed with the module under test.
"""

from __future__ import annotations

import datetime
import re
import time

import pytest

from runtime.kernel import clock

# 2006-01-02T15:04:05Z (Go's reference time, in UTC) plus 250 ms
REF = datetime.datetime(2006, 1, 2, 15, 4, 5, tzinfo=datetime.UTC).timestamp()


def test_metav1_time_is_to_the_second_fraction_dropped() -> None:
    assert clock.format_ts(REF) == "2006-01-02T15:04:05Z"
    assert clock.format_ts(REF + 0.999) == "2006-01-02T15:04:05Z"
    aware = datetime.datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=datetime.UTC)
    assert clock.format_ts(aware) == "2026-12-07T01:02:03Z"


def test_now_ts_is_now_as_metav1_time() -> None:
    before = int(time.time())
    text = clock.now_ts()
    after = int(time.time())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    parsed = clock.parse_time(text)
    assert parsed is not None and before <= parsed.timestamp() <= after


def test_micro_time_has_six_digits_always() -> None:
    assert clock.micro_ts(REF) == "2006-01-02T15:04:05.000000Z"
    assert clock.micro_ts(REF + 0.25) == "2006-01-02T15:04:05.250000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", clock.micro_ts())


def test_rfc3339_nano_trims_trailing_zeros_and_whole_seconds() -> None:
    assert clock.nano_ts(REF) == "2006-01-02T15:04:05Z"
    assert clock.nano_ts(REF + 0.25) == "2006-01-02T15:04:05.25Z"
    assert clock.nano_ts(REF + 0.000001) == "2006-01-02T15:04:05.000001Z"


def test_parse_time_is_strict() -> None:
    assert clock.parse_time(None) is None and clock.parse_time("") is None
    assert clock.parse_time("2006-01-02T15:04:05Z") == datetime.datetime(2006, 1, 2, 15, 4, 5, tzinfo=datetime.UTC)
    for bad in ("2006-01-02T15:04:05.5Z", "2006-01-02 15:04:05", "yesterday"):
        with pytest.raises(ValueError):
            clock.parse_time(bad)


def test_parse_micro_time_is_lenient() -> None:
    assert clock.parse_micro_time("2006-01-02T15:04:05.250000Z") == REF + 0.25
    assert clock.parse_micro_time("2006-01-02T15:04:05Z") == REF
    assert clock.parse_micro_time("not a time") is None
    assert clock.parse_micro_time(None) is None


def test_parse_epoch_reads_docker_and_client_times() -> None:
    assert clock.parse_epoch("2006-01-02T15:04:05.250000Z") == REF + 0.25
    # nanoseconds (Docker's own, a client's sinceTime): digits past microseconds dropped
    assert clock.parse_epoch("2006-01-02T15:04:05.123456789Z") == pytest.approx(REF + 0.123456, abs=1e-6)
    assert clock.parse_epoch("2006-01-02T17:04:05+02:00") == REF
    assert clock.parse_epoch("garbage") == 0.0 and clock.parse_epoch("") == 0.0


def test_engine_time_converts_docker_times_to_metav1() -> None:
    assert clock.engine_time("2006-01-02T15:04:05.123456789Z") == "2006-01-02T15:04:05Z"
    assert clock.engine_time("0001-01-01T00:00:00Z") is None
    assert clock.engine_time("") is None


@pytest.mark.parametrize("t", [REF, REF + 0.5, REF + 0.123456, 1_765_000_000.000001])
def test_round_trips(t: float) -> None:
    assert clock.parse_micro_time(clock.micro_ts(t)) == pytest.approx(t, abs=1e-6)
    assert clock.parse_epoch(clock.nano_ts(t)) == pytest.approx(t, abs=1e-6)
    parsed = clock.parse_time(clock.format_ts(t))
    assert parsed is not None and parsed.timestamp() == int(t)
