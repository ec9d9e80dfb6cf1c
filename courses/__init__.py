"""Courses, their progress and the instructor's views."""
