"""The Celery application: Redis broker and result backend, JSON only.

Settings come from Django's settings module (``CELERY_*`` names); tasks are
found in each app's ``tasks.py``. ``CELERY_TASK_ROUTES`` there sends
provisioning to the ``provisioning`` queue and grading to ``GRADER_QUEUE``
(``grading``), each consumed by workers of its own (scripts/run.py,
docker-compose.yml), so checks never wait behind a class's sandbox starts.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("kubelab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["config", "accounts", "courses", "labs", "grader", "lti"])
