"""factory_boy factories shared by every suite.

Call ``.create()`` rather than the class itself: mypy types ``create`` as
returning a ``User``. ``StudentFactory.create()`` is a student,
``InstructorFactory.create()`` an instructor, ``UserFactory.create(roles=[...])``
holds the roles given; every one has the password ``PASSWORD``.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from factory.declarations import LazyAttribute, PostGeneration, Sequence, SubFactory
from factory.django import DjangoModelFactory, Password

from accounts.roles import INSTRUCTOR, STUDENT, add_role

PASSWORD = "correct-horse-battery-staple"


def _granting(*default: str) -> PostGeneration:
    """A ``roles`` declaration: grants ``default``, or the roles passed as
    ``roles=[...]`` when the factory is called."""

    def grant(user: User, create: bool, extracted: Iterable[str] | None, **kwargs: object) -> None:
        if not create:
            return
        for role in default if extracted is None else extracted:
            add_role(user, role)

    return PostGeneration(grant)


class UserFactory(DjangoModelFactory[User]):
    """A user with no role (pass ``roles=[...]`` to grant some)."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    username = Sequence(lambda n: f"user{n}")
    email = LazyAttribute(lambda user: f"{user.username}@example.com")
    password = Password(PASSWORD)
    roles = _granting()


class StudentFactory(UserFactory):
    username = Sequence(lambda n: f"student{n}")
    roles = _granting(STUDENT)


class InstructorFactory(UserFactory):
    username = Sequence(lambda n: f"instructor{n}")
    roles = _granting(INSTRUCTOR)


# --- the course -------------------------------------------------------------------

from courses.models import Course, Lab, Module, Step  # noqa: E402


class CourseFactory(DjangoModelFactory[Course]):
    class Meta:
        model = Course

    slug = Sequence(lambda n: f"course-{n}")
    title = Sequence(lambda n: f"Course {n}")


class ModuleFactory(DjangoModelFactory[Module]):
    class Meta:
        model = Module

    course = SubFactory(CourseFactory)
    slug = Sequence(lambda n: f"module-{n}")
    title = Sequence(lambda n: f"Module {n}")
    order = Sequence(lambda n: n)


class LabFactory(DjangoModelFactory[Lab]):
    """A lab on the busybox image (fast to start; what the tests' runtimed has)."""

    class Meta:
        model = Lab

    module = SubFactory(ModuleFactory)
    slug = Sequence(lambda n: f"lab-{n}")
    title = Sequence(lambda n: f"Lab {n}")
    intro = "Try things out."
    environment = LazyAttribute(lambda lab: {"image": "busybox", "memory": 128 * 2**20, "pids": 256})


class StepFactory(DjangoModelFactory[Step]):
    class Meta:
        model = Step

    lab = SubFactory(LabFactory)
    order = Sequence(lambda n: n)
    title = Sequence(lambda n: f"Step {n}")
    body = "Run this:\n\n```sh run\necho hello\n```\n"
