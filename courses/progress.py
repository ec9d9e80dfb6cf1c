"""A student's progress through a course, rolled up from exercises.

An exercise passes when all its checks pass (``ExerciseProgress.status``).
A step is complete when every exercise in it passed (a step without exercises
is complete once its lab is), a lab when every exercise passed, a module when
all its labs are complete, a course when all its modules are. Lessons have no
checks, so they count for "continue where you left off" only through their
order. Percentages are passed exercises over exercises.

Every function does a fixed number of queries for a whole course.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from courses.models import Course, Exercise, Lab, Lesson, Module
from grader.models import ExerciseProgress


@dataclass
class Tally:
    passed: int = 0
    total: int = 0

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else int(100 * self.passed / self.total)

    @property
    def complete(self) -> bool:
        return self.passed >= self.total

    def add(self, other: Tally) -> None:
        self.passed += other.passed
        self.total += other.total


@dataclass
class LabProgress(Tally):
    lab: Lab | None = None
    attempted: bool = False
    steps: dict[int, Tally] = field(default_factory=dict)


@dataclass
class ModuleProgress(Tally):
    module: Module | None = None
    labs: list[LabProgress] = field(default_factory=list)


@dataclass
class CourseProgress(Tally):
    course: Course | None = None
    modules: list[ModuleProgress] = field(default_factory=list)
    next_item: Lab | Lesson | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "total": self.total,
            "percent": self.percent,
            "complete": self.complete,
            "next": self.next_item,
            "modules": {m.module.pk: m for m in self.modules if m.module is not None},
        }


def _statuses(user: Any, exercises: list[Exercise]) -> dict[int, str]:
    if not getattr(user, "is_authenticated", False):
        return {}
    rows = ExerciseProgress.objects.filter(user=user, exercise__in=exercises).values_list("exercise_id", "status")
    return dict(rows)


def course_progress(user: Any, course: Course) -> CourseProgress:
    """The whole course for ``user``: per module, lab and step, and what to do next."""
    modules = list(course.modules.active().order_by("order", "slug"))
    labs = list(Lab.objects.active().filter(module__in=modules).order_by("order", "slug"))
    lessons = list(Lesson.objects.active().filter(module__in=modules).order_by("order", "slug"))
    exercises = list(Exercise.objects.active().filter(lab__in=labs).select_related("step"))
    statuses = _statuses(user, exercises)
    by_lab: dict[int, list[Exercise]] = {}
    for exercise in exercises:
        by_lab.setdefault(exercise.lab_id, []).append(exercise)
    result = CourseProgress(course=course)
    for module in modules:
        mp = ModuleProgress(module=module)
        for lab in (lab for lab in labs if lab.module_id == module.pk):
            lp = LabProgress(lab=lab)
            for exercise in by_lab.get(lab.pk, []):
                status = statuses.get(exercise.pk)
                done = status == ExerciseProgress.Status.PASSED
                step = lp.steps.setdefault(exercise.step_id, Tally())
                step.total += 1
                step.passed += int(done)
                lp.total += 1
                lp.passed += int(done)
                lp.attempted = lp.attempted or status is not None
            mp.labs.append(lp)
            mp.add(lp)
        result.modules.append(mp)
        result.add(mp)
    result.next_item = _next_item(modules, labs, lessons, result)
    return result


def _next_item(
    modules: list[Module], labs: list[Lab], lessons: list[Lesson], progress: CourseProgress
) -> Lab | Lesson | None:
    """Continue where you left off: the first unfinished lab after the last lab
    the student worked on (or the first unfinished lab); before that lab, its
    module's first lesson when the student has not started the module."""
    lab_progress = {lp.lab.pk: lp for mp in progress.modules for lp in mp.labs if lp.lab is not None}
    ordered = [lab for module in modules for lab in labs if lab.module_id == module.pk]
    last_touched = max((i for i, lab in enumerate(ordered) if lab_progress[lab.pk].attempted), default=-1)
    candidates = ordered[last_touched:] if last_touched >= 0 else ordered
    for lab in candidates + ordered:
        lp = lab_progress[lab.pk]
        if lp.total and not lp.complete:
            if not any(lab_progress[o.pk].attempted for o in ordered if o.module_id == lab.module_id):
                first_lesson = next((le for le in lessons if le.module_id == lab.module_id), None)
                if first_lesson is not None:
                    return first_lesson
            return lab
    return None


def module_progress(user: Any, module: Module) -> ModuleProgress:
    for mp in course_progress(user, module.course).modules:
        if mp.module is not None and mp.module.pk == module.pk:
            return mp
    return ModuleProgress(module=module)


def lab_progress(user: Any, lab: Lab) -> LabProgress:
    exercises = list(Exercise.objects.active().filter(lab=lab))
    statuses = _statuses(user, exercises)
    lp = LabProgress(lab=lab)
    for exercise in exercises:
        done = statuses.get(exercise.pk) == ExerciseProgress.Status.PASSED
        step = lp.steps.setdefault(exercise.step_id, Tally())
        step.total += 1
        step.passed += int(done)
        lp.total += 1
        lp.passed += int(done)
        lp.attempted = lp.attempted or exercise.pk in statuses
    return lp


def user_progress(user: Any, courses: list[Course]) -> list[CourseProgress]:
    """My progress: every course the user may see."""
    return [course_progress(user, course) for course in courses]


# --- the instructor's view of a class -------------------------------------------------------


@dataclass
class MatrixRow:
    student: Any
    cells: list[ExerciseProgress | None]
    passed: int
    last_activity: Any


@dataclass
class ClassMatrix:
    exercises: list[Exercise]
    rows: list[MatrixRow]


def class_matrix(
    *, course: Course, module: Module | None = None, search: str = "", status: str = "", viewer: Any = None
) -> ClassMatrix:
    """Students by exercises of ``course`` (or one module): who passed what,
    in how many attempts, and when they were last active.

    Students are the course's class as ``viewer`` sees it (``courses.selectors.class_members``:
    an LMS course's roster, a site course's own students, plus anyone who worked in the
    course; an LMS-made instructor sees their LMS course's roster only); ``search``
    matches username, name or email; ``status`` keeps students with at least one
    exercise in that state (``passed``, ``attempted``, ``not_started``).
    """
    from django.db.models import Q

    from courses.selectors import class_members

    exercises = Exercise.objects.active().filter(lab__module__course=course, lab__archived_at__isnull=True)
    if module is not None:
        exercises = exercises.filter(lab__module=module)
    ordered = list(
        exercises.select_related("lab__module", "step").order_by(
            "lab__module__order", "lab__module__slug", "lab__order", "lab__slug", "step__order", "order", "slug"
        )
    )
    progress = ExerciseProgress.objects.filter(exercise__in=ordered)
    users = class_members(course, viewer=viewer)
    if search:
        users = users.filter(
            Q(username__icontains=search)
            | Q(first_name__icontains=search)
            | Q(last_name__icontains=search)
            | Q(email__icontains=search)
        )
    students = list(users.distinct().order_by("username")[:1000])
    cells: dict[tuple[int, int], ExerciseProgress] = {
        (p.user_id, p.exercise_id): p for p in progress.filter(user__in=students)
    }
    rows = []
    for student in students:
        row_cells = [cells.get((student.pk, e.pk)) for e in ordered]
        states = [c.status if c else ExerciseProgress.Status.NOT_STARTED for c in row_cells]
        if status and status not in states:
            continue
        activity = [c.last_activity_at for c in row_cells if c is not None]
        rows.append(
            MatrixRow(
                student=student,
                cells=row_cells,
                passed=states.count(ExerciseProgress.Status.PASSED),
                last_activity=max(activity) if activity else None,
            )
        )
    return ClassMatrix(exercises=ordered, rows=rows)


def csv_safe(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
