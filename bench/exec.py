"""Exec round-trip latency: ``true`` in a busybox sandbox, through runtime.client.

Uses the daemon at $RUNTIME_SOCKET if set, else starts one (root) on a temp
root and socket.  Prints progress, then one JSON object on the last line:
{"p50_ms": ..., "p95_ms": ..., ...}.  Also times the parts: a bare
``runc exec`` of ``true`` into the same sandbox (the floor of the current
mechanism) and the daemon's own view (``duration_ms``).

    .venv/bin/python bench/exec.py [--n 200] [--warmup 10]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import time

from _common import Client, HostResources, ensure_busybox, pct, private_daemon

# a daemon started here must not share host resources with a production one or another bench
RESOURCES = HostResources("10.248.0.0/24", "klbenchx", "kubelab-benchx", 3_500_000_000)


def run_timed(argv: list[str], timeout: float = 30) -> float:
    """Run argv; ms until it exits, waiting on a pidfd (subprocess's own timed wait polls)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fd = os.pidfd_open(proc.pid)
    try:
        if not select.select([fd], [], [], timeout)[0]:
            proc.kill()
            raise SystemExit(f"{argv} did not finish in {timeout}s")
    finally:
        os.close(fd)
    if proc.wait() != 0:
        raise SystemExit(f"{argv} failed")
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    with private_daemon("exec", RESOURCES) as dmn, Client(dmn.socket, timeout=60) as c:
        root = dmn.root / "rt" if dmn.root else None
        ensure_busybox(c, "exec")
        t0 = time.perf_counter()
        sid = c.create_sandbox({"image": "busybox"})["id"]
        create_ms = (time.perf_counter() - t0) * 1000
        try:
            for _ in range(args.warmup):
                c.exec(sid, ["true"])
            client_ms: list[float] = []
            daemon_ms: list[float] = []
            for _ in range(args.n):
                t = time.perf_counter()
                r = c.exec(sid, ["true"], timeout=10)
                client_ms.append((time.perf_counter() - t) * 1000)
                daemon_ms.append(r.duration_ms)
                assert r.exit_code == 0, r
            # the floor of the mechanism, no daemon involved: `runc exec -d` (what spawn runs)
            # and a foreground `runc exec`
            runc_d_ms: list[float] = []
            runc_fg_ms: list[float] = []
            if root is not None:
                runc = ["runc", "--root", str(root / "runc"), "exec"]
                for i in range(min(args.n, 50)):
                    runc_fg_ms.append(run_timed([*runc, sid, "true"]))
                    pidfile = str(root / f"bench-{i}.pid")
                    runc_d_ms.append(run_timed([*runc, "-d", "--pid-file", pidfile, sid, "true"]))
            result = {
                "p50_ms": round(statistics.median(client_ms), 2),
                "p95_ms": round(pct(client_ms, 95), 2),
                "mean_ms": round(statistics.fmean(client_ms), 2),
                "daemon_p50_ms": round(statistics.median(daemon_ms), 2),
                "runc_exec_p50_ms": round(statistics.median(runc_fg_ms), 2) if runc_fg_ms else None,
                "runc_exec_detached_p50_ms": (round(statistics.median(runc_d_ms), 2) if runc_d_ms else None),
                "create_ms": round(create_ms, 1),
                "n": args.n,
            }
        finally:
            c.remove_sandbox(sid)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
