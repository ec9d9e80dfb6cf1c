"""The course's reading pages: a course with its modules, a module with its
lessons and labs, a lesson, and the course's static assets."""

from __future__ import annotations

import mimetypes
import os
import stat
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


# Asset types a page may show inline; anything else (HTML, XML, scripts...) is
# a download, so a course file never becomes a page of the platform's origin.
INLINE_ASSET_TYPES = {
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/svg+xml",
    "text/plain",
    "video/mp4",
    "video/webm",
    "audio/mpeg",
    "audio/ogg",
}


def _asset_path(course: Course, path: str) -> Path:
    """``path`` inside the course directory's assets/, every link resolved.

    Refused (Http404): NUL, a name that leaves assets/ (``..``, absolute,
    through a symlink, whatever its encoding in the URL, which Django has
    decoded once already), an assets/ that is itself a link out of the course
    directory, and anything but a regular file.
    """
    if not course.source or "\0" in path:
        raise Http404("No such asset.")
    course_root = Path(course.source).resolve()
    root = (course_root / "assets").resolve()
    if course_root not in root.parents:
        raise Http404("No such asset.")
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file():
        raise Http404("No such asset.")
    return target


def course_asset(request: HttpRequest, course: str, path: str) -> FileResponse:
    """A file from the course directory's assets/ (images, diagrams), resolved
    beneath it: no path in a request can leave that directory."""
    target = _asset_path(_course(course), path)
    try:
        # O_NOFOLLOW: a link swapped in after the check above is not followed.
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise Http404("No such asset.") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Http404("No such asset.")
    handle = os.fdopen(fd, "rb")
    content_type, _ = mimetypes.guess_type(target.name)
    content_type = content_type or "application/octet-stream"
    response = FileResponse(
        handle,
        content_type=content_type,
        as_attachment=content_type not in INLINE_ASSET_TYPES,
        filename=target.name,
    )
    response["Cache-Control"] = "public, max-age=3600"
    # Whatever a file holds (an SVG can carry script), a browser that opens it
    # runs nothing and gets an opaque origin.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response
