"""topologySpreadConstraints the scheduler cannot honour are refused with kube-apiserver's
messages (validateTopologySpreadConstraints), not stored for a pod left Pending forever."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.security.test_kube_exhaustion import call, cluster

PODS = "/api/v1/namespaces/default/pods"
F = "spec.topologySpreadConstraints[0]"


def pod(*tsc: dict[str, Any]) -> dict[str, Any]:
    spec = {"containers": [{"name": "c", "image": "busybox"}], "topologySpreadConstraints": list(tsc)}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": spec}


def causes(c: Any, body: dict[str, Any]) -> list[tuple[str, str]]:
    r = call(c, "POST", PODS, body)
    assert r.status == 422, r.body
    assert c.store.get("pods", "default", "p") is None
    return [(x["field"], x["message"]) for x in r.body["details"]["causes"]]


def test_bad_constraints_are_refused_with_the_api_servers_messages(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    got = causes(c, pod({"maxSkew": 0, "topologyKey": "", "whenUnsatisfiable": "Sometimes"}))
    assert (f"{F}.maxSkew", "Invalid value: 0: must be greater than zero") in got
    assert (f"{F}.topologyKey", "Required value: can not be empty") in got
    assert (
        f"{F}.whenUnsatisfiable",
        'Unsupported value: "Sometimes": supported values: "DoNotSchedule", "ScheduleAnyway"',
    ) in got
    got = causes(c, pod({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2}))
    assert (
        f"{F}.minDomains",
        "Invalid value: 2: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway",
    ) in got
    twice = {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
    got = causes(c, pod(twice, dict(twice, maxSkew=2)))
    assert (f"{F}.{{topologyKey, whenUnsatisfiable}}", 'Duplicate value: "{zone, DoNotSchedule}"') in got


def test_good_constraints_are_accepted(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    ok = pod(
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2},
        {"maxSkew": 3, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
    )
    assert call(c, "POST", PODS, ok).status == 201
