"""Density: N idle busybox sandboxes, each with a shell in a PTY session.

Talks to the real API (``runtime.client.Client``): the runtimed at
$RUNTIME_SOCKET if set, else a private one on a temp root with its own subnet
(a /22, room for 1000), bridge, cgroup parent and uid range. Needs root.

For each of N sandboxes (default 200): ``create_sandbox`` (network, cgroups,
overlay), ``create_session`` (a PTY shell, as the lab terminal opens), then a
brief ``attach`` until the shell's prompt shows, so every shell is known to be
up; the attach is closed, the session stays. Sequential by default
(``--concurrency`` to use a small thread pool). ``create_all_s`` covers all of
that; ``remove_all_s`` is ``remove_sandbox`` of all of them, sequentially.

Memory. This host is shared with other sessions whose tests allocate and free
hundreds of MB while we measure, so the host-wide figure alone is not usable;
the headline is composed of parts measured for our processes only, and the
host-wide figure is printed beside it with its noise:

* ``mb_per_sandbox`` (the headline, target <= 8 MB) = (``procs_pss`` +
  ``kernel`` + ``runtimed_growth``) / N, all taken after every sandbox is up
  and has settled (``--settle`` s):
  - ``procs_pss_mb_per_sandbox``: the summed Pss (smaps_rollup) of every
    process under runtimed (it is the sandboxes' subreaper: tini, sleep, the
    exec agent, the session's shell; ``sandbox_processes`` counts them by name).
    Pss splits shared pages (the busybox binary, libc-free as it is static)
    fairly among sharers, so it neither double-counts nor hides them.
  - ``kernel_mb_per_sandbox``: growth of SUnreclaim + KernelStack + PageTables
    (/proc/meminfo): netns, veths, nftables, mounts, loop devices, stacks.
    Host-wide, so other sessions can still nudge it a little.
  - ``runtimed_growth_mb_per_sandbox``: runtimed's VmRSS with N up minus idle.
* ``host_mb_per_sandbox``: the drop of MemAvailable from before the first
  create (after one warm-up create/remove: ext4 template, mount helper, image
  layers cached) to all N up, / N. Counts everything, including other
  sessions' activity: ``noise_mb`` (spread of 5 samples 1 s apart, before and
  after) and ``recovered_mb`` (MemAvailable regained after remove) say how far
  to trust it. ``meminfo_delta_kb`` (after - before) breaks it down by field;
  ``accounted_mb_per_sandbox`` is the growth of all non-reclaimable fields
  (AnonPages + Shmem + SUnreclaim + KernelStack + PageTables) / N.
* Page cache caveat: clean page cache is reclaimable and MemAvailable counts it
  as available. ``disk_cache_mb_per_sandbox`` (fincore(1) of the sandboxes'
  sparse disk images) is the cache their ext4 upper dirs hold; it is not in the
  headline, being reclaimable once written back. Reclaimable slab (dentries,
  inodes of the overlay mounts) is likewise left out; see SReclaimable.
* ``cgroup_mb_per_sandbox``: the sum of the sandboxes' own cgroup memory usage
  (``stats`` API: memory.usage_in_bytes on v1 / memory.current on v2) / N,
  what the limits see; ``cgroup_parent_memory_stat_mb`` is the parent's
  memory.stat (v1 total_rss/total_cache, v2 anon/file/kernel).
* ``runtimed_rss_mb``: VmRSS of the daemon process (ours, or the socket's
  listener found by SO_PEERCRED) with all N up; ``runtimed_rss_idle_mb`` before.

    .venv/bin/python bench/sandbox_density.py [--n 200] [--settle 15] [--concurrency 1]

Cleans up on Ctrl-C/SIGTERM/failure: removes every sandbox it created, then
(if it started it) stops runtimed and removes its root, bridge and cgroups.
Progress on stderr; one JSON object on the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import (
    Client,
    HostResources,
    MemInfo,
    ensure_busybox,
    loadavg,
    log,
    ms,
    pct,
    pid_status_kb,
    private_daemon,
    sigterm_as_interrupt,
)

TAG = "density"
RESOURCES = HostResources("10.246.0.0/22", "klbenchd", "kubelab-benchd", 3_700_000_000)
PROMPT = b"# "
MEM_FIELDS = (
    "MemAvailable",
    "MemFree",
    "Cached",
    "Buffers",
    "Dirty",
    "Shmem",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "AnonPages",
)
# memory that cannot be reclaimed, from meminfo: less sensitive to other sessions' page cache
ACCOUNTED = ("AnonPages", "Shmem", "SUnreclaim", "KernelStack", "PageTables")
KERNEL = ("SUnreclaim", "KernelStack", "PageTables")


def wait_prompt(c: Client, sid: str, session_id: str, timeout: float = 60) -> None:
    with c.attach(sid, session_id) as att:
        buf = b""
        deadline = time.monotonic() + timeout
        while PROMPT not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"no prompt from the shell in {sid} in {timeout}s; got {buf[-200:]!r}")
            item = att.recv(timeout=left)
            if item is None:
                raise SystemExit(f"the session in {sid} ended before its prompt; got {buf[-200:]!r}")
            if isinstance(item, bytes):
                buf += item


def mem_available_kb(samples: int = 5) -> tuple[int, int]:
    """(median MemAvailable, spread max-min) over a few samples 1 s apart."""
    xs = []
    for i in range(samples):
        if i:
            time.sleep(1)
        xs.append(MemInfo()["MemAvailable"])
    return int(statistics.median(xs)), max(xs) - min(xs)


def nprocs() -> int:
    return sum(1 for p in os.listdir("/proc") if p.isdigit())


def descendants(root_pid: int) -> list[int]:
    """Every live process under ``root_pid`` (runtimed is the sandboxes' subreaper: tini, shells...)."""
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], [root_pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def pss_kb(pids: list[int]) -> tuple[int, dict[str, int]]:
    """(sum of Pss, process count by name) over pids: shared pages split fairly between sharers."""
    total = 0
    names: dict[str, int] = {}
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
        names[name] = names.get(name, 0) + 1
    return total, names


def parent_memory_stat(res: HostResources | None) -> dict[str, int] | None:
    """memory.stat of our daemon's cgroup parent (all sandboxes together), v1 or v2."""
    if res is None:
        return None
    for f in (
        Path("/sys/fs/cgroup/memory") / res.cgroup_parent / "memory.stat",
        Path("/sys/fs/cgroup") / res.cgroup_parent / "memory.stat",
        Path("/sys/fs/cgroup/unified") / res.cgroup_parent / "memory.stat",
    ):
        if f.is_file():
            out = {}
            for line in f.read_text().splitlines():
                k, _, v = line.partition(" ")
                if k in ("total_rss", "total_cache", "total_shmem", "anon", "file", "kernel", "shmem", "sock"):
                    out[k] = int(v)
            if out:
                return out
    return None


def disk_cache_kb(root: Path | None) -> int | None:
    """Page cache held by the sandboxes' disk images (fincore(1)), if we know the daemon's root."""
    if root is None:
        return None
    imgs = [str(p) for p in (root / "rt" / "sandboxes").glob("*/disk.img")]
    if not imgs:
        return None
    try:
        out = subprocess.run(
            ["fincore", "-b", "-n", "-r", "-o", "RES", *imgs], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(int(x) for x in out.split() if x.isdigit()) // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--settle", type=float, default=15.0, help="seconds to let everything settle before measuring")
    ap.add_argument("--concurrency", type=int, default=1, help="creates in flight at once (default: sequential)")
    args = ap.parse_args()
    sigterm_as_interrupt()
    sids: list[str] = []
    lock = threading.Lock()
    load_before = loadavg()
    with private_daemon(TAG, RESOURCES) as dmn, Client(dmn.socket, timeout=120) as c:
        try:
            ensure_busybox(c, TAG)
            # warm-up: disk template, mount helper, image layers in the page cache
            warm = c.create_sandbox({"image": "busybox"})["id"]
            c.remove_sandbox(warm)
            time.sleep(2)
            rss_idle = pid_status_kb(dmn.pid) if dmn.pid else None
            procs_before = nprocs()
            avail0, noise = mem_available_kb()
            mi0 = MemInfo()
            log(TAG, f"baseline MemAvailable {avail0 // 1024} MB (spread {noise // 1024} MB); load {loadavg()}")

            create_ms: list[float] = []
            local = threading.local()

            def one(i: int) -> None:
                cl: Client | None = getattr(local, "client", None)
                if cl is None:
                    cl = local.client = Client(dmn.socket, timeout=120)
                t = time.perf_counter()
                sid = cl.create_sandbox({"image": "busybox", "labels": {"bench": "density"}})["id"]
                with lock:
                    sids.append(sid)
                    create_ms.append((time.perf_counter() - t) * 1000)
                sess = cl.create_session(sid)
                wait_prompt(cl, sid, sess["session_id"])
                if (i + 1) % 25 == 0:
                    log(TAG, f"{i + 1}/{args.n} up")

            t0 = time.perf_counter()
            if args.concurrency <= 1:
                for i in range(args.n):
                    one(i)
            else:
                with ThreadPoolExecutor(args.concurrency) as pool:
                    for fut in [pool.submit(one, i) for i in range(args.n)]:
                        fut.result()
            create_all = time.perf_counter() - t0
            log(TAG, f"all {args.n} up in {create_all:.1f} s; settling {args.settle} s")
            time.sleep(args.settle)

            avail1, noise1 = mem_available_kb()
            mi1 = MemInfo()
            rss_up = pid_status_kb(dmn.pid) if dmn.pid else None
            procs_up = nprocs()
            tree_pss, tree_names = pss_kb(descendants(dmn.pid)) if dmn.pid else (0, {})
            disk_cache = disk_cache_kb(dmn.root)
            cg_bytes = 0
            for sid in sids:
                cg_bytes += int(c.stats(sid).get("memory_bytes", 0))
            parent = parent_memory_stat(dmn.resources)
            sessions_alive = sum(1 for sid in sids for s in c.list_sessions(sid) if not s.get("exited"))
            load_up = loadavg()

            log(TAG, f"removing {len(sids)} sandboxes")
            t1 = time.perf_counter()
            while sids:
                c.remove_sandbox(sids[-1])
                sids.pop()
            remove_all = time.perf_counter() - t1
            time.sleep(min(args.settle, 5))
            avail2, _ = mem_available_kb()
        finally:
            if sids:
                log(TAG, f"cleaning up {len(sids)} sandboxes")
                for sid in sids:
                    try:
                        c.remove_sandbox(sid)
                    except Exception as e:  # keep removing the others
                        log(TAG, f"remove {sid}: {e}")

    n = args.n
    drop_kb = avail0 - avail1
    kernel_kb = sum(mi1[k] - mi0[k] for k in KERNEL)
    composed_kb = tree_pss + kernel_kb + (rss_up or 0) - (rss_idle or 0)
    result = {
        "sandboxes": n,
        "mb_per_sandbox": round(composed_kb / 1024 / n, 2),
        "host_mb_per_sandbox": round(drop_kb / 1024 / n, 2),
        "cgroup_mb_per_sandbox": round(cg_bytes / 2**20 / n, 2),
        "runtimed_rss_mb": round(rss_up / 1024, 1) if rss_up else None,
        "runtimed_rss_idle_mb": round(rss_idle / 1024, 1) if rss_idle else None,
        "create_all_s": round(create_all, 2),
        "remove_all_s": round(remove_all, 2),
        "create_p50_ms": ms(pct(create_ms, 50)),
        "create_first10_p50_ms": ms(pct(create_ms[:10], 50)),
        "create_last10_p50_ms": ms(pct(create_ms[-10:], 50)),
        "concurrency": max(1, args.concurrency),
        "sessions_alive": sessions_alive,
        "host_procs_per_sandbox": round((procs_up - procs_before) / n, 2),
        "mem_available_drop_mb": round(drop_kb / 1024, 1),
        "recovered_mb": round((avail2 - avail1) / 1024, 1),
        "noise_mb": round(max(noise, noise1) / 1024, 1),
        "procs_pss_mb_per_sandbox": round(tree_pss / 1024 / n, 2),
        "kernel_mb_per_sandbox": round(kernel_kb / 1024 / n, 2),
        "runtimed_growth_mb_per_sandbox": round(((rss_up or 0) - (rss_idle or 0)) / 1024 / n, 3),
        "disk_cache_mb_per_sandbox": round(disk_cache / 1024 / n, 2) if disk_cache is not None else None,
        "sandbox_processes": tree_names,
        "accounted_mb_per_sandbox": round(sum(mi1[k] - mi0[k] for k in ACCOUNTED) / 1024 / n, 2),
        "page_cache_mb_per_sandbox": round(
            (mi1["Cached"] + mi1["Buffers"] - mi0["Cached"] - mi0["Buffers"]) / 1024 / n, 2
        ),
        "meminfo_delta_kb": {k: mi1[k] - mi0[k] for k in MEM_FIELDS},
        "cgroup_parent_memory_stat_mb": {k: round(v / 2**20, 1) for k, v in parent.items()} if parent else None,
        "loadavg_before": load_before,
        "loadavg_all_up": load_up,
        "loadavg_after": loadavg(),
    }
    log(
        TAG,
        f"{n} sandboxes: {result['mb_per_sandbox']} MB each (composed), "
        f"{result['host_mb_per_sandbox']} MB (MemAvailable drop, noise {result['noise_mb']} MB total), "
        f"{result['cgroup_mb_per_sandbox']} MB in their cgroups; runtimed RSS {result['runtimed_rss_mb']} MB",
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
