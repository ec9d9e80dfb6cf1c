"""Submissions and their grading.

``Submission`` and ``ExerciseProgress``, the exactly-once grading service (``services``: a
conditional claim and a lease), the check types (``checks``: each declares its fields where it
is implemented) and the verdict pushed to the lab page. Imports ``accounts``, ``courses`` and
``labs`` (the sandbox a check inspects), never ``lti`` (the apps' order: courses/__init__.py).
"""
