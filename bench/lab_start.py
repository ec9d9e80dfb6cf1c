"""CPU per start of the Kubernetes lab's sandbox, measured in CPU-seconds, not wall time.

Issue #13: a class of 50 starting "Deploy, scale, update, roll back" on 2 cores is
CPU-bound, so what a start costs is counted in CPU-seconds, which stay honest on a machine
shared with other jobs (wall time does not). A private runtimed (see _common.private_daemon,
the kubernetes service on) builds ``--n`` sandboxes with the lab's own environment
(``lab-base``, ``services: [kubernetes]``, its limits), ``--concurrency`` at a time, each as
the provisioning task asks (image list, sandbox list, create, a web and a grader token), then
waits ``--settle`` seconds (what a start leaves running: cluster controllers, kubelet, DNS),
then removes them.

Printed, per start (``*_cpu_s``):

* ``runtimed_cpu_s``: runtimed's utime + stime (all threads) plus the children it reaped
  (runc, helpers) and its fork server's (the same, of that child), from /proc/<pid>/stat
  before the first create and after the last;
* ``sandboxes_cpu_s``: what the sandboxes' own processes used (the cgroup parent's
  ``cpuacct.usage`` on v1, ``cpu.stat`` on v2): tini and ``sleep`` (the services' files are
  written from the host, runtime/sandbox/placefiles.py, so no exec agent and no shell run
  before ready; the agent's ``runc exec`` comes with the first exec after ready, the
  student's terminal, counted here only with ``--first-exec``: one exec of ``true`` after
  each start, in its time and CPU figures);
* ``host_cpu_s``: the whole host's busy CPU over the creates (every process, the kernel's
  threads, the bench itself and other people's jobs: an upper bound, noisy on a shared box);
* ``create_p50_s``/``create_p95_s``: the create call's wall time (for the record only, it
  depends on the machine's other jobs), and ``settle_cpu_s``: runtimed's CPU-seconds over the
  settle interval per sandbox alive (what idle clusters cost).

``--profile FILE`` runs ``py-spy record --gil`` (raw stacks of the thread holding the GIL: on-CPU
Python time) on runtimed over the creates and logs its hottest frames of our code; helper
children and runc are not Python of runtimed's (``perf record -p`` on runtimed shows them);
sampling costs CPU of its own, so take figures from an unprofiled run. ``--services`` splits
the cost: ``''`` (a bare sandbox), ``docker``, ``kubernetes`` (the default, the lab's).

    flock /tmp/kubelab-test.lock .venv/bin/python bench/lab_start.py [--n 16] [--concurrency 4]
        [--settle 10] [--services kubernetes] [--profile /tmp/lab_start.txt] [--first-exec]

Needs root and the ``lab-base`` image (imported from var/runtime/images, else built).
Progress on stderr; one JSON object on the last stdout line.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    Client,
    HostResources,
    cgroup_cpu_seconds,
    ensure_repo_image,
    errors,
    host_busy_seconds,
    loadavg,
    log,
    pct,
    private_daemon,
    runtimed_cpu_seconds,
    sigterm_as_interrupt,
)

TAG = "lab-start"
RESOURCES = HostResources("10.232.0.0/20", "klbenchls", "kubelab-benchls", 4_200_000_000)
LAB_SPEC: dict[str, Any] = {
    # content/intro-to-kubernetes/03-pods-and-deployments/labs/01-deploy-scale-roll-back/lab.yaml
    "image": "lab-base",
    # as courses.models.Lab.sandbox_spec() gives it to the provisioning task
    "memory": 512 * 2**20,
    "pids": 512,
    "cpus": 1.0,
    "disk": 2**30,
    "env": {},
    "services": ["kubernetes"],
    "allow_outbound": [],
}


def start_one(c: Client, n: int, *, first_exec: bool = False) -> tuple[str, float]:
    t0 = time.monotonic()
    c.images()  # the provisioning task: image present?
    c.list_sandboxes()  # ... sandbox of this session already there?
    info = c.create_sandbox({**LAB_SPEC, "labels": {"session": f"bench-{n}"}})
    sid = str(info["id"])
    c.mint_token(sid, role="web", ttl=3600)
    c.mint_token(sid, role="grader", ttl=3600)
    if first_exec:  # what the lab page does next: the student's first process in it
        c.exec(sid, ["true"], timeout=60)
    return sid, time.monotonic() - t0


def hottest(raw: Path, top: int = 25) -> list[tuple[str, int]]:
    """Frames of our code by inclusive sample count, from py-spy's raw (collapsed) output."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        seen = set()
        for frame in stack.split(";"):
            if ("runtime/" in frame or "/bench/" in frame) and frame not in seen:
                seen.add(frame)
                counts[frame] += int(n)
    return counts.most_common(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument(
        "--services", default="kubernetes", help="the sandboxes' services, comma-separated ('' for none): a split"
    )
    ap.add_argument("--profile", default=None, help="py-spy raw output file for runtimed")
    ap.add_argument(
        "--first-exec",
        action="store_true",
        help="after each start, one exec of `true` (what opening the terminal costs first: the agent start)",
    )
    args = ap.parse_args()
    LAB_SPEC["services"] = [s for s in args.services.split(",") if s]
    sigterm_as_interrupt()
    got: dict[str, Any] = {"loadavg_before": loadavg()}
    work = Path(tempfile.mkdtemp(prefix="kl-bench-ls-", dir="/tmp"))
    try:
        with private_daemon(TAG, RESOURCES, kube_listen="127.0.0.1:0") as dmn, Client(dmn.socket, timeout=120) as c:
            assert dmn.pid is not None
            ensure_repo_image(c, TAG, "lab-base", work)
            # one start before measuring: first-use costs (imports, templates) are not per start
            sid, _ = start_one(c, -1)
            c.remove_sandbox(sid)
            spy = None
            if args.profile:
                spy_argv = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw"]
                spy_argv += ["--gil", "--nonblocking", "--rate", "250"]
                spy = subprocess.Popen(
                    [*spy_argv, "--output", args.profile, "--pid", str(dmn.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=REPO,
                )
                time.sleep(1.0)
            cpu0, cg0 = runtimed_cpu_seconds(dmn.pid), cgroup_cpu_seconds(RESOURCES.cgroup_parent)
            host0 = host_busy_seconds()
            lock = threading.Lock()
            sids: list[str] = []
            times: list[float] = []

            def one(i: int) -> None:
                sid, t = start_one(c, i, first_exec=args.first_exec)
                with lock:
                    sids.append(sid)
                    times.append(t)

            with ThreadPoolExecutor(args.concurrency) as pool:
                for f in [pool.submit(one, i) for i in range(args.n)]:
                    f.result()
            cpu1, cg1 = runtimed_cpu_seconds(dmn.pid), cgroup_cpu_seconds(RESOURCES.cgroup_parent)
            host1 = host_busy_seconds()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            time.sleep(args.settle)
            cpu2 = runtimed_cpu_seconds(dmn.pid)
            for sid in sids:
                c.remove_sandbox(sid)
            assert cpu0 is not None and cpu1 is not None and cpu2 is not None
            got["runtimed_cpu_s"] = round((cpu1 - cpu0) / args.n, 3)
            if cg0 is not None and cg1 is not None:
                got["sandboxes_cpu_s"] = round((cg1 - cg0) / args.n, 3)
            got["host_cpu_s"] = round((host1 - host0) / args.n, 3)
            got["settle_cpu_s"] = round((cpu2 - cpu1) / args.n, 4)
            got["create_p50_s"] = round(statistics.median(times), 3)
            got["create_p95_s"] = round(pct(times, 95), 3)
            if args.profile and Path(args.profile).exists():
                for frame, n in hottest(Path(args.profile)):
                    log(TAG, f"{n:6d}  {frame}")
    except (RuntimeError, errors.RuntimeError, SystemExit) as e:
        log(TAG, f"FAILED, {e}")
        got["error"] = str(e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    got.update(n=args.n, concurrency=args.concurrency, services=LAB_SPEC["services"], first_exec=args.first_exec)
    got["loadavg_after"] = loadavg()
    log(TAG, f"runtimed {got.get('runtimed_cpu_s')} CPU-s per start, sandboxes {got.get('sandboxes_cpu_s')}")
    print(json.dumps(got))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
