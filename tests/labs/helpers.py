"""Making a lab session ready in tests, whoever builds it.

With a real Celery worker running in the same test session, the provisioning
task enqueued by lab_session_start may claim the session before the test's
own call does (the call is then told ProvisionBusy, or finds it built); then the
test waits for the worker's result instead."""

from __future__ import annotations

import time

from labs import services
from labs.models import LabSession


def provisioned(session: LabSession, timeout: float = 120) -> LabSession:
    try:
        result = services.lab_session_provision(session_id=str(session.pk))
    except services.ProvisionBusy:  # the worker holds it under a live lease: its result is awaited
        result = None
    if result is None:
        deadline = time.monotonic() + timeout
        while True:
            result = LabSession.objects.get(pk=session.pk)
            if result.status != LabSession.Status.STARTING or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    return result
