"""Authentication: bearer tokens, as kube-apiserver's token file and TokenRequest authenticators.

A cluster's tokens.json maps the SHA-256 of each token to who it stands for (a user and its
groups, or a ServiceAccount) and its expiry, if any. It is shared by the serving process and
``mint-token`` processes: writes are read-modify-write under the flock of tokens.lock
(``write_token``), and a server re-reads the file when a token it does not know shows up.
Impersonation, which needs RBAC, is ``Cluster.impersonate`` (cluster.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.kube.meta import User

if TYPE_CHECKING:
    from runtime.kube.apiserver.store import Store


def write_token(directory: Path, entry: dict[str, Any]) -> str:
    """Mint a bearer token for ``entry`` ({user, groups, sa?, exp?}) in a cluster's tokens.json.

    Only the token's SHA-256 is kept. The file is shared by the serving process and
    ``mint-token`` processes, so this is a read-modify-write under a lock (tokens.lock);
    servers re-read the file when a token they do not know shows up. Expired tokens are
    dropped whenever a new one is minted.
    """
    token = secrets.token_urlsafe(32)
    with open(directory / "tokens.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tokens: dict[str, dict[str, Any]] = json.loads((directory / "tokens.json").read_text())
        now = time.time()
        tokens = {k: v for k, v in tokens.items() if float(v.get("exp", now + 1)) > now}
        tokens[hashlib.sha256(token.encode()).hexdigest()] = entry
        tmp = directory / "tokens.json.tmp"
        tmp.write_text(json.dumps(tokens))
        tmp.replace(directory / "tokens.json")
    return token


class TokenAuthenticator:
    """The bearer-token side of a ``Cluster`` (which sets these attributes in its __init__)."""

    dir: Path
    store: Store
    tokens: dict[str, dict[str, Any]]
    _tokens_stamp: tuple[int, int]

    def authenticate(self, token: str, now: float | None = None) -> User | None:
        """The user a bearer token stands for; None (401) if unknown or past its expiry."""
        h = hashlib.sha256(token.encode()).hexdigest()
        info = self.tokens.get(h)
        if info is None and self._reload_tokens():  # minted by another process (``mint-token``)
            info = self.tokens.get(h)
        if info is None:
            return None
        if "exp" in info and (time.time() if now is None else now) >= float(info["exp"]):
            return None
        if "sa" in info:
            ns, name = info["sa"]
            if self.store.get("serviceaccounts", ns, name) is None:
                return None
            groups: tuple[str, ...] = ("system:serviceaccounts", f"system:serviceaccounts:{ns}")
            return User(f"system:serviceaccount:{ns}:{name}", (*groups, "system:authenticated"))
        return User(info["user"], (*info.get("groups", []), "system:authenticated"))

    def add_token(
        self, user: str, groups: list[str], sa: tuple[str, str] | None = None, expires: float | None = None
    ) -> str:
        """Mint a bearer token (see ``write_token``), with its expiry (unix time) if any."""
        entry: dict[str, Any] = {"user": user, "groups": groups}
        if sa is not None:
            entry["sa"] = list(sa)
        if expires is not None:
            entry["exp"] = expires
        token = write_token(self.dir, entry)
        self._reload_tokens()
        return token

    def _reload_tokens(self) -> bool:
        """Re-read tokens.json if it changed since last read; True if it was re-read."""
        try:
            st = (self.dir / "tokens.json").stat()
        except FileNotFoundError:
            return False
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._tokens_stamp:
            return False
        self.tokens = json.loads((self.dir / "tokens.json").read_text())
        self._tokens_stamp = stamp
        return True
