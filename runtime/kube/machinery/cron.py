"""Cron schedules as CronJobs use them: five fields (minute hour day-of-month month day-of-week),
``*``, lists, ranges, steps, month/day names and the ``@hourly``-style macros; times in UTC
unless the CronJob names a timeZone."""

from __future__ import annotations

import datetime
import zoneinfo

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NAMES = {
    3: {
        m: i + 1
        for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


class CronError(ValueError):
    pass


def _field(text: str, idx: int) -> set[int]:
    lo, hi = _BOUNDS[idx]
    out: set[int] = set()
    for part in text.lower().split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/", 1)
            if not s.isdigit() or int(s) == 0:
                raise CronError(f"invalid step in {text!r}")
            step = int(s)
        if part in ("*", "?"):
            a, b = lo, hi
        elif "-" in part:
            x, y = part.split("-", 1)
            a, b = _num(x, idx), _num(y, idx)
        else:
            a = _num(part, idx)
            b = hi if step > 1 else a
        if idx == 4 and b == 7:
            b = 6
            out.add(0)
        if not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise CronError(f"value out of range in {text!r}")
        out.update(range(a, b + 1, step))
    return out


def _num(s: str, idx: int) -> int:
    if s in _NAMES.get(idx, {}):
        return _NAMES[idx][s]
    if not s.isdigit():
        raise CronError(f"failed to parse int from {s}")
    v = int(s)
    return 0 if idx == 4 and v == 7 else v


class Schedule:
    def __init__(self, spec: str, tz: str | None = None) -> None:
        text = _MACROS.get(spec.strip(), spec.strip())
        parts = text.split()
        if len(parts) != 5:
            raise CronError(f"Expected exactly 5 fields, found {len(parts)}: {spec}")
        self.minute, self.hour, self.dom, self.month, self.dow = (_field(p, i) for i, p in enumerate(parts))
        self.dom_star = parts[2] in ("*", "?")
        self.dow_star = parts[4] in ("*", "?")
        self.tz = zoneinfo.ZoneInfo(tz) if tz else datetime.UTC

    def matches(self, t: datetime.datetime) -> bool:
        lt = t.astimezone(self.tz)
        if lt.minute not in self.minute or lt.hour not in self.hour or lt.month not in self.month:
            return False
        dom_ok = lt.day in self.dom
        dow_ok = (lt.isoweekday() % 7) in self.dow
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def next_after(self, after: datetime.datetime) -> datetime.datetime | None:
        """The first scheduled minute later than ``after`` (UTC), looking at most a year
        ahead (None: no such minute, e.g. ``0 0 30 2 *``). Day by day, then the schedule's own
        hours and minutes: a few hundred steps at most, cheap enough to run after a write."""
        start = (after.astimezone(self.tz) + datetime.timedelta(minutes=1)).replace(second=0, microsecond=0)
        hours, minutes = sorted(self.hour), sorted(self.minute)
        day = start.date()
        for _ in range(367):
            if day.month in self.month:
                dom_ok = day.day in self.dom
                dow_ok = (day.isoweekday() % 7) in self.dow
                if (dom_ok and dow_ok) if (self.dom_star or self.dow_star) else (dom_ok or dow_ok):
                    for h in hours:
                        for m in minutes:
                            t = datetime.datetime(day.year, day.month, day.day, h, m, tzinfo=self.tz)
                            if t >= start and self.matches(t):  # matches: a DST gap's minute is skipped
                                return t.astimezone(datetime.UTC)
            day += datetime.timedelta(days=1)
        return None

    def last_between(self, after: datetime.datetime, now: datetime.datetime) -> datetime.datetime | None:
        """The latest scheduled minute in (after, now], looking back at most a week."""
        t = now.replace(second=0, microsecond=0)
        floor = max(after, now - datetime.timedelta(days=7))
        while t > floor:
            if self.matches(t):
                return t
            t -= datetime.timedelta(minutes=1)
        return None
