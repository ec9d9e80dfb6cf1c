"""Submission and friends arrive with the grading issue; no models yet."""

from __future__ import annotations
