"""Strict readers for settings that come from the environment.

Every setting of the platform is read here, once, at start-up. A bad value
stops start-up with ``ImproperlyConfigured`` naming the variable, so an
operator never runs with a value silently ignored. ``NAME_FILE`` variants read
the value from a file (Docker/Kubernetes secrets), and win over ``NAME``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Every variable read through this module, with its default as documented:
# the README table and the compose test check against it.
READ: dict[str, str | None] = {}


def raw(name: str, default: str | None = None) -> str | None:
    READ.setdefault(name, default)
    file_var = f"{name}_FILE"
    path = os.environ.get(file_var)
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{file_var}: cannot read {path!r}: {exc.strerror}") from exc
    return os.environ.get(name, default)


def string(name: str, default: str) -> str:
    value = raw(name, default)
    assert value is not None
    return value


def boolean(name: str, default: bool) -> bool:
    value = raw(name, "1" if default else "0")
    assert value is not None
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}: expected one of 1/0, true/false, yes/no, on/off; got {value!r}")


def integer(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = raw(name, str(default))
    assert value is not None
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}: must be at most {maximum}, got {number}")
    return number


def duration(name: str, default: str) -> int:
    """Seconds from ``90``, ``90s``, ``15m``, ``2h`` or ``1d``."""
    value = raw(name, default)
    assert value is not None
    text = value.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    factor = 1
    if text and text[-1] in units:
        factor = units[text[-1]]
        text = text[:-1]
    try:
        seconds = int(text) * factor
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}: expected a duration such as 90, 90s, 15m, 2h or 1d; got {value!r}"
        ) from None
    if seconds <= 0:
        raise ImproperlyConfigured(f"{name}: must be positive, got {value!r}")
    return seconds


def size(name: str, default: str) -> int:
    """Bytes from ``1048576``, ``512K``, ``300M``, ``2G`` or ``1T`` (binary multiples, as
    Docker's ``--memory``; ``KiB``/``MiB``/``GiB``/``TiB`` and ``KB``... read the same)."""
    value = raw(name, default)
    assert value is not None
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    factor = 1
    if text and text[-1] in units:
        factor = units[text[-1]]
        text = text[:-1]
    try:
        number = int(text.strip()) * factor
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}: expected a size such as 1048576, 512K, 300M or 2G; got {value!r}"
        ) from None
    if number <= 0:
        raise ImproperlyConfigured(f"{name}: must be positive, got {value!r}")
    return number


def string_list(name: str, default: str) -> list[str]:
    value = raw(name, default)
    assert value is not None
    return [item.strip() for item in value.split(",") if item.strip()]


def url(name: str, default: str, *, schemes: set[str]) -> str:
    value = raw(name, default)
    assert value is not None
    parsed = urlparse(value)
    if parsed.scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ImproperlyConfigured(
            f"{name}: unsupported URL scheme {parsed.scheme!r} in {value!r}; expected one of {allowed}"
        )
    return value


def port(name: str, default: int) -> int:
    return integer(name, default, minimum=1, maximum=65535)
