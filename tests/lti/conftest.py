"""Fixtures of the LTI tests: the test LMS (tests/lti/platform.py) and a small course."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.lti.platform import lms  # noqa: F401  (the fixture)


@dataclass
class Course:
    course: Any
    module: Any
    lab: Any
    exercises: list[Any]

    @property
    def lab_target(self) -> str:
        return f"lab:{self.course.slug}/{self.module.slug}/{self.lab.slug}"


@pytest.fixture
def course(db: None) -> Course:
    from tests.factories import CourseFactory, LabFactory, ModuleFactory, StepFactory
    from tests.grader.helpers import ExerciseFactory

    course = CourseFactory.create(slug="k8s", title="Kubernetes")
    module = ModuleFactory.create(course=course, slug="pods", title="Pods")
    lab = LabFactory.create(module=module, slug="first-pod", title="First Pod")
    step = StepFactory.create(lab=lab)
    exercises = [ExerciseFactory.create(step=step, slug=f"ex-{n}") for n in (1, 2)]
    return Course(course=course, module=module, lab=lab, exercises=exercises)
