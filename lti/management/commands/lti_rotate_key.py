"""Rotate the LTI tool's signing key (the admin's *Rotate* action, for scripts)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from lti import keys


class Command(BaseCommand):
    help = "Make a new LTI signing key; the old ones stay in the JWKS for KEY_RETENTION."

    def handle(self, *args: Any, **options: Any) -> None:
        key = keys.tool_key_rotate()
        self.stdout.write(f"new signing key {key.kid}; retired keys stay published for {keys.KEY_RETENTION}")
