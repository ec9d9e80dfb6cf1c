"""The course's reading pages: a course with its modules, a module with its
lessons and labs, a lesson, and the course's static assets."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from courses.models import Course, Lab, Lesson, Module
from courses.progress import course_progress
from courses.rendering import render_markdown, table_of_contents
from labs.models import LabSession


def _course(slug: str) -> Course:
    course: Course = get_object_or_404(Course.objects.active(), slug=slug)
    return course


def _module(course: Course, slug: str) -> Module:
    module: Module = get_object_or_404(course.modules.active(), slug=slug)
    return module


def _progress(user: Any, course: Course) -> dict[str, Any] | None:
    """The student's progress through ``course`` for the page (None when anonymous)."""
    if not getattr(user, "is_authenticated", False):
        return None
    figures = course_progress(user, course)
    next_item = figures.next_item
    if isinstance(next_item, Lab):
        continue_url: str | None = reverse("labs:lab", kwargs={"lab_id": next_item.pk})
    elif isinstance(next_item, Lesson):
        continue_url = reverse(
            "courses:lesson", kwargs={"course": course.slug, "module": next_item.module.slug, "lesson": next_item.slug}
        )
    else:
        continue_url = None
    return {"percent": figures.percent, "passed": figures.passed, "total": figures.total, "continue_url": continue_url}


def course_page(request: HttpRequest, course: str) -> HttpResponse:
    obj = _course(course)
    modules = [
        {
            "module": module,
            "lessons": list(module.lessons.active()),
            "labs": list(module.labs.active()),
        }
        for module in obj.modules.active().prefetch_related("lessons", "labs")
    ]
    return render(
        request,
        "courses/course.html",
        {"course": obj, "modules": modules, "progress": _progress(request.user, obj)},
    )


def module_page(request: HttpRequest, course: str, module: str) -> HttpResponse:
    obj = _course(course)
    mod = _module(obj, module)
    live = {}
    if request.user.is_authenticated:
        live = {s.lab_id: s for s in LabSession.objects.live().filter(user=request.user, lab__module=mod)}
    labs = [{"lab": lab, "live": live.get(lab.pk)} for lab in mod.labs.active()]
    return render(
        request,
        "courses/module.html",
        {
            "course": obj,
            "module": mod,
            "lessons": list(mod.lessons.active()),
            "labs": labs,
            "progress": _progress(request.user, obj),
        },
    )


@login_required
def lesson_page(request: HttpRequest, course: str, module: str, lesson: str) -> HttpResponse:
    obj = _course(course)
    mod = _module(obj, module)
    item: Lesson = get_object_or_404(mod.lessons.active(), slug=lesson)
    html = render_markdown(item.body)
    siblings = list(mod.lessons.active())
    index = next(i for i, other in enumerate(siblings) if other.pk == item.pk)
    return render(
        request,
        "courses/lesson.html",
        {
            "course": obj,
            "module": mod,
            "lesson": item,
            "html": html,
            "toc": table_of_contents(html),
            "previous": siblings[index - 1] if index > 0 else None,
            "next": siblings[index + 1] if index + 1 < len(siblings) else None,
            "labs": list(mod.labs.active()),
        },
    )


def course_asset(request: HttpRequest, course: str, path: str) -> FileResponse:
    """A file from the course directory's assets/ (images, diagrams), resolved
    beneath it: no path in a request can leave that directory."""
    obj = _course(course)
    if not obj.source:
        raise Http404("This course has no assets.")
    root = (Path(obj.source) / "assets").resolve()
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file():
        raise Http404("No such asset.")
    content_type, _ = mimetypes.guess_type(target.name)
    response = FileResponse(target.open("rb"), content_type=content_type or "application/octet-stream")
    response["Cache-Control"] = "public, max-age=3600"
    if target.suffix == ".svg":
        # An SVG can carry script: serve it so that a browser never runs it.
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response
