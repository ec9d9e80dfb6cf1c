"""The pages of the courses app and the site-wide layout and error pages."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse
from pytest_django.fixtures import DjangoAssertNumQueries

from accounts.views import server_error
from tests.factories import InstructorFactory, StudentFactory

pytestmark = pytest.mark.django_db


def test_home_explains_the_platform_and_says_no_course_is_loaded(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert reverse("courses:home") == "/"
    body = response.content.decode()
    assert "Learn Kubernetes by doing it" in body
    assert "No course loaded yet" in body
    assert "make run" in body and "import_course" in body
    assert response.context["courses"] == []


def test_layout_has_navigation_stylesheet_and_footer(client: Client) -> None:
    body = client.get("/").content.decode()
    assert 'class="topbar"' in body
    assert 'href="/static/css/app.css"' in body
    assert 'src="/static/js/app.js"' in body
    assert 'class="site-footer"' in body
    assert '<meta name="viewport"' in body
    assert 'aria-current="page"' in body  # "Courses" is the current page


def test_my_progress_for_a_student(client: Client) -> None:
    client.force_login(StudentFactory.create())
    response = client.get("/progress/")
    assert response.status_code == 200
    assert "No course is loaded on this platform yet" in response.content.decode()


def test_instructor_dashboard_shows_the_class_size(client: Client) -> None:
    StudentFactory.create_batch(2)
    client.force_login(InstructorFactory.create())
    body = client.get("/instructor/").content.decode()
    assert "Instructor dashboard" in body
    assert "No course loaded yet" in body


def test_404_page_renders_with_the_layout(client: Client) -> None:
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "Page not found" in body
    assert "/no/such/page/" in body
    assert 'class="topbar"' in body


def test_404_page_escapes_the_path(client: Client) -> None:
    response = client.get("/<script>alert(1)</script>/")
    assert response.status_code == 404
    assert "<script>alert(1)" not in response.content.decode()


def test_500_page_needs_neither_request_context_nor_database(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    request = RequestFactory().get("/boom/")
    with django_assert_num_queries(0):
        response = server_error(request)
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong on our side" in body
    assert "/static/" not in body  # no static files: the storage may be what broke


@pytest.mark.urls("tests.courses.boom_urls")
def test_an_exception_in_a_view_gives_the_500_page(client: Client) -> None:
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()
