"""Courses, their progress and the instructor's views.

The Django apps import one way, from the bottom (tests/test_app_layering.py keeps it so):

``accounts`` → ``courses`` → ``labs`` → ``grader`` → ``lti``

each importing only the apps before it (and ``runtime``, which imports none of them), the way
their models point: a ``labs.LabSession`` is of a ``courses.Lab``, a ``grader.Submission`` of a
LabSession and a ``courses.Exercise``, an LTI line item of a Lab. Above them all sit the pages
that show every app at once: each app's ``views`` and ``urls``, and the page composers of this
app, ``courses.pages``, ``classview``, ``progress`` and ``charts``; nothing below imports them.

When a lower app must reach a higher one it does not import it: it sends a signal
(``courses.signals.class_message_pushes``, delivered to the lab pages by ``labs``) or keeps a
registry that the higher app fills (``courses.content.CHECK_TYPES``, declared by each check
type in ``grader.checks``). Who is in a class (``courses.selectors.class_members``) is a
courses read that labs' access checks use too.
"""
