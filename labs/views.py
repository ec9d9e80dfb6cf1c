"""Pages and actions of a lab: its detail page, the lab session page with
steps and terminals, and start / reset / stop. Each view is thin: access
through ``lab_session_for_user`` and one service call."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from courses.messages import unread_messages
from courses.models import Lab
from courses.rendering import render_markdown
from grader.selectors import exercises_with_progress
from labs import services
from labs.selectors import LabSessionNotFound, lab_session_for_user, open_session


def _lab(lab_id: int) -> Lab:
    lab: Lab = get_object_or_404(
        Lab.objects.active().select_related("module__course"),
        pk=lab_id,
        module__archived_at__isnull=True,
    )
    return lab


def _steps(lab: Lab, *, student: Any = None) -> list[dict[str, Any]]:
    """The lab's steps for a page; with ``student``, each step's exercises and
    that student's progress on them (the owner's, also for an observer)."""
    return [
        {
            "number": i,
            "title": step.title,
            "html": render_markdown(step.body),
            "exercises": exercises_with_progress(user=student, step=step) if student is not None else [],
        }
        for i, step in enumerate(lab.steps.active().order_by("order"), start=1)
    ]


@login_required
def lab_detail(request: HttpRequest, lab_id: int) -> HttpResponse:
    lab = _lab(lab_id)
    return render(
        request,
        "labs/lab_detail.html",
        {
            "lab": lab,
            "module": lab.module,
            "course": lab.module.course,
            "intro_html": render_markdown(lab.intro),
            "steps": _steps(lab),
            "live_session": open_session(user=request.user, lab=lab),
            "start_url": reverse("labs:start", kwargs={"lab_id": lab.pk}),
            "disabled_reason": "" if lab.enabled else (lab.disabled_reason or "This lab is not available yet."),
        },
    )


@login_required
@require_POST
def lab_start(request: HttpRequest, lab_id: int) -> HttpResponse:
    lab = _lab(lab_id)
    try:
        session = services.lab_session_start(user=request.user, lab=lab)
    except (services.LabUnavailable, services.SandboxLimitReached) as exc:
        messages.error(request, str(exc))
        return redirect("labs:lab", lab_id=lab.pk)
    return redirect("labs:session", session_id=session.pk)


def _granted(request: HttpRequest, session_id: Any, *, write: bool = False) -> Any:
    try:
        return lab_session_for_user(request.user, session_id, write=write)
    except LabSessionNotFound:
        raise Http404("No such lab session.") from None


@login_required
def session_page(request: HttpRequest, session_id: Any) -> HttpResponse:
    granted = _granted(request, session_id)
    session = granted.session
    lab = session.lab
    config = {
        "session": str(session.pk),
        "events_url": f"/ws/labs/{session.pk}/events/",
        "terminal_url": f"/ws/labs/{session.pk}/term/",
        "max_terminals": settings.LAB_MAX_TERMINALS,
        "mode": granted.access.value,
        "warn_before": settings.LAB_WARN_BEFORE,
        "reset_url": reverse("labs:reset", kwargs={"session_id": session.pk}),
        "stop_url": reverse("labs:stop", kwargs={"session_id": session.pk}),
        "pause_url": reverse("labs:pause", kwargs={"session_id": session.pk}),
        "resume_url": reverse("labs:resume", kwargs={"session_id": session.pk}),
        "can_pause": services.pausable(session),
        "start_url": reverse("labs:start", kwargs={"lab_id": lab.pk}),
        "csrf_token": get_token(request),
        # the editor validates *.yaml against the lab's own cluster as you type (labs/editor.py)
        "validate_manifests": "kubernetes" in ((lab.environment or {}).get("services") or []),
    }
    return render(
        request,
        "labs/session.html",
        {
            "lab": lab,
            "module": lab.module,
            "course": lab.module.course,
            "intro_html": render_markdown(lab.intro),
            "session": session,
            "steps": _steps(lab, student=session.user),
            "mode": granted.access.value,
            "config": config,
            # messages from the student's instructors (courses/messages.py), for the owner only
            "class_messages": unread_messages(user=request.user, course=lab.module.course_id)
            if granted.can_write
            else [],
        },
    )


@login_required
@require_POST
def session_reset(request: HttpRequest, session_id: Any) -> HttpResponse:
    granted = _granted(request, session_id, write=True)
    try:
        session = services.lab_session_reset(session=granted.session)
    except (services.LabUnavailable, services.SandboxLimitReached) as exc:
        messages.error(request, str(exc))
        return redirect("labs:lab", lab_id=granted.session.lab_id)
    messages.info(request, "You have a fresh sandbox.")
    return redirect("labs:session", session_id=session.pk)


@login_required
@require_POST
def session_stop(request: HttpRequest, session_id: Any) -> HttpResponse:
    granted = _granted(request, session_id, write=True)
    try:
        services.lab_session_stop(session=granted.session)
    except services.PauseRefused as exc:
        messages.error(request, str(exc))
        return redirect("labs:session", session_id=granted.session.pk)
    messages.info(request, "The lab's sandbox was stopped.")
    return redirect("labs:lab", lab_id=granted.session.lab_id)


@login_required
@require_POST
def session_pause(request: HttpRequest, session_id: Any) -> HttpResponse:
    """Pause: the sandbox is kept on disk (files, containers, cluster), no process runs."""
    granted = _granted(request, session_id, write=True)
    try:
        services.lab_session_pause(session=granted.session)
    except services.PauseRefused as exc:
        messages.error(request, str(exc))
    return redirect("labs:session", session_id=granted.session.pk)


@login_required
@require_POST
def session_resume(request: HttpRequest, session_id: Any) -> HttpResponse:
    granted = _granted(request, session_id, write=True)
    try:
        services.lab_session_resume(session=granted.session)
    except (services.PauseRefused, services.SandboxLimitReached) as exc:
        messages.error(request, str(exc))
    return redirect("labs:session", session_id=granted.session.pk)
