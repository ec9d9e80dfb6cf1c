"""Who may do what through runtimed's API: capabilities scoped to one sandbox.

Wall 3 of ARCHITECTURE.md ("runtimed's API"): reaching runtimed's socket is not
enough to act. Every request carries ``Authorization: Bearer <token>``, and the
token says what its holder may do:

admin token
    A random secret held by runtimed and by the provisioning worker only (``make
    run`` hands it to the worker's environment and to no other process). It may do
    everything: create, list, stop and remove sandboxes, manage images, and mint
    sandbox tokens. It never reaches the web tier.

sandbox token
    ``kls1.<claims>.<mac>``: an HMAC-SHA256 over JSON claims ``{"sb": sandbox id,
    "ops": [...], "exp": unix time}`` with runtimed's signing key (kept in
    ``<root>/auth/signing.key``, 0600, so tokens outlive a runtimed restart as the
    sandboxes do). It is good for one sandbox and the operations listed, until it
    expires. The provisioning worker mints one for the web tier when a lab session
    becomes ready (role ``web``: terminal, preview, files, validate, read) and the grader mints a
    short one per grading (role ``grader``: exec, kubeconfig, docker, read). A web
    process made to send any request for another sandbox (an SSRF, a confused
    proxy) is refused by runtimed itself: 403.

The operations are few and coarse on purpose; each route of the daemon names the
one it needs (``runtime.daemon``), and the host side of each sandbox's Docker
socket checks ``docker`` the same way (``runtime.dockerapi.service``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runtime import errors

# Operations on one sandbox. ``admin`` is not among them: it is the admin token.
READ = "read"  # GET the sandbox, its stats
TOUCH = "touch"  # record activity
TERMINAL = "terminal"  # PTY sessions: create, list, attach, resize, remove
PREVIEW = "preview"  # the port preview proxy into the sandbox's network
EXEC = "exec"  # run a command (graders' checks)
KUBECONFIG = "kubeconfig"  # the lab cluster's admin kubeconfig, named users' kubeconfigs
DOCKER = "docker"  # the sandbox's Docker Engine API from the host
# The lab editor: list, read and write files under the sandbox's /root. Its own operation,
# not TERMINAL: no more power than a shell (a terminal can write the same files), but a
# credential that may only run commands (a grader's) or only watch need not carry it.
FILES = "files"
# The lab editor's validation as you type: a dry run of manifests against the sandbox's own
# cluster (runtime/kube/apiserver/dryrun.py). Not KUBECONFIG: the web tier gets no cluster credential,
# only answers to "would this apply?", and nothing is ever stored through it.
VALIDATE = "validate"
OPERATIONS = frozenset({READ, TOUCH, TERMINAL, PREVIEW, EXEC, KUBECONFIG, DOCKER, FILES, VALIDATE})

ROLES: dict[str, frozenset[str]] = {
    # the web tier: what a student (or an observing instructor) does through a browser
    "web": frozenset({READ, TOUCH, TERMINAL, PREVIEW, FILES, VALIDATE}),
    # a grading worker: what checks need
    "grader": frozenset({READ, TOUCH, EXEC, KUBECONFIG, DOCKER}),
}

SANDBOX_PREFIX = "kls1."
MAX_TTL = 7 * 24 * 3600  # no sandbox token lives longer than a week, whatever is asked
KEY_BYTES = 32


Unauthorized = errors.Unauthorized
Forbidden = errors.Forbidden


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Grant:
    """What one request's credential allows."""

    admin: bool
    sandbox: str | None = None
    ops: frozenset[str] = frozenset()
    expires: int | None = None

    def allows(self, op: str, sandbox: str | None) -> bool:
        if self.admin:
            return True
        # bytes: compare_digest refuses non-ASCII text with a TypeError (a 500, not a 403)
        mine = (self.sandbox or "").encode("utf-8", "surrogateescape")
        asked = (sandbox or "").encode("utf-8", "surrogateescape")
        return sandbox is not None and hmac.compare_digest(asked, mine) and op in self.ops


class Authority:
    """Mints and checks runtimed's credentials (in-process; no I/O after construction)."""

    def __init__(self, key: bytes, admin_token: str) -> None:
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        if len(admin_token) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        self._key = key
        self._admin = admin_token

    # -- minting ---------------------------------------------------------------------------
    def mint(self, sandbox: str, ops: Iterable[str], ttl_seconds: int, *, now: float | None = None) -> str:
        wanted = sorted(set(ops))
        unknown = [op for op in wanted if op not in OPERATIONS]
        if unknown or not wanted:
            raise errors.BadRequest(
                f"unknown operations {unknown}; a sandbox token may carry {sorted(OPERATIONS)}"
                if unknown
                else "a sandbox token needs at least one operation"
            )
        if not sandbox:
            raise errors.BadRequest("a sandbox token names one sandbox")
        if not 1 <= ttl_seconds <= MAX_TTL:
            raise errors.BadRequest(f"ttl_seconds must be 1..{MAX_TTL}, not {ttl_seconds}")
        exp = int((time.time() if now is None else now) + ttl_seconds)
        claims = json.dumps({"sb": sandbox, "ops": wanted, "exp": exp}, separators=(",", ":"), sort_keys=True)
        body = _b64(claims.encode())
        return f"{SANDBOX_PREFIX}{body}.{self._mac(body)}"

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, (SANDBOX_PREFIX + body).encode(), hashlib.sha256).digest())

    # -- checking --------------------------------------------------------------------------
    def grant(self, authorization: str | None, *, now: float | None = None) -> Grant:
        """The grant of an ``Authorization`` header's value; raises ``Unauthorized``."""
        if not authorization:
            raise Unauthorized("runtimed needs a credential: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("runtimed takes 'Authorization: Bearer <token>' only")
        if hmac.compare_digest(token.encode(), self._admin.encode()):
            return Grant(admin=True)
        if not token.startswith(SANDBOX_PREFIX):
            raise Unauthorized("the token is not a runtimed credential")
        body, dot, mac = token[len(SANDBOX_PREFIX) :].partition(".")
        if not dot or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            raise Unauthorized("the token's signature does not match (forged, or signed by another runtimed)")
        try:
            claims = json.loads(_unb64(body))
            sandbox, ops, exp = str(claims["sb"]), frozenset(claims["ops"]), int(claims["exp"])
        except (ValueError, KeyError, TypeError) as e:
            raise Unauthorized(f"the token's claims are malformed: {e}") from None
        if exp < (time.time() if now is None else now):
            raise Unauthorized("the token has expired; the lab page fetches a new one when it reloads")
        return Grant(admin=False, sandbox=sandbox, ops=ops & OPERATIONS, expires=exp)

    def check(self, authorization: str | None, op: str, sandbox: str | None) -> Grant:
        """Raise unless the credential allows ``op`` (``"admin"`` for admin-only) on ``sandbox``."""
        grant = self.grant(authorization)
        if grant.admin:
            return grant
        if op == "admin":
            raise Forbidden("this operation needs runtimed's admin credential, which only provisioning holds")
        if not grant.allows(op, sandbox):
            if sandbox is None or grant.sandbox != sandbox:
                raise Forbidden("the token is for another sandbox")
            raise Forbidden(f"the token does not allow {op!r} (it allows {sorted(grant.ops)})")
        return grant


# -- the secrets on disk ------------------------------------------------------------------------
def _read_or_create(path: Path, make: bytes) -> bytes:
    """``path``'s bytes, or ``make`` written there first (0600, never through a link)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o077:
                os.fchmod(fd, 0o600)
            return os.read(fd, 4096)
        finally:
            os.close(fd)
    try:
        os.write(fd, make)
    finally:
        os.close(fd)
    return make


def signing_key(root: Path) -> bytes:
    """runtimed's HMAC key, made once per ``--root`` and kept."""
    keys = root / "auth"
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys.chmod(0o700)
    key = _read_or_create(keys / "signing.key", secrets.token_bytes(KEY_BYTES))
    if len(key) < 16:
        raise errors.Conflict(f"{root / 'auth' / 'signing.key'} is too short; remove it and restart runtimed")
    return key


def admin_token(path: Path, *, given: str | None = None) -> str:
    """The admin token: ``given`` (from the operator's environment), else the one kept at
    ``path`` (made on first start, 0600 root: the CLI as root reads it from there)."""
    if given:
        token = given.strip()
        if len(token) < 16:
            raise errors.BadRequest("RUNTIME_ADMIN_TOKEN must be at least 16 characters")
        return token
    return _read_or_create(path, secrets.token_urlsafe(32).encode()).decode().strip()


def default_admin_token_path(socket_path: str | os.PathLike[str]) -> Path:
    """Where runtimed keeps the admin token it made, beside its socket."""
    return Path(f"{os.fspath(socket_path)}.admin-token")


def read_admin_token(socket_path: str | os.PathLike[str]) -> str | None:
    """The admin token kept beside ``socket_path``, when this process may read it (root)."""
    try:
        return default_admin_token_path(socket_path).read_text().strip() or None
    except OSError:
        return None
