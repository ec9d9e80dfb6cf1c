"""Submissions and their grading (filled by a later issue)."""
