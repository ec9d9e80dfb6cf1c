from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from courses.content import ContentError, read_course


class Command(BaseCommand):
    help = "Check a course directory without importing it; every problem is reported as file:line: message."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="the course directory (holding course.yaml)")

    def handle(self, *args: Any, path: Path, **options: Any) -> None:
        try:
            course = read_course(path)
        except ContentError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(f"{len(exc.problems)} problem(s) in {path}") from None
        stats = course.stats()
        self.stdout.write(
            self.style.SUCCESS(
                f"{course.slug}: OK — {stats['modules']} modules, {stats['lessons']} lessons, "
                f"{stats['labs']} labs ({stats['enabled_labs']} enabled), {stats['exercises']} exercises"
            )
        )
