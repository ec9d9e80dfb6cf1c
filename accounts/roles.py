"""The two roles of the platform, as Django groups.

A user may hold both roles. Superusers count as instructors, so an operator
who only ran ``createsuperuser`` can still reach the instructor pages. Every
check goes through this module: views use ``role_required``, templates get
``is_instructor`` from the context processor, consumers call ``roles_of``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Final, TypeVar, cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

STUDENT: Final = "student"
INSTRUCTOR: Final = "instructor"
ROLES: Final = (STUDENT, INSTRUCTOR)

# Cached on the user object for the length of a request: the navigation asks
# on every page, and a view may ask again.
_CACHE_ATTR = "_kubelab_roles"

AnyUser = AbstractBaseUser | AnonymousUser
ViewFunc = TypeVar("ViewFunc", bound=Callable[..., HttpResponse])


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")


def roles_of(user: AnyUser | None) -> frozenset[str]:
    """The roles ``user`` holds (empty for anonymous or inactive users)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cast(frozenset[str], cached)
    groups = getattr(user, "groups", None)
    names = set(groups.filter(name__in=ROLES).values_list("name", flat=True)) if groups else set()
    if getattr(user, "is_superuser", False):
        names.add(INSTRUCTOR)
    roles = frozenset(names)
    setattr(user, _CACHE_ATTR, roles)
    return roles


def has_role(user: AnyUser | None, role: str) -> bool:
    _check_role(role)
    return role in roles_of(user)


def is_instructor(user: AnyUser | None) -> bool:
    return has_role(user, INSTRUCTOR)


def is_student(user: AnyUser | None) -> bool:
    return has_role(user, STUDENT)


def add_role(user: AbstractBaseUser, role: str) -> None:
    """Grant ``role`` to ``user`` (idempotent)."""
    _check_role(role)
    # get_or_create: the data migration makes both groups, but a database
    # flushed by a test (or by hand) must not break sign-up.
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)  # type: ignore[attr-defined]
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def remove_role(user: AbstractBaseUser, role: str) -> None:
    _check_role(role)
    user.groups.remove(*Group.objects.filter(name=role))  # type: ignore[attr-defined]
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def role_required(role: str) -> Callable[[ViewFunc], ViewFunc]:
    """View decorator: anonymous users go to the login page, users without
    ``role`` get 403 (rendered by templates/403.html)."""
    _check_role(role)

    def decorator(view: ViewFunc) -> ViewFunc:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page is for the {role} role.")
            return view(request, *args, **kwargs)

        return cast(ViewFunc, wrapper)

    return decorator
