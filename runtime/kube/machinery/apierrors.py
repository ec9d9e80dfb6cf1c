"""Kubernetes ``Status`` errors, with the reasons, codes and messages a real API server uses.

kubectl prints ``Error from server (<reason>): <message>`` and, for ``Invalid``,
rebuilds its message from ``details.causes``; so both the message and the
causes follow k8s.io/apimachinery's wording exactly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from runtime.errors import RuntimeError as _RuntimeError


class ApiError(_RuntimeError):
    """An error the API server returns to the client as a ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = code
        self.reason = reason
        self.message = message
        if details is None and (code, message) in _GENERIC:
            details = {}  # NewGenericServerResponse always sets Details (all fields empty)
        self.details = details

    def to_status(self) -> dict[str, Any]:
        """The ``metav1.Status`` as kube-apiserver encodes it: Go's field order (kind,
        apiVersion, metadata, status, message, reason, details, code), empty optional
        fields left out (``omitempty``), details in StatusDetails' own field order."""
        st: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if not self.message:
            del st["message"]
        if not self.reason:
            del st["reason"]
        if self.details is not None:
            st["details"] = status_details(self.details)
        st["code"] = self.status
        return st


NOT_FOUND_PATH = "the server could not find the requested resource"
METHOD_NOT_ALLOWED = "the server does not allow this method on the requested resource"
_GENERIC = {(404, NOT_FOUND_PATH), (405, METHOD_NOT_ALLOWED)}
_DETAIL_ORDER = ("name", "group", "kind", "uid", "causes", "retryAfterSeconds")
_CAUSE_ORDER = ("reason", "message", "field")


def status_details(d: dict[str, Any]) -> dict[str, Any]:
    """StatusDetails as Go serialises it: its fields in struct order, each ``omitempty``;
    every cause likewise (reason, message, field)."""
    out: dict[str, Any] = {}
    for k in _DETAIL_ORDER:
        v = d.get(k)
        if not v:
            continue
        if k == "causes" and isinstance(v, list):
            v = [{ck: c[ck] for ck in _CAUSE_ORDER if isinstance(c, dict) and c.get(ck)} for c in v]
        out[k] = v
    for k, v in d.items():  # anything else a caller put there, kept after the known fields
        if k not in out and k not in _DETAIL_ORDER and v:
            out[k] = v
    return out


def go_json(obj: Any, pretty: bool = False) -> bytes:
    """``obj`` as kube-apiserver's JSON serializer writes it: Go's encoding/json, which
    escapes ``<``, ``>``, ``&``, U+2028 and U+2029 and leaves other non-ASCII text as UTF-8;
    compact with a trailing newline (``json.Encoder.Encode``), or indented by two spaces
    without one (``json.MarshalIndent``, for ``?pretty=true`` and curl/Wget/browsers)."""
    if pretty:
        text = json.dumps(obj, indent=2, ensure_ascii=False)
    else:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
    if any(c in text for c in "<>&\u2028\u2029"):
        for c, esc in (
            ("<", "\\u003c"),
            (">", "\\u003e"),
            ("&", "\\u0026"),
            ("\u2028", "\\u2028"),
            ("\u2029", "\\u2029"),
        ):
            text = text.replace(c, esc)
    # a lone surrogate (a JSON body may escape one) is U+FFFD to Go, which never writes one
    return _SURROGATE.sub("\ufffd", text).encode("utf-8")


_SURROGATE = re.compile("[\ud800-\udfff]")


def qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        {"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource},
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    d: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        d["group"] = group
    return ApiError(409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists', d)


def conflict(resource: str, group: str, name: str, why: str) -> ApiError:
    d: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        d["group"] = group
    msg = f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}'
    return ApiError(409, "Conflict", msg, d)


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = METHOD_NOT_ALLOWED) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def path_not_found() -> ApiError:
    """What kube-apiserver answers for a path it does not serve."""
    return ApiError(404, "NotFound", NOT_FOUND_PATH)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden_message(
    user: str, verb: str, resource: str, group: str, namespace: str, name: str = "", sub: str = ""
) -> str:
    res = f"{resource}/{sub}" if sub else resource
    what = f"{qualified(resource, group)}{' ' + repr_q(name) if name else ''}"
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return f'{what} is forbidden: User "{user}" cannot {verb} resource "{res}" in API group "{group}"{where}'


def repr_q(s: str) -> str:
    return json.dumps(s)


def forbidden(resource: str, group: str, name: str, message: str) -> ApiError:
    d: dict[str, Any] = {"name": name, "kind": resource} if name else {"kind": resource}
    if group:
        d["group"] = group
    return ApiError(403, "Forbidden", message, d)


@dataclass
class FieldError:
    type: str  # FieldValueRequired, FieldValueInvalid, ...
    field: str
    detail: str = ""
    value: Any = None

    def body(self) -> str:
        if self.type == "FieldValueRequired":
            return "Required value" + (f": {self.detail}" if self.detail else "")
        if self.type == "FieldValueInvalid":
            return f"Invalid value: {_fmt_value(self.value)}" + (f": {self.detail}" if self.detail else "")
        if self.type == "FieldValueNotSupported":
            return f"Unsupported value: {_fmt_value(self.value)}" + (f": {self.detail}" if self.detail else "")
        if self.type == "FieldValueDuplicate":
            return f"Duplicate value: {_fmt_value(self.value)}"
        if self.type == "FieldValueForbidden":
            return "Forbidden" + (f": {self.detail}" if self.detail else "")
        if self.type == "FieldValueTooLong":
            return f"Too long: {self.detail}"
        if self.type == "FieldValueNotFound":
            return f"Not found: {_fmt_value(self.value)}"
        return self.detail

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()


class GoLiteral(str):
    """A value printed verbatim (as Go's %#v renders it), not JSON-quoted."""

    __slots__ = ()


def _fmt_value(v: Any) -> str:
    if isinstance(v, GoLiteral):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(v, separators=(",", ":"))


def required(fld: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", fld, detail)


def invalid(fld: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", fld, detail, value)


def not_supported(fld: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported)
    return FieldError("FieldValueNotSupported", fld, detail, value)


def forbidden_field(fld: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", fld, detail)


def duplicate(fld: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", fld, "", value)


def invalid_error(kind: str, group: str, name: str, errs: list[FieldError]) -> ApiError:
    qkind = f"{kind}.{group}" if group else kind
    agg = str(errs[0]) if len(errs) == 1 else "[" + ", ".join(str(e) for e in errs) + "]"
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": e.type, "message": e.body(), "field": e.field} for e in errs],
    }
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qkind} "{name}" is invalid: {agg}', details)
