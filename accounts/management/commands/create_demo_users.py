"""Create or update the demo users ``student`` and ``instructor``.

Idempotent: run it as often as you like (``make run`` does, every time). It
resets both passwords to ``DEMO_PASSWORD``, so the printed logins always work.
The instructor is also staff, to reach the admin; neither is a superuser.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.roles import INSTRUCTOR, STUDENT, add_role

DEMO_USERS = (
    # username, role, is_staff
    ("student", STUDENT, False),
    ("instructor", INSTRUCTOR, True),
)


class Command(BaseCommand):
    help = "Create or update the demo users 'student' and 'instructor' (password: DEMO_PASSWORD)."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        for username, role, is_staff in DEMO_USERS:
            user, created = user_model.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.invalid"}
            )
            changed = []
            if created:
                changed.append("created")
            if not user.check_password(settings.DEMO_PASSWORD):
                user.set_password(settings.DEMO_PASSWORD)
                changed.append("password set")
            if user.is_staff != is_staff:
                user.is_staff = is_staff
                changed.append("staff" if is_staff else "not staff")
            if not user.is_active:
                user.is_active = True
                changed.append("reactivated")
            user.save()
            if role not in set(user.groups.values_list("name", flat=True)):
                add_role(user, role)
                changed.append(f"role {role} granted")
            state = ", ".join(changed) if changed else "already up to date"
            self.stdout.write(f"demo user {username!r} ({role}): {state}")
