"""No models: users are ``django.contrib.auth`` users, roles are groups (see roles.py)."""

from __future__ import annotations
