from __future__ import annotations

import csv
from typing import Any

from django.contrib import messages as django_messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from accounts.roles import INSTRUCTOR, role_required
from courses import progress as course_progress
from courses import selectors
from courses.models import Course, Module


def home(request: HttpRequest) -> HttpResponse:
    courses = selectors.course_list(user=request.user)
    return render(request, "courses/home.html", {"courses": courses})


@login_required
def progress(request: HttpRequest) -> HttpResponse:
    from labs.selectors import kept_sessions_of

    courses = list(Course.objects.active())
    rows = course_progress.user_progress(request.user, courses)
    started = [row for row in rows if any(lp.attempted for mp in row.modules for lp in mp.labs)]
    return render(
        request,
        "courses/progress.html",
        {"courses": courses, "progress": rows, "started": started, "paused": kept_sessions_of(request.user)},
    )


# --- instructor dashboard ----------------------------------------------------------------------


def _taught_courses(user: Any) -> list[Course]:
    from labs.selectors import teaches

    return [course for course in Course.objects.active() if teaches(user, course)]


def _filters(request: HttpRequest) -> dict[str, Any]:
    taught = _taught_courses(request.user)
    wanted = request.GET.get("course", "")
    course = next((c for c in taught if c.slug == wanted), taught[0] if taught else None)
    if wanted and (course is None or course.slug != wanted):
        raise Http404("No such course, or not one you teach.")
    module = None
    if course is not None and request.GET.get("module", "").isdigit():
        module = Module.objects.active().filter(course=course, pk=int(request.GET["module"])).first()
    status = request.GET.get("status", "")
    if status not in ("", "passed", "attempted", "not_started"):
        status = ""
    return {
        "taught": taught,
        "course": course,
        "module": module,
        "modules": list(course.modules.active()) if course else [],
        "search": request.GET.get("q", "").strip()[:100],
        "status": status,
    }


@role_required(INSTRUCTOR)
def instructor_dashboard(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    matrix = None
    if filters["course"] is not None:
        matrix = course_progress.class_matrix(
            course=filters["course"],
            module=filters["module"],
            search=filters["search"],
            status=filters["status"],
            viewer=request.user,
        )
    context = {
        "courses": selectors.course_list(user=request.user),
        "summary": selectors.class_summary(),
        "matrix": matrix,
        **filters,
    }
    return render(request, "courses/instructor.html", context)


@role_required(INSTRUCTOR)
def instructor_csv(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    course = filters["course"]
    if course is None:
        raise Http404("You teach no course.")
    matrix = course_progress.class_matrix(
        course=course, module=filters["module"], search=filters["search"], status=filters["status"], viewer=request.user
    )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{course.slug}-progress.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "student",
            "email",
            "module",
            "lab",
            "exercise",
            "status",
            "attempts",
            "failed_attempts",
            "hints_revealed",
            "solution_shown",
            "passed_at",
            "last_activity",
        ]
    )
    safe = course_progress.csv_safe
    for row in matrix.rows:
        for exercise, cell in zip(matrix.exercises, row.cells, strict=True):
            writer.writerow(
                [
                    safe(row.student.username),
                    safe(row.student.email),
                    safe(exercise.lab.module.slug),
                    safe(exercise.lab.slug),
                    safe(exercise.slug),
                    cell.status if cell else "not_started",
                    cell.attempts if cell else 0,
                    cell.failed_attempts if cell else 0,
                    cell.hints_revealed if cell else 0,
                    "yes" if cell and cell.solution_shown else "no",
                    cell.passed_at.isoformat() if cell and cell.passed_at else "",
                    cell.last_activity_at.isoformat() if cell else "",
                ]
            )
    return response


@role_required(INSTRUCTOR)
def instructor_student(request: HttpRequest, user_id: int) -> HttpResponse:
    from grader.selectors import submission_history

    student = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if student is None:
        raise Http404("No such student.")
    taught = _taught_courses(request.user)
    from courses.models import Exercise

    exercises = Exercise.objects.filter(lab__module__course__in=taught)
    history = submission_history(user=student, exercises=exercises)
    return render(
        request, "courses/instructor_student.html", {"student": student, "history": history, "taught": taught}
    )


# --- the live class view (issue #18) --------------------------------------------------------


def _taught_course(user: Any, slug: str) -> Course:
    """``slug`` if ``user`` teaches it; 404 for a course that does not exist and for one
    they do not teach alike (the answer does not tell which)."""
    from labs.selectors import teaches

    course = Course.objects.active().filter(slug=slug).first()
    if course is None or not teaches(user, course):
        raise Http404("No such course, or not one you teach.")
    return course


def _live_context(request: HttpRequest, course: Course) -> dict[str, Any]:
    from django.conf import settings
    from django.utils import timezone

    from courses import charts, classview, messages

    view = classview.class_view(course=course, now=timezone.now(), viewer=request.user)
    return {
        "course": course,
        "view": view,
        "sent": messages.sent_messages(course=course, sender=request.user),
        "pass_chart": charts.exercise_chart(view),
        "time_chart": charts.lab_time_chart(view),
        "poll_seconds": settings.CLASS_VIEW_POLL,
    }


@require_safe
@role_required(INSTRUCTOR)
def instructor_live(request: HttpRequest, course: str) -> HttpResponse:
    from courses import messages
    from courses.selectors import MAX_STUDENTS, class_members

    taught = _taught_course(request.user, course)
    context = _live_context(request, taught)
    context["members"] = list(class_members(taught, viewer=request.user).order_by("username")[:MAX_STUDENTS])
    context["message_max_length"] = messages.MAX_LENGTH
    context["config"] = {
        "url": reverse("courses:instructor-live-json", kwargs={"course": taught.slug}),
        "poll_seconds": context["poll_seconds"],
    }
    return render(request, "courses/instructor_live.html", context)


@require_safe
@role_required(INSTRUCTOR)
def instructor_live_json(request: HttpRequest, course: str) -> HttpResponse:
    """The class view's data and its rendered body, for the page's refresh.

    Polled with ``If-None-Match``: a class where nothing changed costs a 304 and no bytes.
    (Stuck-by-idle changes with the clock, not with any event, so a push alone would miss it.)
    """
    import hashlib
    import json

    from django.http import HttpResponseNotModified
    from django.template.loader import render_to_string

    from courses import classview

    taught = _taught_course(request.user, course)
    context = _live_context(request, taught)
    data = classview.as_dict(context["view"])
    data["html"] = render_to_string("courses/_instructor_live_body.html", context, request=request)
    body = json.dumps(data, sort_keys=True).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache", "Vary": "Cookie"}
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        response: HttpResponse = HttpResponseNotModified(headers=headers)
        return response
    return HttpResponse(body, content_type="application/json", headers=headers)


# --- messages from the class view to students' lab pages (issue #18) ------------------------


@require_POST
@role_required(INSTRUCTOR)
def instructor_message_send(request: HttpRequest, course: str) -> HttpResponse:
    """Send a hint or message to one student (``to``: their id) or the class (``to=all``)."""
    from django.http import JsonResponse

    from courses import messages

    taught = _taught_course(request.user, course)
    try:
        sent = messages.send_class_message(
            sender=request.user, course=taught, text=request.POST.get("text"), to=request.POST.get("to")
        )
    except messages.MessageError as error:
        if not _wants_json(request):
            django_messages.error(request, str(error))
            return redirect("courses:instructor-live", course=taught.slug)
        return JsonResponse({"error": str(error)}, status=error.status)
    noun = "student" if sent.recipients == 1 else "students"
    if not _wants_json(request):  # the form without JavaScript
        django_messages.success(request, f"Sent to {sent.recipients} {noun}.")
        return redirect("courses:instructor-live", course=taught.slug)
    return JsonResponse({"sent": sent.recipients, "message": f"Sent to {sent.recipients} {noun}."}, status=201)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_POST
@login_required
def message_dismiss(request: HttpRequest, message_id: int) -> HttpResponse:
    """A student dismisses a message of theirs; 404 for anyone else's (the answer does not tell)."""
    from django.http import JsonResponse

    from courses import messages

    if not messages.dismiss_class_message(user=request.user, message_id=message_id):
        raise Http404("No such message.")
    return JsonResponse({"dismissed": message_id})
