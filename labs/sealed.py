"""runtimed credentials sealed at rest (issue #12).

The tokens a lab session holds for runtimed (``LabSession.runtime_token`` and
``grader_token``) are sent to runtimed, so they cannot be hashed; they are encrypted in the
database with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key derived
from ``SECRET_KEY`` (a database-only leak yields nothing usable). ``SECRET_KEY_FALLBACKS``
still open what older keys sealed. The empty string (no token yet) stays empty, so
"has a token" queries keep working.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

log = logging.getLogger(__name__)

PREFIX = "sealed1:"
LABEL = b"kubelab labs.sealed runtimed tokens v1\0"


def _fernet(secret: str | bytes) -> Fernet:
    raw = secret.encode() if isinstance(secret, str) else secret
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(LABEL + raw).digest()))


def _keys() -> MultiFernet:
    fallbacks = list(getattr(settings, "SECRET_KEY_FALLBACKS", []) or [])
    return MultiFernet([_fernet(settings.SECRET_KEY), *(_fernet(k) for k in fallbacks)])


def seal(value: str) -> str:
    if not value:
        return ""
    return PREFIX + _keys().encrypt(value.encode()).decode("ascii")


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def unseal(stored: str) -> str:
    """The token; "" (no usable token: the session must be provisioned again) when it was
    sealed under a key this site no longer has, or was never sealed (written around the
    field), with a warning in the log."""
    if not stored:
        return ""
    if not is_sealed(stored):
        log.warning("a runtimed token in the database is not sealed: ignored")
        return ""
    try:
        return _keys().decrypt(stored[len(PREFIX) :].encode("ascii")).decode()
    except (InvalidToken, UnicodeError, ValueError):
        log.warning("a runtimed token in the database was sealed under another SECRET_KEY: ignored")
        return ""


class SealedTextField(models.TextField):
    """A ``TextField`` stored sealed (``seal``) and read back in the clear (``unseal``)."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return value if value is None else unseal(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return value if value is None else seal(str(value))
