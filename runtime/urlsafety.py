"""Paths from request data that must stay data: the port preview's path into a student's app.

A browser asks the platform for ``/labs/<session>/port/<p>/<path>``; ``<path>`` is
the student's (or anyone's) to choose, and it ends up in a URL that an HTTP client
builds, parses and normalises on its way to the sandbox. Issue #12 was exactly that:
``..%2f..%2fsandboxes`` became a route into runtimed's API after one decode and
one normalisation. So the path is checked, once, by one function that both the web
tier and runtimed call, and it travels to runtimed in a header, never in the URL.

``app_path(raw)`` takes the path as it arrived on the wire (still percent-encoded,
without the leading slash) and returns it unchanged when it can only name something
inside the app, or raises ``UnsafePath`` saying why. Refused:

- dot segments (``.``, ``..``), plain or percent-encoded (``%2e``), in any case;
- encoded slashes and backslashes (``%2f``, ``%5c``) and plain backslashes;
- double encoding (``%25``, so ``%252e`` can never turn into ``%2e`` one hop later);
- absolute and scheme-relative URLs (``http:``, ``//host``);
- control characters, CR and LF (header injection), NUL, raw spaces and non-ASCII;
- malformed percent escapes and bytes that are not UTF-8 once decoded (the
  overlong ``%c0%ae`` and ``%e0%80%ae`` forms of ``.``, ``%c0%af`` of ``/``).

The query string is not a path and needs none of this (it cannot change the route);
it is checked only for CR, LF and NUL.
"""

from __future__ import annotations

import re

MAX_PATH = 8192
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# %2e (dot), %2f (slash), %5c (backslash), %25 (percent: double encoding), %00-%1f and %7f
_FORBIDDEN_ESCAPES = {0x2E, 0x2F, 0x5C, 0x25, 0x7F, *range(0x20)}
# what may appear unencoded in a path on the wire (RFC 3986 pchar + "/"), and nothing else
_WIRE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")


class UnsafePath(ValueError):
    """A path that could name something outside the app, or smuggle something into a request."""


def app_path(raw: str) -> str:
    """``raw`` (percent-encoded, no leading slash) if it can only name a path in the app."""
    if len(raw) > MAX_PATH:
        raise UnsafePath(f"the path is longer than {MAX_PATH} characters")
    if "\\" in raw:
        raise UnsafePath("backslashes are not allowed in the path")
    if not _WIRE.fullmatch(raw):
        bad = next(c for c in raw if not _WIRE.fullmatch(c))
        raise UnsafePath(f"the path holds a character that must be percent-encoded: {bad!r}")
    if _BAD_ESCAPE.search(raw):
        raise UnsafePath("the path holds a malformed percent escape")
    for match in _ESCAPE.finditer(raw):
        byte = int(match.group(1), 16)
        if byte in _FORBIDDEN_ESCAPES:
            raise UnsafePath(
                f"the path holds the encoded character %{match.group(1)} (dots, slashes, "
                "backslashes, percent signs and control characters are not accepted encoded)"
            )
    if raw.startswith("/"):
        raise UnsafePath("the path must not start with '/' (a scheme-relative URL)")
    if _SCHEME.match(raw):
        raise UnsafePath("the path must not be an absolute URL")
    decoded = _decode(raw)
    for segment in decoded.split("/"):
        if segment in (".", ".."):
            raise UnsafePath("dot segments ('.' and '..') are not allowed in the path")
    return raw


def _decode(raw: str) -> str:
    data = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), raw).encode("latin-1")
    try:
        text = data.decode("utf-8")  # strict: overlong forms (%c0%ae) are not UTF-8
    except UnicodeDecodeError:
        raise UnsafePath("the path is not UTF-8 once decoded (overlong or broken escapes)") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise UnsafePath("the path holds control characters")
    return text


def query_string(raw: str) -> str:
    """``raw`` unless it could split a request (CR, LF, NUL, encoded or not)."""
    low = raw.lower()
    if any(c in raw for c in "\r\n\x00") or any(e in low for e in ("%0d", "%0a", "%00")):
        raise UnsafePath("the query string holds CR, LF or NUL")
    if len(raw) > MAX_PATH:
        raise UnsafePath(f"the query string is longer than {MAX_PATH} characters")
    return raw
