"""Lab sessions: a student's private sandbox for one lab.

``LabSession`` and its lifecycle services (start, provision, pause, resume, stop, release:
``services``), the one access check (``selectors.lab_session_for_user``), the door to sandbox
backends (``sandboxes``: every call to runtimed, terminals and port preview included, goes
through a ``runtime.backends.SandboxBackend``), the terminal and status consumers, the editor
and the port preview. Imports ``accounts`` and ``courses``, never ``grader`` or ``lti``
(the apps' order: courses/__init__.py).
"""
