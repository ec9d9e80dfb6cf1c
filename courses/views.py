from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.roles import INSTRUCTOR, role_required
from courses import selectors


def home(request: HttpRequest) -> HttpResponse:
    courses = selectors.course_list(user=request.user)
    return render(request, "courses/home.html", {"courses": courses})


@login_required
def progress(request: HttpRequest) -> HttpResponse:
    courses = selectors.course_list(user=request.user)
    return render(request, "courses/progress.html", {"courses": courses})


@role_required(INSTRUCTOR)
def instructor_dashboard(request: HttpRequest) -> HttpResponse:
    context = {
        "courses": selectors.course_list(user=request.user),
        "summary": selectors.class_summary(),
    }
    return render(request, "courses/instructor.html", context)
