"""Sandbox start-up: create (network, cgroups, overlay) -> a shell inside answers.

Run as root: ``.venv/bin/python bench/sandbox_start.py [N]``. Prints one line per
phase and, last, JSON with p50_ms, p95_ms (create -> ``echo`` answered through
``spawn``), create_p50_ms (``create`` alone), runc_p50_ms (a bare ``runc run -d``
+ ``runc delete`` of the same bundle shape, the floor we build on) and the
remove time.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.sandbox import SandboxSpec
from tests.runtime.sandbox_helpers import destroy_manager, make_manager


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    mgr = make_manager(250)
    total, create, remove, runc = [], [], [], []
    try:
        mgr.remove(mgr.create(SandboxSpec()).id)  # warm: template, parents, page cache
        for _ in range(n):
            t0 = time.perf_counter()
            info = mgr.create(SandboxSpec())
            t1 = time.perf_counter()
            sp = mgr.spawn(info.id, ["/bin/sh", "-c", "echo ready"], tty=False)
            out, _ = sp.proc.communicate(timeout=30)
            t2 = time.perf_counter()
            assert out == b"ready\n", out
            # The floor: runc alone on this sandbox's bundle (already mounted), PID 1 only.
            d = mgr.root / "sandboxes" / info.id
            rr = ["runc", "--root", str(mgr.root / "runc-bench")]
            cfg = json.loads((d / "config.json").read_text())
            cfg["linux"]["cgroupsPath"] = f"/kubelab-bench/{info.id}"
            bdir = mgr.root / "bench-bundle"
            bdir.mkdir(exist_ok=True)
            cfg["root"]["path"] = str(d / "rootfs")
            (bdir / "config.json").write_text(json.dumps(cfg))
            t3 = time.perf_counter()
            subprocess.run(
                [*rr, "run", "-d", "--bundle", str(bdir), "b" + info.id],
                check=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            t4 = time.perf_counter()
            subprocess.run([*rr, "delete", "--force", "b" + info.id], check=True, timeout=30)
            t5 = time.perf_counter()
            mgr.remove(info.id)
            t6 = time.perf_counter()
            total.append((t2 - t0) * 1000)
            create.append((t1 - t0) * 1000)
            runc.append((t4 - t3) * 1000)
            remove.append((t6 - t5) * 1000)
    finally:
        destroy_manager(mgr)
        for d in Path("/sys/fs/cgroup").glob("*/kubelab-bench"):
            d.rmdir()
    print(f"create->shell answered: p50 {pct(total, 50):.1f} ms, p95 {pct(total, 95):.1f} ms")
    print(f"create alone: p50 {pct(create, 50):.1f} ms; remove p50 {pct(remove, 50):.1f} ms")
    print(f"bare runc run -d: p50 {pct(runc, 50):.1f} ms")
    print(
        json.dumps(
            {
                "n": n,
                "p50_ms": round(pct(total, 50), 1),
                "p95_ms": round(pct(total, 95), 1),
                "create_p50_ms": round(pct(create, 50), 1),
                "runc_p50_ms": round(pct(runc, 50), 1),
                "remove_p50_ms": round(pct(remove, 50), 1),
                "mean_ms": round(statistics.mean(total), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
