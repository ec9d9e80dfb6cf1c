"""What every check type shares: the target it inspects, its outcome, the
registry, and the cleaning of output that a student controls.

Output is hostile input: it may be megabytes, binary, full of ANSI escapes or
HTML. ``clean_output`` decodes it leniently, drops escape sequences, control
and bidi-override characters and caps its size; templates escape what is left
and the page inserts it with ``textContent``, never as HTML.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from courses.content import CheckProblems, declare_check_type
from runtime import client as runtime_client

if TYPE_CHECKING:
    from runtime.backends import SandboxBackend

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0
OUTPUT_LIMIT = 4000  # characters kept per check
EXEC_CAPTURE = 256 * 1024  # bytes runtimed keeps of one stream
START_RETRIES = 3

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]"  # two-character escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def clean_output(data: bytes | str | None, limit: int = OUTPUT_LIMIT) -> str:
    """``data`` as safe, bounded plain text (newlines and tabs kept)."""
    if not data:
        return ""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    # Bound the work before the regexes run on it.
    if len(text) > limit * 4:
        text = text[: limit * 2] + "\n" + text[-limit * 2 :]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ANSI.sub("", text)
    text = _CONTROL.sub("", text)
    if len(text) > limit:
        half = limit // 2
        cut = len(text) - 2 * half
        text = f"{text[:half]}\n… {cut} characters cut …\n{text[-half:]}"
    return text


class CheckError(Exception):
    """The check definition is wrong (an author's mistake): reported as ``error``."""


SANDBOX_GONE = "Your sandbox is gone (it was stopped or the server restarted). Reset the lab and try again."


class TargetUnavailable(Exception):
    """What the check inspects is gone or unreachable (sandbox removed, engine down)."""


class InfrastructureError(Exception):
    """A platform service failed (runtimed unreachable): the task may retry."""


@dataclass
class Outcome:
    passed: bool
    output: str = ""
    timed_out: bool = False


@dataclass
class Target:
    """Where checks look: a sandbox (through runtimed), a Docker engine, a cluster.

    The sandbox is reached through ``backend`` (grader/services.py: the session's own
    ``runtime.backends`` backend, as the web tier's, acting with the grader's sandbox token;
    the Target closes it) or, without one (tests, the CLI), a ``runtime.client.Client`` of
    its own on ``runtime_socket``."""

    sandbox_id: str | None = None
    backend: SandboxBackend | None = field(default=None, repr=False)
    close_backend: bool = field(default=True, repr=False)  # False: the process's shared backend
    runtime_socket: str | None = None
    # a sandbox token for ``sandbox_id`` with the grader's operations (runtime.auth); None: the
    # client's own default ($RUNTIME_TOKEN), as in tests and the CLI
    runtime_token: str | None = field(default=None, repr=False)
    # the CA of a lab node's runtimed reached over TLS (SANDBOX_BACKEND=kubernetes), else None
    runtime_ca: str | None = field(default=None, repr=False)
    docker_url: str | None = None
    docker_token: str | None = field(default=None, repr=False)
    kubeconfig: str | None = None
    kube_context: str | None = None
    # set when the sandbox was already gone as the grading began (what checks then report)
    gone: str | None = None
    _runtime: runtime_client.Client | None = field(default=None, repr=False)

    def runtime(self) -> runtime_client.Client | SandboxBackend:
        if self.gone:
            raise TargetUnavailable(self.gone)
        if self.sandbox_id and self.backend is not None:
            return self.backend
        if not self.sandbox_id or not self.runtime_socket:
            raise TargetUnavailable("This check needs a running sandbox, and there is none.")
        if self._runtime is None:
            self._runtime = runtime_client.Client(self.runtime_socket, token=self.runtime_token, ca=self.runtime_ca)
        return self._runtime

    def exec(self, argv: list[str], *, timeout: float, cwd: str = "/root") -> runtime_client.ExecResult:
        from runtime import errors as runtime_errors

        try:
            for attempt in range(START_RETRIES + 1):
                try:
                    return self.runtime().exec(
                        self.sandbox_id or "", argv, timeout=timeout, cwd=cwd, max_output=EXEC_CAPTURE
                    )
                except runtime_errors.RuntimeError as exc:
                    # The command never started (runtimed races an exec against its cleanup
                    # of exec cgroups under concurrency): running it again is safe.
                    if type(exc) is not runtime_errors.RuntimeError or "could not start" not in str(exc):
                        raise
                    if attempt == START_RETRIES:
                        raise
                    time.sleep(0.02 * (attempt + 1))
            raise AssertionError("unreachable")
        except runtime_errors.SandboxNotFound as exc:
            raise TargetUnavailable(SANDBOX_GONE) from exc
        except runtime_errors.NotAvailable as exc:
            raise InfrastructureError(f"The sandbox service is unreachable: {exc}") from exc
        except runtime_errors.RuntimeError as exc:
            raise InfrastructureError(f"The sandbox service failed: {exc}") from exc

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
        if self.backend is not None:
            if self.close_backend:
                self.backend.close()
            self.backend = None


CheckFunc = Callable[[Mapping[str, Any], Target, float], Outcome]

REGISTRY: dict[str, CheckFunc] = {}


def register(
    name: str,
    *,
    required: Iterable[str] = (),
    optional: Iterable[str] = (),
    service: str | None = None,
    validate: Callable[[Mapping[str, Any]], CheckProblems] | None = None,
) -> Callable[[CheckFunc], CheckFunc]:
    """Check type ``name``, declared once where it is implemented: its fields (besides
    ``courses.content.COMMON_CHECK_FIELDS``: type, title, name, hint, timeout), the sandbox
    service it needs, and ``validate`` (what it would refuse at grading, said when a course is
    imported: ``(field or None, message)`` pairs). Content import learns the type from here."""

    def add(func: CheckFunc) -> CheckFunc:
        REGISTRY[name] = func
        declare_check_type(name, required=required, optional=optional, service=service, validate=validate)
        return func

    return add


def check_timeout(spec: Mapping[str, Any]) -> float:
    raw = spec.get("timeout", DEFAULT_TIMEOUT)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise CheckError(f"timeout must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise CheckError("timeout must be positive")
    return min(value, MAX_TIMEOUT)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def compile_regex(pattern: Any, what: str) -> re.Pattern[str]:
    try:
        return re.compile(str(pattern), re.MULTILINE)
    except re.error as exc:
        raise CheckError(f"{what}: invalid regular expression {pattern!r}: {exc}") from None


def shorten(value: Any, limit: int = 200) -> str:
    text = clean_output(str(value), limit)
    return text
