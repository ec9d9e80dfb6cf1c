"""Health checks: ``HEALTHCHECK``, ``docker run --health-*``, ``State.Health``, as dockerd runs them.

Configuration (``Config.Healthcheck``, durations in nanoseconds): ``Test`` is ``["NONE"]``
(disabled), ``["CMD", arg...]``, ``["CMD-SHELL", command]`` (``/bin/sh -c``) or empty (the
image's); ``Interval``/``Timeout``/``StartPeriod`` 0 take dockerd's defaults (30s, 30s,
0s) and ``Retries`` 0 takes 3. A container's settings are merged field by field over its
image's, as dockerd's ``merge`` does.

A probe is run like dockerd's: an exec in the container with the container's user, environment
and working directory, ``Interval`` after the container started and then ``Interval`` after
the previous probe ended; it fails past ``Timeout`` (the process is killed; exit code -1 and
"Health check exceeded timeout"). Exit code 0 makes the container ``healthy`` and resets
``FailingStreak``; any other result adds to the streak (not during ``StartPeriod`` while still
``starting``), which reaching ``Retries`` makes it ``unhealthy``. The last 5 results are kept
in ``Log`` with at most 4096 bytes of output each; a status change is a
``health_status: <status>`` event.

Cost: waiting costs a timer entry (watch.Timers), nothing runs between probes. A probe's
processes run inside the container (its cgroup, namespaces, user), launched by ``runc exec``
in the sandbox's engine cgroup; at most ``MAX_RUNNING`` probes of one sandbox run at a time
(the others wait their turn) and intervals or timeouts under ``MIN_DURATION`` are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime import errors
from runtime.kernel.clock import micro_ts

SECOND = 10**9
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096
MAX_RUNNING = 4  # probes of one sandbox running at once
MIN_DURATION = SECOND  # dockerd allows 1ms; here a probe costs a runc exec: at most one a second

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"


def validate(cfg: Any) -> None:
    """Refuse a ``Healthcheck`` dockerd refuses (400, its messages) or this lab cannot run."""
    if cfg is None:
        return
    if not isinstance(cfg, dict):
        raise errors.BadRequest("Healthcheck must be a JSON object")
    test = cfg.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(x, str) for x in test)):
        raise errors.BadRequest("Healthcheck.Test must be a list of strings")
    if test:
        kind = test[0]
        if kind not in ("NONE", "CMD", "CMD-SHELL"):
            raise errors.BadRequest(f"unknown type in health check test: {kind!r} (NONE, CMD or CMD-SHELL)")
        if kind == "CMD-SHELL" and len(test) != 2:
            raise errors.BadRequest("CMD-SHELL health check takes exactly one command string")
        if kind == "CMD" and len(test) < 2:
            raise errors.BadRequest("CMD health check needs a command")
    for key, what in (("Interval", "Interval"), ("Timeout", "Timeout"), ("StartPeriod", "StartPeriod")):
        value = cfg.get(key) or 0
        if not isinstance(value, int):
            raise errors.BadRequest(f"Healthcheck.{key} must be an integer (nanoseconds)")
        if value < 0:
            raise errors.BadRequest(f"{what} in Healthcheck cannot be negative")
        if value and value < 1_000_000:
            raise errors.BadRequest(f"{what} in Healthcheck cannot be less than 1ms")
        if key != "StartPeriod" and value and value < MIN_DURATION:
            raise errors.BadRequest(
                f"{what} in Healthcheck below {MIN_DURATION // SECOND}s is not available in this lab: each probe "
                "is a process started in your container, at most once a second"
            )
    retries = cfg.get("Retries") or 0
    if not isinstance(retries, int):
        raise errors.BadRequest("Healthcheck.Retries must be an integer")
    if retries < 0:
        raise errors.BadRequest("Retries in Healthcheck cannot be negative")


def merge(user: dict[str, Any] | None, image: dict[str, Any] | None) -> dict[str, Any] | None:
    """dockerd's merge of a container's Healthcheck over its image's."""
    if user is None:
        return dict(image) if image else None
    out = dict(user)
    if image:
        if not out.get("Test"):
            out["Test"] = image.get("Test")
        for key in ("Interval", "Timeout", "StartPeriod", "Retries"):
            if not out.get(key):
                out[key] = image.get(key, 0)
    return out


@dataclass(frozen=True)
class Probe:
    argv: list[str]
    interval: float  # seconds
    timeout: float
    start_period: float
    retries: int


def probe(cfg: dict[str, Any] | None) -> Probe | None:
    """What to run and when, or None (no health check, or ``NONE``)."""
    if not cfg:
        return None
    test = list(cfg.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    return Probe(
        argv=argv,
        interval=(cfg.get("Interval") or DEFAULT_INTERVAL) / SECOND,
        timeout=(cfg.get("Timeout") or DEFAULT_TIMEOUT) / SECOND,
        start_period=(cfg.get("StartPeriod") or 0) / SECOND,
        retries=cfg.get("Retries") or DEFAULT_RETRIES,
    )


@dataclass
class Health:
    """``State.Health``."""

    status: str = STARTING
    failing_streak: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": list(self.log)}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Health | None:
        if not d:
            return None
        return cls(str(d.get("Status") or STARTING), int(d.get("FailingStreak") or 0), list(d.get("Log") or []))

    def record(self, *, start: float, end: float, exit_code: int, output: bytes, p: Probe, started_at: float) -> bool:
        """Add one probe's result; True when the status changed."""
        before = self.status
        text = output[:MAX_OUTPUT].decode("utf-8", "replace")
        self.log.append({"Start": micro_ts(start), "End": micro_ts(end), "ExitCode": exit_code, "Output": text})
        del self.log[:-MAX_LOG]
        if exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        elif not (self.status == STARTING and start - started_at < p.start_period):
            self.failing_streak += 1
            if self.failing_streak >= p.retries:
                self.status = UNHEALTHY
        return self.status != before


def ps_suffix(h: Health | None) -> str:
    """What ``docker ps`` shows after "Up ...": " (healthy)", " (health: starting)"..."""
    if h is None:
        return ""
    if h.status == STARTING:
        return " (health: starting)"
    return f" ({h.status})"
