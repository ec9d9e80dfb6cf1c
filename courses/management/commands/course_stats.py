from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from courses.content import ContentError, read_course


class Command(BaseCommand):
    help = "Print one JSON object describing a course: modules, lessons, labs, enabled_labs, exercises, per_module."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", type=Path, nargs="?", default=None, help="course directory (default: the bundled course)"
        )

    def handle(self, *args: Any, path: Path | None, **options: Any) -> None:
        path = path or Path(settings.BASE_DIR) / "content" / "intro-to-kubernetes"
        try:
            course = read_course(path)
        except ContentError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(course.stats()))
