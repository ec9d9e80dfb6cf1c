"""The lab page's editor: list, open and save files under the sandbox's /root; validate
Kubernetes manifests against the lab's own cluster as the student types.

Thin JSON views: access through ``lab_session_for_user`` (an observer may list and read,
only the owner saves), then one call to runtimed through the session's sandbox backend
(``labs.sandboxes.for_session``) with the session's own web credential,
which carries the ``files`` operation (runtime/auth.py) and reaches this sandbox only.
runtimed does the file work inside the sandbox, by descriptor, never following a link
(runtime/sandbox/files.py); these views only carry the path as data.

Validation (``file_validate``): the text is parsed here (labs/manifests.py: bounded, YAML
errors at their line with no round trip), each object is dry-run by runtimed against this
session's cluster with the same per-session credential, which carries only the narrow
``validate`` operation (runtime/kube/apiserver/dryrun.py: ``dryRun=All``, ``fieldValidation=Strict``,
nothing stored), and the cluster's errors come back at the lines they name. At most
``VALIDATE_PER_WINDOW`` requests per session per ``VALIDATE_WINDOW`` seconds (the editor
asks after a pause in typing, well under it).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_http_methods

from labs import manifests, sandboxes
from labs.models import LabSession
from labs.selectors import LabSessionNotFound, lab_session_for_user
from runtime import errors as runtime_errors

log = logging.getLogger(__name__)
UNAVAILABLE = "The lab server is not available; try again in a moment."
FAILED = "The lab server could not do that; try again, or reset the lab if it keeps failing."

MAX_BODY = 6 << 20  # 1 MiB of text, JSON-escaped at worst
VALIDATE_MAX_BODY = 6 * manifests.MAX_TEXT + 4096  # JSON-escaped at worst, and the path
VALIDATE_WINDOW = 10  # seconds
VALIDATE_PER_WINDOW = 20


def _session(request: HttpRequest, session_id: Any, *, write: bool) -> LabSession:
    try:
        session = lab_session_for_user(request.user, session_id, write=write).session
    except LabSessionNotFound:
        raise Http404("No such lab session.") from None
    return session


def _call(session: LabSession, fn: str, *args: Any) -> JsonResponse:
    if session.status != LabSession.Status.READY or not session.sandbox_id:
        return JsonResponse({"error": "The lab's sandbox is not running."}, status=409)
    if session.backend not in ("namespace", "kubernetes"):
        return JsonResponse({"error": "The editor needs a sandbox of runtimed's."}, status=501)
    if not session.runtime_token:
        return JsonResponse({"error": "The lab's sandbox has no credential yet; reset the lab."}, status=503)
    try:
        backend = sandboxes.for_session(session)
    except sandboxes.SandboxError:
        # the reason names this host's sockets and settings: the log's, not the student's
        log.warning("editor of lab session %s: no sandbox backend", session.pk, exc_info=True)
        return JsonResponse({"error": UNAVAILABLE}, status=503)
    try:
        return JsonResponse(getattr(backend, fn)(session.sandbox_id, *args))
    except runtime_errors.SandboxNotFound:  # removed, or its lab node lost
        return JsonResponse({"error": "The lab's sandbox is not running."}, status=409)
    except runtime_errors.Forbidden as exc:
        if "does not allow 'files'" in str(exc):
            msg = "This sandbox was started before the editor existed: reset the lab to use the editor."
            return JsonResponse({"error": msg}, status=403)
        if "does not allow 'validate'" in str(exc):
            msg = "This sandbox was started before the editor checked manifests: reset the lab to have them checked."
            return JsonResponse({"error": msg}, status=403)
        return JsonResponse({"error": str(exc)}, status=403)
    except runtime_errors.Unreachable:
        return JsonResponse({"error": "The lab server is not answering; try again in a moment."}, status=503)
    except runtime_errors.NotAvailable as exc:  # what runtimed does not do, with its reason
        return JsonResponse({"error": str(exc)}, status=exc.status)
    except runtime_errors.RuntimeError as exc:
        if 400 <= exc.status < 500:  # about the request: the path, the content, the version
            return JsonResponse({"error": str(exc)}, status=exc.status)
        log.warning("editor of lab session %s: %s failed", session.pk, fn, exc_info=True)
        return JsonResponse({"error": FAILED}, status=exc.status if 500 <= exc.status < 600 else 500)
    finally:
        sandboxes.release_sync(backend)


@login_required
@require_http_methods(["GET"])
def files_list(request: HttpRequest, session_id: Any) -> JsonResponse:
    session = _session(request, session_id, write=False)
    return _call(session, "files_list", request.GET.get("path", ""))


@login_required
@require_http_methods(["GET", "POST"])
def file_content(request: HttpRequest, session_id: Any) -> JsonResponse:
    """GET ``?path=``: the file. POST ``{"path", "content", "etag"}``: save it (``etag`` of
    the version opened; null creates; "*" overwrites); 409 when it changed meanwhile."""
    if request.method == "GET":
        return _call(_session(request, session_id, write=False), "file_read", request.GET.get("path", ""))
    session = _session(request, session_id, write=True)
    if len(request.body) > MAX_BODY:
        return JsonResponse({"error": "The file is too large for the editor (1 MiB at most)."}, status=413)
    try:
        body = json.loads(request.body)
        path, content, etag = body["path"], body["content"], body.get("etag")
        if not isinstance(path, str) or not isinstance(content, str) or not (etag is None or isinstance(etag, str)):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'Send {"path": str, "content": str, "etag": str or null}.'}, status=400)
    return _call(session, "file_write", path, content, etag)


def _now() -> float:
    return time.time()


def _rate_limited(session: LabSession) -> int:
    """0, or the seconds to wait: ``VALIDATE_PER_WINDOW`` validations per session per window
    (counted in Django's cache: shared by every web process when the cache is)."""
    now = int(_now())
    window = now // VALIDATE_WINDOW
    key = f"labs:validate:{session.pk}:{window}"
    cache.add(key, 0, timeout=VALIDATE_WINDOW * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr: count this one as the first
        cache.set(key, 1, timeout=VALIDATE_WINDOW * 2)
        count = 1
    if count > VALIDATE_PER_WINDOW:
        return (window + 1) * VALIDATE_WINDOW - now or 1
    return 0


@login_required
@require_http_methods(["POST"])
def file_validate(request: HttpRequest, session_id: Any) -> JsonResponse:
    """``{"content"}`` (the text being edited, saved or not): the manifest's problems as
    ``{"diagnostics": [{line, col, end_line, end_col, message, severity}]}`` (lines 1-based,
    columns 0-based), each the lab cluster's own answer to a dry run of that object, or a
    YAML error at its line."""
    session = _session(request, session_id, write=True)
    if len(request.body) > VALIDATE_MAX_BODY:
        return JsonResponse(
            {"error": f"The file is too large to validate as you type ({manifests.MAX_TEXT // 1024} KiB at most)."},
            status=413,
        )
    if "kubernetes" not in ((session.lab.environment or {}).get("services") or []):
        return JsonResponse({"error": "This lab has no Kubernetes cluster to validate against."}, status=409)
    wait = _rate_limited(session)
    if wait:
        response = JsonResponse(
            {"error": f"Validating too often: the next validation in {wait} s.", "retry_after": wait}, status=429
        )
        response["Retry-After"] = str(wait)
        return response
    try:
        body = json.loads(request.body)
        content = body["content"]
        if not isinstance(content, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'Send {"content": str}.'}, status=400)
    if len(content.encode("utf-8", "surrogatepass")) > manifests.MAX_TEXT:
        return JsonResponse(
            {"error": f"The file is too large to validate as you type ({manifests.MAX_TEXT // 1024} KiB at most)."},
            status=413,
        )
    try:
        docs = manifests.parse(content)
    except manifests.ManifestError as e:
        return JsonResponse({"diagnostics": [e.diagnostic.as_json()]})
    if not docs:
        return JsonResponse({"diagnostics": []})
    answer = _call(session, "kube_validate", [d.obj for d in docs])
    if answer.status_code != 200:
        return answer
    results = json.loads(answer.content)["results"]
    found = [
        d.as_json() for doc, result in zip(docs, results, strict=False) for d in manifests.diagnostics(doc, result)
    ]
    return JsonResponse({"diagnostics": found})
