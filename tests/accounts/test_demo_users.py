from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from pytest_django.fixtures import Settings as SettingsWrapper

from accounts.roles import is_instructor, is_student

pytestmark = pytest.mark.django_db


def _run() -> str:
    out = StringIO()
    call_command("create_demo_users", stdout=out)
    return out.getvalue()


def test_create_demo_users_creates_both_with_the_demo_password(settings: SettingsWrapper) -> None:
    settings.DEMO_PASSWORD = "first-demo-secret"
    output = _run()
    assert "demo user 'student' (student): created, password set, role student granted" in output
    assert "demo user 'instructor' (instructor): created, password set, staff" in output

    student = User.objects.get(username="student")
    instructor = User.objects.get(username="instructor")
    assert student.check_password("first-demo-secret")
    assert instructor.check_password("first-demo-secret")
    assert is_student(student) and not is_instructor(student)
    assert is_instructor(instructor) and not is_student(instructor)
    assert instructor.is_staff and not instructor.is_superuser
    assert not student.is_staff


def test_create_demo_users_is_idempotent_and_repairs_drift(settings: SettingsWrapper) -> None:
    settings.DEMO_PASSWORD = "first-demo-secret"
    _run()
    assert "already up to date" in _run()
    assert User.objects.filter(username__in=["student", "instructor"]).count() == 2

    instructor = User.objects.get(username="instructor")
    instructor.is_staff = False
    instructor.groups.clear()
    instructor.save()
    settings.DEMO_PASSWORD = "second-demo-secret"
    output = _run()
    assert "demo user 'instructor' (instructor): password set, staff, role instructor granted" in output
    instructor.refresh_from_db()
    assert instructor.check_password("second-demo-secret")
    assert instructor.is_staff
    assert is_instructor(instructor)
    assert User.objects.get(username="student").check_password("second-demo-secret")
    assert User.objects.filter(username__in=["student", "instructor"]).count() == 2


def test_demo_users_can_log_in(client: object, settings: SettingsWrapper) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    settings.DEMO_PASSWORD = "first-demo-secret"
    _run()
    response = client.post("/accounts/login/", {"username": "instructor", "password": "first-demo-secret"})
    assert response.status_code == 302
    assert client.get("/instructor/").status_code == 200
