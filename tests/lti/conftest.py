"""Fixtures of the LTI tests: the test LMS (tests/lti/platform.py) and a small course."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lti.platform import LMS, SmallCourse, running_lms, small_course


@pytest.fixture
def lms(db: None) -> Iterator[LMS]:
    with running_lms() as started:
        yield started


@pytest.fixture
def course(db: None) -> SmallCourse:
    return small_course()
