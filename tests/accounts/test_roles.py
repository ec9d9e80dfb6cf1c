"""Roles (groups) and the role checks on pages."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Group
from django.test import Client

from accounts.roles import (
    INSTRUCTOR,
    ROLES,
    STUDENT,
    add_role,
    is_instructor,
    is_student,
    remove_role,
)
from tests.factories import InstructorFactory, StudentFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_migration_created_both_role_groups() -> None:
    assert set(Group.objects.filter(name__in=ROLES).values_list("name", flat=True)) == {
        STUDENT,
        INSTRUCTOR,
    }


def test_role_predicates() -> None:
    student = StudentFactory.create()
    instructor = InstructorFactory.create()
    nobody = UserFactory.create()
    assert is_student(student) and not is_instructor(student)
    assert is_instructor(instructor) and not is_student(instructor)
    assert not is_student(nobody) and not is_instructor(nobody)
    assert not is_student(AnonymousUser()) and not is_instructor(AnonymousUser())
    assert not is_instructor(None)


def test_superuser_counts_as_instructor_and_inactive_users_have_no_role() -> None:
    admin = UserFactory.create(is_superuser=True, is_staff=True)
    assert is_instructor(admin)
    inactive = InstructorFactory.create(is_active=False)
    assert not is_instructor(inactive)


def test_add_and_remove_role_are_idempotent_and_refresh_the_cache() -> None:
    user = StudentFactory.create()
    assert not is_instructor(user)  # fills the per-object cache
    add_role(user, INSTRUCTOR)
    add_role(user, INSTRUCTOR)
    assert is_instructor(user) and is_student(user)
    assert user.groups.filter(name=INSTRUCTOR).count() == 1
    remove_role(user, INSTRUCTOR)
    assert not is_instructor(user)


def test_add_role_recreates_a_missing_group() -> None:
    Group.objects.filter(name=STUDENT).delete()
    user = UserFactory.create()
    add_role(user, STUDENT)
    assert is_student(user)


def test_unknown_role_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        add_role(UserFactory.create(), "teacher")


def test_student_gets_403_on_the_instructor_dashboard(client: Client) -> None:
    client.force_login(StudentFactory.create())
    response = client.get("/instructor/")
    assert response.status_code == 403
    body = response.content.decode()
    assert "This page is not for your account" in body
    assert 'class="topbar"' in body  # rendered with the layout


def test_instructor_gets_the_dashboard(client: Client) -> None:
    StudentFactory.create_batch(3)
    client.force_login(InstructorFactory.create())
    response = client.get("/instructor/")
    assert response.status_code == 200
    assert response.context["summary"].students == 3
    assert response.context["summary"].instructors == 1


def test_anonymous_is_sent_to_login_from_role_pages(client: Client) -> None:
    for url in ("/instructor/", "/progress/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={url}"


def test_navigation_follows_the_roles(client: Client) -> None:
    anonymous = client.get("/").content.decode()
    assert 'href="/progress/"' not in anonymous
    assert 'href="/instructor/"' not in anonymous
    assert 'href="/accounts/login/"' in anonymous

    client.force_login(StudentFactory.create())
    student = client.get("/").content.decode()
    assert 'href="/progress/"' in student
    assert 'href="/instructor/"' not in student
    assert 'href="/admin/"' not in student

    client.force_login(InstructorFactory.create(is_staff=True))
    instructor = client.get("/").content.decode()
    assert 'href="/instructor/"' in instructor
    assert 'href="/admin/"' in instructor


def test_admin_lists_users_with_their_roles(client: Client) -> None:
    StudentFactory.create(username="listed-student")
    client.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    response = client.get("/admin/auth/user/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "listed-student" in body
    assert '<td class="field-roles">student</td>' in body
