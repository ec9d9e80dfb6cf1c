"""Geometry of the class view's charts, drawn as SVG by the template.

Server-side SVG rather than a chart library: nothing to vendor or load, the
charts exist without JavaScript, and every text in them goes through Django's
autoescaping (exercise titles come from course files, names from students).
Each chart is ``role="img"`` with a title and description, every bar has a
``<title>`` a screen reader announces, and the numbers are also in the tables
next to the charts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from courses.classview import NOT_STARTED, PASSED, STUCK, TRYING, ClassView

WIDTH = 780
LABEL = 220
BAR = LABEL + 8
BAR_WIDTH = 330
ROW = 24
COLOURS = {PASSED: "#2da44e", TRYING: "#bf8700", STUCK: "#cf222e", NOT_STARTED: "#d0d7de"}
LEGEND = {PASSED: "passed", TRYING: "trying", STUCK: "stuck", NOT_STARTED: "not started"}


@dataclass
class Segment:
    state: str
    label: str
    count: int
    x: float
    width: float
    colour: str


@dataclass
class Row:
    label: str
    y: int
    text_y: int
    segments: list[Segment] = field(default_factory=list)
    value: str = ""
    description: str = ""


@dataclass
class Chart:
    width: int
    height: int
    rows: list[Row]
    bar_x: int
    value_x: int
    legend: list[dict[str, Any]]


def _label(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exercise_chart(view: ClassView) -> Chart:
    """One stacked bar per exercise: passed, trying, stuck, not started; attempts at its end."""
    rows = []
    for i, stats in enumerate(view.exercises):
        y = 8 + i * ROW
        row = Row(
            label=_label(f"{stats.exercise.lab.slug}/{stats.exercise.slug}"),
            y=y,
            text_y=y + 14,
            value=f"{stats.pass_rate}% · {stats.attempts} attempt{'s' if stats.attempts != 1 else ''}",
        )
        x = float(BAR)
        total = stats.students or 1
        for state in (PASSED, TRYING, STUCK, NOT_STARTED):
            count = stats.counts[state]
            width = BAR_WIDTH * count / total
            if count:
                row.segments.append(Segment(state, LEGEND[state], count, round(x, 1), round(width, 1), COLOURS[state]))
            x += width
        row.description = (
            f"{stats.exercise.title}: "
            + ", ".join(f"{stats.counts[s]} {LEGEND[s]}" for s in (PASSED, TRYING, STUCK, NOT_STARTED))
            + f"; {stats.attempts} attempts"
        )
        rows.append(row)
    return Chart(
        width=WIDTH,
        height=16 + ROW * len(rows),
        rows=rows,
        bar_x=BAR,
        value_x=BAR + BAR_WIDTH + 6,
        legend=[{"label": LEGEND[s], "colour": COLOURS[s]} for s in (PASSED, TRYING, STUCK, NOT_STARTED)],
    )


def lab_time_chart(view: ClassView) -> Chart:
    """One bar per lab: the median minutes its students spent in it."""
    longest = max((t.median_minutes for t in view.lab_times), default=0.0) or 1.0
    rows = []
    for i, lab_time in enumerate(view.lab_times):
        y = 8 + i * ROW
        width = round(BAR_WIDTH * lab_time.median_minutes / longest, 1)
        minutes = f"{lab_time.median_minutes:g} min"
        row = Row(
            label=_label(lab_time.lab.title),
            y=y,
            text_y=y + 14,
            value=f"{minutes} ({lab_time.students} student{'s' if lab_time.students != 1 else ''})",
            description=f"{lab_time.lab.title}: median {minutes} over {lab_time.students} students",
        )
        if lab_time.students:
            row.segments.append(Segment("time", "median", lab_time.students, float(BAR), width, "#0969da"))
        rows.append(row)
    return Chart(width=WIDTH, height=16 + ROW * len(rows), rows=rows, bar_x=BAR, value_x=BAR + BAR_WIDTH + 6, legend=[])
