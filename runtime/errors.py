"""The runtime's error hierarchy.

Every error carries a message a person can act on. The daemon maps each class
to an HTTP status and the client maps it back, so a caller on the far side of
the socket catches the same class it would catch in-process.
"""

from __future__ import annotations

import builtins


class RuntimeError(builtins.RuntimeError):  # noqa: A001 - the hierarchy's root, by design
    """Base of every error the runtime raises on purpose."""

    status = 500
    code = "runtime_error"


class BadRequest(RuntimeError):
    status = 400
    code = "bad_request"


class NotAvailable(RuntimeError):
    """A feature that exists in the API but is not available (yet, or on this host)."""

    status = 501
    code = "not_available"


class Unreachable(NotAvailable):
    """runtimed could not be reached, or closed the connection before answering (it died or
    is restarting): nothing is known about the request's effect; a caller whose request is
    safe to repeat (a read, a check's exec) may try again once it is back."""

    status = 503
    code = "unreachable"


class SandboxNotFound(RuntimeError):
    status = 404
    code = "sandbox_not_found"


class SessionNotFound(RuntimeError):
    status = 404
    code = "session_not_found"


class ImageNotFound(RuntimeError):
    status = 404
    code = "image_not_found"


class Unauthorized(RuntimeError):
    """No credential, or one that is not runtimed's (forged, expired): ``runtime.auth``."""

    status = 401
    code = "unauthorized"


class Forbidden(RuntimeError):
    """A valid credential that does not cover this sandbox or this operation."""

    status = 403
    code = "forbidden"


class LimitExceeded(RuntimeError):
    status = 429
    code = "limit_exceeded"


class Conflict(RuntimeError):
    status = 409
    code = "conflict"


class ExecTimeout(RuntimeError):
    status = 504
    code = "exec_timeout"


ERRORS: dict[str, type[RuntimeError]] = {
    cls.code: cls
    for cls in (
        RuntimeError,
        BadRequest,
        NotAvailable,
        Unreachable,
        SandboxNotFound,
        SessionNotFound,
        ImageNotFound,
        Unauthorized,
        Forbidden,
        LimitExceeded,
        Conflict,
        ExecTimeout,
    )
}
