from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from courses.content import ContentError, read_course
from courses.importer import ImportReport, _import_lab, import_course
from courses.killercoda import read_scenario
from courses.models import Module


class Command(BaseCommand):
    help = (
        "Import (or re-import) a course directory. Idempotent: text and checks are updated, students' progress "
        "is kept, and what the files no longer hold is archived, not deleted. With --killercoda, import one "
        "Killercoda scenario as a lab into an existing module."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="course directory, or scenario directory with --killercoda")
        parser.add_argument("--killercoda", action="store_true", help="PATH is a Killercoda scenario (index.json)")
        parser.add_argument("--into", metavar="COURSE/MODULE", help="with --killercoda: the module to add the lab to")

    def handle(self, *args: Any, path: Path, killercoda: bool, into: str | None, **options: Any) -> None:
        try:
            if killercoda:
                self._killercoda(path, into)
                return
            course_def = read_course(path)
        except ContentError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(f"{len(exc.problems)} problem(s) in {path}; nothing was imported") from None
        course, report = import_course(course_def)
        self.stdout.write(self.style.SUCCESS(f"{course.slug}: {report.summary()}"))

    @transaction.atomic
    def _killercoda(self, path: Path, into: str | None) -> None:
        if not into or into.count("/") != 1:
            raise CommandError(
                "--into COURSE/MODULE is required with --killercoda (e.g. --into intro-to-kubernetes/basics-of-docker)"
            )
        course_slug, module_slug = into.split("/")
        module = Module.objects.filter(course__slug=course_slug, slug=module_slug).first()
        if module is None:
            raise CommandError(f"no module {into}: import the course first, or check the slugs")
        order = (max(module.labs.values_list("order", flat=True), default=0) or 0) + 1
        existing = module.labs.filter(slug=read_scenario(path).slug).first()
        lab_def = read_scenario(path, order=existing.order if existing else order)
        report = ImportReport()
        lab = _import_lab(module, lab_def, course_slug, report)
        self.stdout.write(self.style.SUCCESS(f"{into}/{lab.slug}: {report.summary()}"))
