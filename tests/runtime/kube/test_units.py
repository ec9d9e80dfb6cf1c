"""In-process tests of the pure pieces: patches, selectors, printing, protobuf, storage."""

from __future__ import annotations

import pytest

from runtime.kube.apiserver.store import Store
from runtime.kube.controllers.manager import Controllers
from runtime.kube.machinery import patch, protobuf
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.selectors import parse_field_selector, parse_label_selector
from runtime.kube.registry import printers


def test_strategic_merge_merges_containers_by_name_and_ports_by_container_port() -> None:
    live = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "a", "image": "x:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                        {"name": "b", "image": "y:1"},
                    ]
                }
            }
        }
    }
    p = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "a", "image": "x:2", "ports": [{"containerPort": 443}]},
                        {"name": "b", "$patch": "delete"},
                    ]
                }
            }
        }
    }
    out = patch.strategic_merge(live, p)
    cs = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["a"]
    assert cs[0]["image"] == "x:2"
    # strategicpatch's normalizeElementOrder: an item only the patch has comes before the live ones
    assert cs[0]["ports"] == [{"containerPort": 443}, {"containerPort": 80, "protocol": "TCP"}]


def test_strategic_merge_directives() -> None:
    live = {
        "metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
        "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
    }
    p = {
        "metadata": {"finalizers": ["b"], "labels": {"x": None}},
        "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}},
        "$setElementOrder/x": [],
    }
    out = patch.strategic_merge(live, p)
    assert out["metadata"] == {"finalizers": ["b", "a"], "labels": {"y": "2"}}
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    out = patch.strategic_merge({"spec": {"a": 1, "b": 2}}, {"spec": {"$patch": "replace", "c": 3}})
    assert out == {"spec": {"c": 3}}


def test_service_ports_merge_by_port_and_unknown_lists_are_replaced() -> None:
    live = {"spec": {"ports": [{"port": 80, "targetPort": 8080}], "externalIPs": ["1.1.1.1"]}}
    out = patch.strategic_merge(live, {"spec": {"ports": [{"port": 80, "name": "http"}], "externalIPs": ["2.2.2.2"]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080, "name": "http"}]
    assert out["spec"]["externalIPs"] == ["2.2.2.2"]


def test_json_patch_and_merge_patch() -> None:
    doc = {"a": {"b": [1, 2]}, "c": 1}
    out = patch.json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "replace", "path": "/c", "value": 2},
            {"op": "test", "path": "/c", "value": 2},
            {"op": "move", "from": "/c", "path": "/d"},
        ],
    )
    assert out == {"a": {"b": [1, 2, 3]}, "d": 2}
    assert doc == {"a": {"b": [1, 2]}, "c": 1}
    with pytest.raises(ApiError) as e:
        patch.json_patch(doc, [{"op": "replace", "path": "/nope/x", "value": 1}])
    assert e.value.status == 422
    assert patch.merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}


def test_label_selector_grammar() -> None:
    def labels(**kw: str) -> dict[str, object]:
        return {"metadata": {"labels": kw}}

    sel = parse_label_selector("app=web,tier in (a, b),!legacy,env!=prod")
    assert sel(labels(app="web", tier="a", env="dev"))
    assert not sel(labels(app="web", tier="c"))
    assert not sel(labels(app="web", tier="a", legacy="1"))
    assert not sel(labels(app="web", tier="b", env="prod"))
    assert parse_label_selector("x notin (1)")(labels())
    assert parse_label_selector("x")(labels(x=""))


def test_field_selector_rejects_unsupported_fields() -> None:
    sel = parse_field_selector("metadata.name=a,status.phase!=Running", ("status.phase",))
    assert sel({"metadata": {"name": "a"}, "status": {"phase": "Pending"}})
    assert not sel({"metadata": {"name": "a"}, "status": {"phase": "Running"}})
    with pytest.raises(ApiError) as e:
        parse_field_selector("spec.foo=1", ())
    assert e.value.status == 400 and e.value.message == "field label not supported: spec.foo"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (10 * 3600, "10h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y70d"),
    ],
)
def test_human_duration_matches_kubectl(seconds: int, text: str) -> None:
    assert printers.human_duration(seconds) == text


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _field(num: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(num << 3) + _varint(payload)
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def test_protobuf_envelope_decodes_a_configmap() -> None:
    meta = _field(1, b"cfg") + _field(11, _field(1, b"app") + _field(2, b"web"))
    cm = _field(1, meta) + _field(2, _field(1, b"k") + _field(2, b"v")) + _field(4, 0)
    typemeta = _field(1, b"v1") + _field(2, b"ConfigMap")
    body = protobuf.MAGIC + _field(1, typemeta) + _field(2, cm)
    assert protobuf.decode(body) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "cfg", "labels": {"app": "web"}},
        "data": {"k": "v"},
        "immutable": False,
    }
    with pytest.raises(protobuf.DecodeError):
        protobuf.decode(b"{}")


def test_store_persists_and_replays(tmp_path) -> None:
    s = Store(tmp_path / "s.jsonl")
    s.put("configmaps", {"metadata": {"name": "a", "namespace": "d"}}, "ADDED")
    s.put("configmaps", {"metadata": {"name": "b", "namespace": "d"}}, "ADDED")
    s.remove("configmaps", "d", "a")
    s.close()
    s2 = Store(tmp_path / "s.jsonl")
    assert s2.rv == 3
    assert [o["metadata"]["name"] for o in s2.list("configmaps")] == ["b"]
    s2.compact()
    s2.close()
    s3 = Store(tmp_path / "s.jsonl")
    assert s3.rv == 3 and s3.get("configmaps", "d", "b") is not None
    assert s3.events_since(0) is None  # history does not survive a restart: 410 Gone
    assert s3.events_since(3) == []
    s3.close()


def test_cron_schedules() -> None:
    import datetime

    from runtime.kube.machinery.cron import CronError, Schedule

    now = datetime.datetime(2026, 11, 25, 20, 33, 10, tzinfo=datetime.UTC)
    hour_ago = now - datetime.timedelta(hours=1)
    assert Schedule("*/5 * * * *").last_between(hour_ago, now) == now.replace(minute=30, second=0)
    assert Schedule("@hourly").last_between(hour_ago, now) == now.replace(minute=0, second=0)
    assert Schedule("0 9 * * mon-fri").last_between(hour_ago, now) is None
    paris = Schedule("30 20 * * *", "Europe/Paris").last_between(now - datetime.timedelta(days=1), now)
    assert paris == now.replace(hour=19, minute=30, second=0)
    for bad in ("nope", "61 * * * *", "* * * *"):
        with pytest.raises(CronError):
            Schedule(bad)


def test_cron_next_after_agrees_with_a_minute_by_minute_scan() -> None:
    import datetime

    from runtime.kube.machinery.cron import Schedule

    now = datetime.datetime(2026, 11, 25, 20, 33, 10, tzinfo=datetime.UTC)
    specs = [
        ("*/5 * * * *", None),
        ("@hourly", None),
        ("0 9 * * mon-fri", None),
        ("30 20 * * *", "Europe/Paris"),
        ("15 2 1,15 * *", None),
        ("0 0 * * 0", None),
        ("33 20 * * *", None),  # this very minute has begun: the next one is tomorrow's
    ]
    for spec, tz in specs:
        sched = Schedule(spec, tz)
        t = now.replace(second=0) + datetime.timedelta(minutes=1)
        while not sched.matches(t):
            t += datetime.timedelta(minutes=1)
        assert sched.next_after(now) == t, spec
    assert Schedule("0 0 30 2 *").next_after(now) is None  # February has no 30th


def test_cronjob_is_due_at_its_next_minute_only(tmp_path) -> None:
    import datetime
    import time

    from runtime.kube import registry
    from runtime.kube.apiserver.cluster import Cluster
    from runtime.kube.apiserver.provision import create_cluster

    create_cluster(tmp_path, "cron", "https://127.0.0.1:1", controllers=Controllers)
    c = Cluster("cron", tmp_path / "clusters" / "cron", controllers=Controllers)
    cj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/1 * * * *",
            "jobTemplate": {
                "spec": {
                    "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
                }
            },
        },
    }
    c.create(registry.BY_GR["cronjobs.batch"], "default", cj)
    c.controllers.reconcile()
    due = c.controllers.next_due()
    assert due is not None
    nxt = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)).replace(second=0, microsecond=0)
    assert abs(due - nxt.timestamp()) <= 60  # the next whole minute (the clock may have turned)
    assert due == int(due) and int(due) % 60 == 0
    assert c.controllers.has_timers() is (due <= time.time())


def test_cronjob_controller_creates_due_job(tmp_path) -> None:
    import copy

    from runtime.kube import registry
    from runtime.kube.apiserver.cluster import Cluster
    from runtime.kube.apiserver.provision import create_cluster

    create_cluster(tmp_path, "cron", "https://127.0.0.1:1", controllers=Controllers)
    c = Cluster("cron", tmp_path / "clusters" / "cron", controllers=Controllers)
    cj_def = registry.BY_GR["cronjobs.batch"]
    cj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {
                "spec": {
                    "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
                }
            },
        },
    }
    c.create(cj_def, "default", cj)
    c.controllers.reconcile()
    assert c.store.list("jobs.batch", "default") == []  # not due yet: created this minute
    stored = copy.deepcopy(c.store.get(cj_def.gr, "default", "tick"))
    assert stored is not None
    stored["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    c.store.put(cj_def.gr, stored, "MODIFIED")
    c.controllers.reconcile()
    jobs = c.store.list("jobs.batch", "default")
    assert len(jobs) == 1 and jobs[0]["metadata"]["name"].startswith("tick-")
    assert jobs[0]["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    status = c.store.get(cj_def.gr, "default", "tick")["status"]  # type: ignore[index]
    assert status["active"][0]["name"] == jobs[0]["metadata"]["name"] and status["lastScheduleTime"]
    assert len(c.store.list("pods", "default")) == 1
    c.controllers.reconcile()
    assert len(c.store.list("jobs.batch", "default")) == 1  # the same minute is not run twice
    c.store.close()


def test_ssa_removes_whole_list_items_it_stopped_applying_and_reports_conflicts() -> None:
    from runtime.kube.machinery import ssa

    def cfg(envs: list[str], replicas: int = 2) -> dict[str, object]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "replicas": replicas,
                "template": {
                    "spec": {
                        "containers": [{"name": "c", "image": "x", "env": [{"name": e, "value": "1"} for e in envs]}]
                    }
                },
            },
        }

    live = ssa.apply({"metadata": {"name": "d"}}, cfg(["A", "B"]), "me", "apps/v1", "t", force=False)
    live = ssa.apply(live, cfg(["A"]), "me", "apps/v1", "t", force=False)
    assert live["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    other = dict(live, spec=dict(live["spec"], replicas=5))
    ssa.record_update(other, live, "ops", "apps/v1", "t")
    with pytest.raises(ApiError) as e:
        ssa.apply(other, cfg(["A"]), "me", "apps/v1", "t", force=False)
    assert e.value.status == 409
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "ops" using apps/v1: .spec.replicas'
    forced = ssa.apply(other, cfg(["A"]), "me", "apps/v1", "t", force=True)
    assert forced["spec"]["replicas"] == 2
    managers = {m["manager"] for m in forced["metadata"]["managedFields"]}
    assert managers == {"me"}  # ops lost its only field


@pytest.mark.parametrize("name", ["019738323812", "1234e5678901", "000000000000", "abcdef012345"])
def test_kubeconfig_of_a_numeric_looking_cluster_name_is_read_by_kubectl(tmp_path, name: str) -> None:
    """Sandbox ids name the clusters; kubectl (go-yaml) must read them as strings."""
    import subprocess

    from runtime.kube.apiserver.provision import kubeconfig
    from tests.runtime.kube.conftest import KUBECTL

    path = tmp_path / "config"
    path.write_text(kubeconfig(name, "https://127.0.0.1:6443", b"ca", "a-token"))
    done = subprocess.run(
        [
            KUBECTL,
            "config",
            "view",
            "--kubeconfig",
            str(path),
            "-o",
            "jsonpath={.clusters[0].name} {.contexts[0].context.cluster}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{name} {name}"
