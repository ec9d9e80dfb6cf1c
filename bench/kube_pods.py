"""What running Pods costs: the lab cluster's kubelet on the sandbox's own Docker engine.

Everything runs on runtimed with the ``kubernetes`` service (the one at $RUNTIME_SOCKET, else
a private one on a temp root with its own subnet, bridge, cgroup parent and uid range, and
its grader listener on a free loopback port; see _common.py). The real kubectl 1.37 and
docker CLIs run INSIDE one ``lab-base`` sandbox created with ``services: ["kubernetes"]``
(``docker`` comes along), through runtimed exec. Times of Kubernetes objects are read on the
HOST from one watch per kind (the official ``kubernetes`` client with the grader kubeconfig,
``Client.kubeconfig``), started before the objects are created: a figure runs from the
watch event that shows the object created (or marked for deletion) to the event that shows
the condition reached, so neither kubectl's start-up nor runtimed exec is in it (both are in
``kubectl_run_p50_ms``, the wall time of one ``kubectl run`` seen from the host).

* ``pod_ready_p50_ms`` / ``pod_ready_p95_ms``: ``kubectl run pN --image=busybox:1.35 --
  sleep 3600``, one pod at a time (``--n`` after ``--warmup``), from ADDED to the first event
  with the ``Ready`` condition True.
* ``docker_run_p50_ms`` / ``docker_run_p95_ms``: the floor on the same engine in the same run:
  ``docker run -d busybox:1.35 sleep 3600`` (returns once the container runs), timed around
  the CLI inside the sandbox, as bench/docker_engine.py times ``run``; the CLI's own cost
  is ``docker_cli_floor_p50_ms`` (``docker version``: CLI start + one API round trip). A pod
  is more: an infra container, the app container joining its network namespace, status.
* ``deploy_10_ready_s``: ``kubectl create deployment hN --replicas=10 --image=kubelab/hello:1``,
  from the Deployment's ADDED to ``readyReplicas == 10``, median of ``--deploys`` rounds
  (each removed before the next).
* ``pod_delete_s``: ``kubectl delete pod pN --grace-period=1`` (median over the ``--n``
  pods), from the event with ``deletionTimestamp`` to DELETED. Not the default grace: busybox
  ``sleep`` is the container's PID 1 and has no SIGTERM handler, so the kernel drops the
  signal and every default deletion would take the full 30 s grace period (SIGKILL at the
  deadline), as on a real cluster.
* ``runtimed_idle_cpu_pct`` / ``runtimed_idle_cpu_pct_no_pods``: ``--sandboxes`` busybox
  sandboxes with the service, first without pods, then each with ``--pods`` idle busybox
  pods (made through the host API): runtimed's CPU over ``--idle-seconds`` (utime + stime of
  /proc/<pid>/stat, all its threads, plus cutime + cstime: the helpers it forks and reaps,
  runc among them) in % of one core. What idle Pods add: the kubelets are event-driven (a sync
  on a cluster write, a container exit or a due timer; a safety resync each 60 s), so an idle
  pod without probes costs about nothing (before that, a 1 s sync per cluster: 7 % of a core
  for 30 idle pods).
* ``mb_per_pod``: growth of each of those sandboxes' memory cgroup (runtimed's
  ``memory_bytes``: ``memory.usage_in_bytes`` on v1, ``memory.current`` on v2; page cache
  included) when its ``--pods`` pods start, divided by their number; median over sandboxes.

    .venv/bin/python bench/kube_pods.py [--n 20] [--warmup 3] [--deploys 3] [--sandboxes 5]
        [--pods 3] [--idle-seconds 20]

Needs root. Progress on stderr; one JSON object on the last stdout line. A part that cannot
run has null keys and stderr says why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from _common import (
    Client,
    HostResources,
    ensure_repo_image,
    errors,
    loadavg,
    log,
    ms,
    pct,
    private_daemon,
    sigterm_as_interrupt,
    unmount_beneath,
)

TAG = "kubepods"
RESOURCES = HostResources("10.236.0.0/20", "klbenchkp", "kubelab-benchkp", 3_800_000_000)
IMAGE = "busybox:1.35"
MAIN_SPEC: dict[str, Any] = {
    "image": "lab-base",  # kubectl, the docker CLI and python3
    "services": ["kubernetes"],
    "memory": 2 * 2**30,
    "pids": 2048,
    "cpus": 2,
    "disk": 4 * 2**30,
}
IDLE_SPEC: dict[str, Any] = {"image": "busybox", "services": ["kubernetes"]}
DELETE_GRACE = 1
POD_TIMEOUT = 120.0

# argv[1..2]: n, warmup. Times `docker run -d` and the CLI floor, then removes its containers.
DOCKER_MEASURE = r"""
import json, subprocess, sys, time

n, warmup = int(sys.argv[1]), int(sys.argv[2])


def timed(args):
    t = time.perf_counter()
    p = subprocess.run(["docker"] + args, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        err = (p.stderr or p.stdout).decode(errors="replace")[-1500:]
        print(json.dumps({"error": "docker %s: exit %d: %s" % (" ".join(args), p.returncode, err)}))
        sys.exit(1)
    return dt


names = ["kpbench-%d" % i for i in range(warmup + n)]
try:
    runs = [timed(["run", "-d", "--name", name, "busybox:1.35", "sleep", "3600"]) for name in names]
    floor = [timed(["version", "-f", "{{.Server.Version}}"]) for _ in range(n)]
    print(json.dumps({"run": runs[warmup:], "floor": floor}))
finally:
    subprocess.run(["docker", "rm", "-f"] + names, capture_output=True, timeout=300)
"""


# --- the host's view: watches of the sandbox's cluster ---------------------------------------------


Event = tuple[float, str, Any]  # (monotonic time of arrival, ADDED|MODIFIED|DELETED, the object)


class Recorder:
    """One watch of a namespaced kind, in a thread: every event, with its arrival time, by name."""

    def __init__(self, list_fn: Callable[..., Any], namespace: str = "default") -> None:
        self.events: dict[str, list[Event]] = {}
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        self.watch = kubernetes.watch.Watch()
        started = threading.Event()

        def run() -> None:
            try:
                initial = list_fn(namespace)
                started.set()
                for ev in self.watch.stream(
                    list_fn, namespace, resource_version=initial.metadata.resource_version, timeout_seconds=3600
                ):
                    now = time.monotonic()
                    with self.cond:
                        self.events.setdefault(ev["object"].metadata.name, []).append((now, ev["type"], ev["object"]))
                        self.cond.notify_all()
            except BaseException as e:  # reported to the waiter
                with self.cond:
                    self.error = e
                    self.cond.notify_all()
            finally:
                started.set()

        self.thread = threading.Thread(target=run, name="watch", daemon=True)
        self.thread.start()
        started.wait(30)
        if self.error is not None:
            raise RuntimeError(f"watch: {self.error}")

    def first(self, name: str, pred: Callable[[str, Any], bool], timeout: float, what: str) -> float:
        """Arrival time of the first event of ``name`` that satisfies ``pred(type, obj)``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, typ, obj in self.events.get(name, []):
                    if pred(typ, obj):
                        return t
                if self.error is not None:
                    raise RuntimeError(f"watch ended waiting for {name} {what}: {self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{name}: not {what} after {timeout:.0f} s")
                self.cond.wait(left)

    def stop(self) -> None:
        self.watch.stop()


def added(typ: str, obj: Any) -> bool:
    return typ == "ADDED"


def pod_ready(typ: str, obj: Any) -> bool:
    conds = (obj.status.conditions if obj.status else None) or []
    return typ != "DELETED" and any(c.type == "Ready" and c.status == "True" for c in conds)


def terminating(typ: str, obj: Any) -> bool:
    return obj.metadata.deletion_timestamp is not None


def deleted(typ: str, obj: Any) -> bool:
    return typ == "DELETED"


def ready_replicas(n: int) -> Callable[[str, Any], bool]:
    def pred(typ: str, obj: Any) -> bool:
        return typ != "DELETED" and obj.status is not None and (obj.status.ready_replicas or 0) >= n

    return pred


@contextlib.contextmanager
def cluster_api(c: Client, sid: str) -> Iterator[kubernetes.client.ApiClient]:
    api = kubernetes.config.new_client_from_config_dict(yaml.safe_load(c.kubeconfig(sid)))
    try:
        yield api
    finally:
        api.close()


def idle_pod(name: str) -> kubernetes.client.V1Pod:
    """What ``kubectl run NAME --image=busybox:1.35 -- sleep 3600`` creates."""
    k = kubernetes.client
    return k.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=k.V1ObjectMeta(name=name, labels={"run": name}),
        spec=k.V1PodSpec(
            containers=[k.V1Container(name=name, image=IMAGE, args=["sleep", "3600"])],
            restart_policy="Always",
            dns_policy="ClusterFirst",
        ),
    )


# --- inside the sandbox ------------------------------------------------------------------------------


def kubectl(c: Client, sid: str, *args: str, timeout: float = 60) -> float:
    """Run kubectl in the sandbox; its wall time seen from the host (exec included)."""
    t = time.perf_counter()
    r = c.exec(sid, ["kubectl", *args], timeout=timeout)
    dt = time.perf_counter() - t
    if r.timed_out or r.exit_code != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: exit {r.exit_code}: {(r.stderr_text or r.stdout_text)[-800:]}")
    return dt


def docker_floor(c: Client, sid: str, args: argparse.Namespace) -> dict[str, list[float]]:
    r = c.exec(sid, ["python3", "-c", DOCKER_MEASURE, str(args.n), str(args.warmup)], timeout=300)
    lines = [line for line in r.stdout_text.splitlines() if line.startswith("{")]
    if r.timed_out or not lines:
        raise RuntimeError(f"exit {r.exit_code}, timed out {r.timed_out}: {(r.stdout_text + r.stderr_text)[-1500:]}")
    data: dict[str, Any] = json.loads(lines[-1])
    if "error" in data:
        raise RuntimeError(data["error"])
    return {k: [float(x) for x in v] for k, v in data.items()}


def pods_part(c: Client, sid: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Pod start (and kubectl run's wall time), then deletion with a 1 s grace period."""
    with cluster_api(c, sid) as api:
        pods = Recorder(kubernetes.client.CoreV1Api(api).list_namespaced_pod)
        try:
            names = [f"p{i}" for i in range(args.warmup + args.n)]
            ready: list[float] = []
            run_wall: list[float] = []
            for i, name in enumerate(names):
                wall = kubectl(c, sid, "run", name, f"--image={IMAGE}", "--", "sleep", "3600")
                t0 = pods.first(name, added, 30, "created")
                t1 = pods.first(name, pod_ready, POD_TIMEOUT, "Ready")
                if i >= args.warmup:
                    ready.append(t1 - t0)
                    run_wall.append(wall)
            out["pod_ready"], out["kubectl_run"] = ready, run_wall
            half = len(ready) // 2
            log(
                TAG,
                f"pods: {len(names)} Ready, p50 {ms(pct(ready, 50) * 1000)} ms (first half "
                f"{ms(pct(ready[:half] or ready, 50) * 1000)} ms, second half {ms(pct(ready[half:], 50) * 1000)} ms: "
                "the earlier pods keep running, so the node holds more pods as it goes)",
            )
            gone: list[float] = []
            for i, name in enumerate(names):
                kubectl(c, sid, "delete", "pod", name, f"--grace-period={DELETE_GRACE}", "--wait=false")
                t0 = pods.first(name, terminating, 30, "terminating")
                t1 = pods.first(name, deleted, 60, "deleted")
                if i >= args.warmup:
                    gone.append(t1 - t0)
            out["pod_delete"] = gone
            log(TAG, f"pods: deleted, median {statistics.median(gone):.2f} s")
        finally:
            pods.stop()


def deploy_part(c: Client, sid: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    with cluster_api(c, sid) as api:
        core = kubernetes.client.CoreV1Api(api)
        deps = Recorder(kubernetes.client.AppsV1Api(api).list_namespaced_deployment)
        try:
            times: list[float] = []
            for i in range(args.deploys):
                name = f"h{i}"
                kubectl(c, sid, "create", "deployment", name, "--replicas=10", "--image=kubelab/hello:1")
                t0 = deps.first(name, added, 30, "created")
                t1 = deps.first(name, ready_replicas(10), POD_TIMEOUT, "10 ready")
                times.append(t1 - t0)
                log(TAG, f"deployment {name}: 10 ready in {t1 - t0:.2f} s")
                # not timed: the pods go with a 1 s grace period (httpd, PID 1, ignores SIGTERM too)
                kubectl(c, sid, "delete", "deployment", name)
                kubectl(c, sid, "delete", "pods", "-l", f"app={name}", f"--grace-period={DELETE_GRACE}", "--wait=false")
                deadline = time.monotonic() + 90
                while core.list_namespaced_pod("default", label_selector=f"app={name}").items:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the pods of deployment {name} were not gone after 90 s")
                    time.sleep(0.2)
            out["deploy"] = times
        finally:
            deps.stop()


# --- idle cost ------------------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime of all the process's threads, cutime + cstime of its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return utime + stime, cutime + cstime


def cpu_pct(pid: int, seconds: float) -> tuple[float, float]:
    """runtimed's CPU over ``seconds`` in % of one core: (itself + children, children only)."""
    hz = os.sysconf("SC_CLK_TCK")
    own0, kids0 = cpu_ticks(pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    own1, kids1 = cpu_ticks(pid)
    wall = time.monotonic() - t0
    own, kids = (own1 - own0) / hz, (kids1 - kids0) / hz
    return round((own + kids) / wall * 100, 2), round(kids / wall * 100, 2)


def idle_part(c: Client, pid: int, args: argparse.Namespace, out: dict[str, Any]) -> None:
    sids: list[str] = []
    try:
        for _ in range(args.sandboxes):
            sids.append(c.create_sandbox(IDLE_SPEC)["id"])
        log(TAG, f"idle: {len(sids)} busybox sandboxes with the service; settling 3 s, then {args.idle_seconds} s")
        time.sleep(3)
        out["cpu_no_pods"] = cpu_pct(pid, args.idle_seconds)
        before = {sid: c.stats(sid)["memory_bytes"] for sid in sids}
        for sid in sids:
            with cluster_api(c, sid) as api:
                core = kubernetes.client.CoreV1Api(api)
                pods = Recorder(core.list_namespaced_pod)
                try:
                    for i in range(args.pods):
                        core.create_namespaced_pod("default", idle_pod(f"idle{i}"))
                    for i in range(args.pods):
                        pods.first(f"idle{i}", pod_ready, POD_TIMEOUT, "Ready")
                finally:
                    pods.stop()
        log(TAG, f"idle: {args.pods} Ready pods in each; settling 3 s, then {args.idle_seconds} s")
        time.sleep(3)
        after = {sid: c.stats(sid)["memory_bytes"] for sid in sids}
        out["mb_per_pod"] = [(after[s] - before[s]) / args.pods / 2**20 for s in sids]
        out["cpu_pods"] = cpu_pct(pid, args.idle_seconds)
    finally:
        for sid in sids:
            with contextlib.suppress(errors.RuntimeError):
                c.remove_sandbox(sid)


def measure(c: Client, pid: int | None, work: Path, args: argparse.Namespace, out: dict[str, Any]) -> None:
    for name in ("busybox", "kubelab-hello:1", "lab-base"):
        ensure_repo_image(c, TAG, name, work)
    t = time.perf_counter()
    sid = c.create_sandbox(MAIN_SPEC)["id"]
    log(TAG, f"sandbox {sid} (lab-base, kubernetes + docker) in {ms((time.perf_counter() - t) * 1000)} ms")
    parts: list[tuple[str, Callable[[], None]]] = [
        ("docker run", lambda: out.update(docker_floor(c, sid, args))),
        ("pods", lambda: pods_part(c, sid, args, out)),
        ("deployment", lambda: deploy_part(c, sid, args, out)),
    ]
    try:
        for what, part in parts:
            log(TAG, f"{what}...")
            try:
                part()
            except (RuntimeError, errors.RuntimeError, kubernetes.client.ApiException) as e:
                log(TAG, f"{what}: FAILED, {e}")
    finally:
        c.remove_sandbox(sid)
    if pid is None:
        log(TAG, "idle: skipped, runtimed's pid is unknown (its socket's peer is not visible)")
        return
    try:
        idle_part(c, pid, args, out)
    except (RuntimeError, errors.RuntimeError, kubernetes.client.ApiException, OSError) as e:
        log(TAG, f"idle: FAILED, {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=20, help="pods (and docker runs) measured")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--deploys", type=int, default=3, help="rounds of the 10-replica Deployment")
    ap.add_argument("--sandboxes", type=int, default=5, help="sandboxes for the idle figures")
    ap.add_argument("--pods", type=int, default=3, help="idle pods per sandbox")
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    args = ap.parse_args()
    sigterm_as_interrupt()
    load_before = loadavg()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="kl-bench-kpw-", dir="/tmp"))
    got: dict[str, Any] = {}
    try:
        with private_daemon(TAG, RESOURCES, kube_listen="127.0.0.1:0") as dmn, Client(dmn.socket, timeout=120) as c:
            measure(c, dmn.pid, work, args, got)
    except (RuntimeError, errors.RuntimeError, SystemExit) as e:
        log(TAG, f"FAILED, {e}")
    finally:
        unmount_beneath(work)
        shutil.rmtree(work, ignore_errors=True)

    def p_ms(key: str, q: float) -> float | None:
        return ms(pct(got[key], q) * 1000) if got.get(key) else None

    def med(key: str, nd: int = 2) -> float | None:
        return round(statistics.median(got[key]), nd) if got.get(key) else None

    def cpu(key: str, i: int) -> float | None:
        return got[key][i] if key in got else None

    result = {
        "n": args.n,
        "pod_ready_p50_ms": p_ms("pod_ready", 50),
        "pod_ready_p95_ms": p_ms("pod_ready", 95),
        "kubectl_run_p50_ms": p_ms("kubectl_run", 50),
        "docker_run_p50_ms": p_ms("run", 50),
        "docker_run_p95_ms": p_ms("run", 95),
        "docker_cli_floor_p50_ms": p_ms("floor", 50),
        "deploy_10_ready_s": med("deploy"),
        "pod_delete_s": med("pod_delete"),
        "pod_delete_grace_period_s": DELETE_GRACE,
        "sandboxes": args.sandboxes,
        "pods_per_sandbox": args.pods,
        "runtimed_idle_cpu_pct": cpu("cpu_pods", 0),
        "runtimed_idle_cpu_pct_no_pods": cpu("cpu_no_pods", 0),
        "runtimed_idle_children_cpu_pct": cpu("cpu_pods", 1),
        "mb_per_pod": med("mb_per_pod"),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "bench_s": round(time.monotonic() - started, 1),
    }
    log(
        TAG,
        f"pod Ready p50 {result['pod_ready_p50_ms']} ms (docker run p50 {result['docker_run_p50_ms']} ms), "
        f"deploy 10 {result['deploy_10_ready_s']} s, delete {result['pod_delete_s']} s, idle CPU "
        f"{result['runtimed_idle_cpu_pct_no_pods']} -> {result['runtimed_idle_cpu_pct']} %, "
        f"{result['mb_per_pod']} MB/pod",
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
