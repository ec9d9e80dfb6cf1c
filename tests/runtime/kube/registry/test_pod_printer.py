"""The STATUS, READY and RESTARTS columns of ``kubectl get pods``, computed by the server as
kubectl's printPod does, from pod statuses shaped as the kubelet writes them."""

from __future__ import annotations

import datetime
from typing import Any

from runtime.kube.registry.printers import _pod


def ago(seconds: int) -> str:
    t = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(status: dict[str, Any], containers: int = 1, inits: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "creationTimestamp": ago(600)},
        "spec": {
            "containers": [{"name": f"c{i}"} for i in range(containers)],
            "initContainers": [{"name": f"i{i}"} for i in range(inits)],
            "nodeName": "n",
        },
        "status": status,
    }


def cols(p: dict[str, Any]) -> tuple[str, str, str]:
    row = _pod(p)
    return row[1], row[2], row[3]


RUNNING = {"state": {"running": {}}, "ready": True, "restartCount": 0}
WAIT_INIT = {"state": {"waiting": {"reason": "PodInitializing"}}, "ready": False, "restartCount": 0}


def test_init_containers_show_their_progress_and_failures() -> None:
    first = {"phase": "Pending", "initContainerStatuses": [WAIT_INIT, WAIT_INIT], "containerStatuses": [WAIT_INIT]}
    assert cols(pod(first, inits=2)) == ("0/1", "Init:0/2", "0")
    done = {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "restartCount": 0}
    second = {**first, "initContainerStatuses": [done, {"state": {"running": {}}, "restartCount": 0}]}
    assert cols(pod(second, inits=2)) == ("0/1", "Init:1/2", "0")
    looping = {
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(30)}},
        "restartCount": 2,
    }
    assert cols(pod({**first, "initContainerStatuses": [looping]}, inits=1)) == (
        "0/1",
        "Init:CrashLoopBackOff",
        "2 (30s ago)",
    )
    failed = {"state": {"terminated": {"exitCode": 3, "reason": "Error"}}, "restartCount": 0}
    assert cols(pod({**first, "initContainerStatuses": [failed]}, inits=1))[1] == "Init:Error"
    no_reason = {"state": {"terminated": {"exitCode": 3}}, "restartCount": 0}
    assert cols(pod({**first, "initContainerStatuses": [no_reason]}, inits=1))[1] == "Init:ExitCode:3"


def test_the_first_container_state_wins_and_only_running_ready_ones_count() -> None:
    crashing = {
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(20)}},
        "ready": False,
        "restartCount": 3,
    }
    status = {"phase": "Running", "containerStatuses": [crashing, RUNNING]}
    assert cols(pod(status, containers=2)) == ("1/2", "CrashLoopBackOff", "3 (20s ago)")
    status = {"phase": "Running", "containerStatuses": [RUNNING, crashing]}
    assert cols(pod(status, containers=2)) == ("1/2", "CrashLoopBackOff", "3 (20s ago)")
    assert cols(pod({"phase": "Running", "containerStatuses": [RUNNING]})) == ("1/1", "Running", "0")


def test_completed_beside_a_running_container_reads_running_or_not_ready() -> None:
    completed = {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "ready": False, "restartCount": 0}
    ready = {"type": "Ready", "status": "True"}
    status = {"phase": "Running", "conditions": [ready], "containerStatuses": [RUNNING, completed]}
    assert cols(pod(status, containers=2))[1] == "Running"
    status = {"phase": "Running", "conditions": [], "containerStatuses": [RUNNING, completed]}
    assert cols(pod(status, containers=2))[1] == "NotReady"
    assert cols(pod({"phase": "Succeeded", "containerStatuses": [completed]}))[1] == "Completed"


def test_deleting_a_pod_reads_terminating_until_it_has_ended() -> None:
    p = pod({"phase": "Running", "containerStatuses": [RUNNING]})
    p["metadata"]["deletionTimestamp"] = ago(1)
    assert cols(p)[1] == "Terminating"
    done = {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "ready": False, "restartCount": 0}
    p["status"] = {"phase": "Succeeded", "containerStatuses": [done]}
    assert cols(p)[1] == "Completed"  # a pod that has ended is not "Terminating"
