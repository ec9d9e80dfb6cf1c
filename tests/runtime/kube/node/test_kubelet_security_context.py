"""The kubelet honours a pod's security context on the sandbox engine (runc in a real
sandbox, see test_kubelet.py): user and groups, capabilities, a read-only root, fsGroup on an
emptyDir, and runAsNonRoot verified with kubelet's own message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.runtime.kube.node.test_kubelet import Lab, lab, pod

__all__ = ["lab"]  # the module-scoped fixture, shared with test_kubelet.py's definition

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


def _status_field(lab: Lab, name: str, field: str) -> str:
    code, out = lab.exec_out(name, ["grep", f"^{field}:", "/proc/self/status"])
    assert code == 0, out
    return out.split(":", 1)[1].strip()


def test_hardened_pod_runs_as_its_user_without_capabilities_on_a_read_only_root(lab: Lab) -> None:
    ctr: dict[str, Any] = {
        "name": "app",
        "image": "busybox:1.35",
        "command": ["sleep", "3600"],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
    }
    sc = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 2000,
        "supplementalGroups": [3000],
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    lab.create("pods", pod("hardened", [ctr], securityContext=sc, volumes=[{"name": "scratch", "emptyDir": {}}]))
    lab.running("hardened")
    assert lab.exec_out("hardened", ["id", "-u"]) == (0, "10001\n")
    code, groups = lab.exec_out("hardened", ["id", "-G"])
    assert code == 0 and set(groups.split()) == {"10001", "2000", "3000"}
    assert _status_field(lab, "hardened", "CapEff") == "0000000000000000"
    assert _status_field(lab, "hardened", "CapBnd") == "0000000000000000"
    code, out = lab.exec_out("hardened", ["touch", "/root-is-read-only"])
    assert code != 0 and "Read-only file system" in out
    # the emptyDir is writable by a non-root user, and what is made in it belongs to fsGroup
    assert lab.exec_out("hardened", ["sh", "-c", "touch /scratch/f && stat -c %g /scratch/f"]) == (0, "2000\n")


def test_added_capabilities_within_the_engines_set_are_granted(lab: Lab) -> None:
    ctr = {
        "name": "net",
        "image": "busybox:1.35",
        "command": ["sleep", "3600"],
        "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
    }
    lab.create("pods", pod("capped", [ctr]))
    lab.running("capped")
    assert _status_field(lab, "capped", "CapEff") == f"{1 << 10:016x}"  # CAP_NET_BIND_SERVICE only


def test_run_as_non_root_refuses_an_image_that_runs_as_root(lab: Lab) -> None:
    ctr = {"name": "nr", "image": "busybox:1.35", "command": ["sleep", "3600"]}
    lab.create("pods", pod("nonroot", [ctr], securityContext={"runAsNonRoot": True}))
    uid = lab.pod("nonroot")["metadata"]["uid"]

    def waiting() -> dict[str, Any] | None:
        for cs in (lab.pod("nonroot").get("status") or {}).get("containerStatuses") or []:
            w = (cs.get("state") or {}).get("waiting") or {}
            if w.get("reason") == "CreateContainerConfigError":
                return dict(w)
        return None

    w = lab.until("CreateContainerConfigError", waiting)
    assert w["message"] == (
        f'container has runAsNonRoot and image will run as root (pod: "nonroot_default({uid})", container: nr)'
    )
