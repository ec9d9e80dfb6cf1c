"""``http``: a request made from inside the sandbox's network namespace.

Fields: ``port`` and ``path`` (default /) on ``host`` (default 127.0.0.1), or a
full ``url``; ``method`` (default GET; other methods need curl in the image),
``headers`` (a mapping of request headers, e.g. ``{Host: shop.local}`` to reach an
Ingress rule: ``host`` is the address connected to, not the Host header),
``status`` (default 200), ``contains`` (string or list), ``matches`` (regex on
the body). The fetch runs in the sandbox with the image's curl, or busybox
wget when there is no curl (without -T, which crashes Debian's static busybox;
the exec's own time limit bounds it), so it sees what the student's programs see.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from grader.checks.base import (
    CheckError,
    CheckProblems,
    Outcome,
    Target,
    as_list,
    clean_output,
    compile_regex,
    register,
    shorten,
)

MARKER = "\n@@kubelab-status@@"
BODY_LIMIT = 256 * 1024
# $1 url, $2 method, $3 seconds, $4 max bytes, then "Name: value" per request header
_SCRIPT = (
    'u="$1"; m="$2"; t="$3"; x="$4"; shift 4; '
    "if command -v curl >/dev/null 2>&1; then "
    'for h in "$@"; do set -- "$@" -H "$h"; shift; done; '
    'curl -sS -o - -w "\\n@@kubelab-status@@%{http_code}" -X "$m" -m "$t" --max-filesize "$x" "$@" -- "$u"; '
    'else for h in "$@"; do set -- "$@" --header "$h"; shift; done; wget -S -O - "$@" -- "$u"; fi'
)
MAX_HEADERS = 16
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}$")  # printable ASCII: no CR/LF, no controls
_STATUS_LINE = re.compile(r"HTTP/\d(?:\.\d)?\s+(\d{3})")
_METHOD = re.compile(r"^[A-Z]{3,10}$")


def request_headers(value: Any) -> list[str]:
    """``headers`` as ``Name: value`` lines; a CheckError for anything else."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise CheckError("an http check's `headers` must be a mapping of header names to values")
    if len(value) > MAX_HEADERS:
        raise CheckError(f"an http check sends at most {MAX_HEADERS} headers")
    out: list[str] = []
    for name, val in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise CheckError(f"invalid header name {str(name)[:80]!r}: letters, digits and '-' only")
        if isinstance(val, bool) or not isinstance(val, str | int) or not _HEADER_VALUE.match(str(val)):
            raise CheckError(f"invalid value of header {name}: printable text on one line, at most 1024 characters")
        out.append(f"{name}: {val}")
    return out


def _problems(spec: Mapping[str, Any]) -> CheckProblems:
    port = spec.get("port")
    if "url" not in spec and (not isinstance(port, int) or not 1 <= port <= 65535):
        yield "port", "'port' (a port number) or 'url' is required"
    if "headers" in spec:
        try:
            request_headers(spec["headers"])
        except CheckError as exc:
            yield "headers", str(exc)


@register(
    "http",
    optional={"port", "url", "host", "method", "path", "headers", "status", "contains", "matches"},
    validate=_problems,
)
def check_http(spec: Mapping[str, Any], target: Target, timeout: float) -> Outcome:
    if "url" in spec:
        url = str(spec["url"])
        if not url.startswith(("http://", "https://")):
            raise CheckError("an http check's `url` must start with http:// or https://")
    else:
        try:
            port = int(spec["port"])
        except (KeyError, TypeError, ValueError):
            raise CheckError("an http check needs a `port` (or a `url`)") from None
        if not 0 < port < 65536:
            raise CheckError(f"port {port} is out of range")
        path = str(spec.get("path", "/"))
        if not path.startswith("/"):
            path = "/" + path
        url = f"http://{spec.get('host', '127.0.0.1')}:{port}{path}"
    method = str(spec.get("method", "GET")).upper()
    if not _METHOD.match(method):
        raise CheckError(f"unknown HTTP method {method!r}")
    headers = request_headers(spec.get("headers"))
    wait = max(1, int(timeout) - 1)
    argv = ["sh", "-c", _SCRIPT, "sh", url, method, str(wait), str(BODY_LIMIT), *headers]
    result = target.exec(argv, timeout=timeout)
    if result.timed_out:
        return Outcome(False, f"{url} did not answer within {timeout:g} s.", timed_out=True)
    stdout, stderr = result.stdout_text, result.stderr_text
    status: int | None = None
    if MARKER in stdout:
        stdout, _, code = stdout.rpartition(MARKER)
        status = int(code) if code.strip().isdigit() and code.strip() != "000" else None
    else:
        codes = _STATUS_LINE.findall(stderr)
        status = int(codes[-1]) if codes else None
    if status is None:
        return Outcome(False, clean_output(f"Could not connect to {url}.\n{stderr.strip()}"))
    problems: list[str] = []
    want_status = int(spec.get("status", 200))
    if status != want_status:
        problems.append(f"{url} answered {status}, expected {want_status}")
    for needle in as_list(spec.get("contains")):
        if str(needle) not in stdout:
            problems.append(f"the response does not contain {shorten(needle)!r}")
    if "matches" in spec and not compile_regex(spec["matches"], "matches").search(stdout):
        problems.append(f"the response does not match {shorten(spec['matches'])!r}")
    if problems:
        return Outcome(False, clean_output("\n".join(problems) + "\n---\n" + stdout[:1500]))
    return Outcome(True, f"{url} answered {status}.")
