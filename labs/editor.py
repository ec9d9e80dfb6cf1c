"""The lab page's editor: list, open and save files under the sandbox's /root.

Thin JSON views: access through ``lab_session_for_user`` (an observer may list and read,
only the owner saves), then one call to runtimed with the session's own web credential,
which carries the ``files`` operation (runtime/auth.py) and reaches this sandbox only.
runtimed does the file work inside the sandbox, by descriptor, never following a link
(runtime/sandbox/files.py); these views only carry the path as data.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_http_methods

from labs.models import LabSession
from labs.selectors import LabSessionNotFound, lab_session_for_user
from runtime import errors as runtime_errors
from runtime.client import Client

MAX_BODY = 6 << 20  # 1 MiB of text, JSON-escaped at worst


def _session(request: HttpRequest, session_id: Any, *, write: bool) -> LabSession:
    try:
        session = lab_session_for_user(request.user, session_id, write=write).session
    except LabSessionNotFound:
        raise Http404("No such lab session.") from None
    return session


def _call(session: LabSession, fn: str, *args: Any) -> JsonResponse:
    if session.status != LabSession.Status.READY or not session.sandbox_id:
        return JsonResponse({"error": "The lab's sandbox is not running."}, status=409)
    if session.backend != "namespace":
        return JsonResponse({"error": "The editor needs a sandbox of this server's own runtime."}, status=501)
    if not session.runtime_token:
        return JsonResponse({"error": "The lab's sandbox has no credential yet; reset the lab."}, status=503)
    try:
        with Client(settings.RUNTIME_SOCKET, token=session.runtime_token, timeout=30) as rt:
            return JsonResponse(getattr(rt, fn)(session.sandbox_id, *args))
    except runtime_errors.Forbidden as exc:
        if "does not allow 'files'" in str(exc):
            msg = "This sandbox was started before the editor existed: reset the lab to use the editor."
            return JsonResponse({"error": msg}, status=403)
        return JsonResponse({"error": str(exc)}, status=403)
    except runtime_errors.Unreachable:
        return JsonResponse({"error": "The lab server is not answering; try again in a moment."}, status=503)
    except runtime_errors.RuntimeError as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status if 400 <= exc.status < 600 else 500)


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
