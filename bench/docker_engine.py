"""The sandbox Docker engine against Debian's dockerd: ``docker run`` and a 5-step build.

One measuring program (``MEASURE``, plain Python 3) is run twice with the real docker CLI
(Debian's docker.io 20.10, classic builder: ``DOCKER_BUILDKIT=0``):

* **our engine** (``run_p50_ms``, ``run_p95_ms``, ``build_cold_s``, ``build_cached_s``): inside
  a ``lab-base`` sandbox created with ``services: ["docker"]`` on runtimed (the one at
  $RUNTIME_SOCKET, else a private one on a temp root with its own subnet, bridge, cgroup
  parent and uid range; see _common.py). The CLI in the sandbox talks to
  ``/var/run/docker.sock``, i.e. to runtimed's per-sandbox engine; ``busybox`` is the
  catalog's. lab-base is imported from the repository's store (``var/runtime/images``,
  filled by ``make images``) when the daemon lacks it, else built (minutes).
* **dockerd** (``dockerd_run_p50_ms``, ``dockerd_run_p95_ms``, ``dockerd_build_cold_s``,
  ``dockerd_build_cached_s``): on the host, against a private Debian dockerd started here
  (temp ``--data-root``/``--exec-root``/``--pidfile``/unix socket, ``--bridge none
  --iptables=false --ip6tables=false``: it never touches host networking; stopped and
  removed afterwards; sandbox_start.py's ``private_dockerd``). It gets the *same* busybox
  image: the store's OCI export plus a ``manifest.json``, which makes it a ``docker save``
  archive that dockerd 20.10 can ``docker load`` (same layer, same config). Its containers
  run with ``--network none`` (with ``--bridge none`` there is no default network), so
  dockerd does no network set-up at all while our engine gives each container the
  sandbox's network: a difference in dockerd's favour.

Figures: ``run`` is ``docker run --rm busybox true`` (``--n`` times after ``--warmup``);
``build_cold`` is ``docker build --no-cache`` of the Dockerfile below (FROM busybox, RUN,
COPY, ENV, RUN) and ``build_cached`` the same build again with every step cached, each the
median of ``--builds`` rounds. Times are taken around the CLI process, the same way on both
sides.

    .venv/bin/python bench/docker_engine.py [--n 20] [--warmup 3] [--builds 3] [--no-dockerd]

Needs root. Progress on stderr; one JSON object on the last stdout line. If a half cannot
run (no dockerd installed, the sandbox engine failing), its keys are null and stderr says why.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    Client,
    HostResources,
    ensure_busybox,
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
from sandbox_start import private_dockerd

from runtime.images import ImageStore, catalog

TAG = "docker"
RESOURCES = HostResources("10.247.2.0/24", "klbenchd", "kubelab-benchd", 3_700_000_000)
ENGINE_IMAGE = "lab-base"  # has the docker CLI and python3
SANDBOX_SPEC: dict[str, Any] = {
    "image": ENGINE_IMAGE,
    "services": ["docker"],
    "memory": 2 * 2**30,
    "pids": 2048,
    "cpus": 2,
    "disk": 4 * 2**30,
}

DOCKERFILE = """\
FROM busybox
RUN echo one > /step1
COPY payload.txt /payload.txt
ENV BENCH=1
RUN cat /step1 /payload.txt > /combined
"""

# argv[1]: the docker CLI argv prefix (JSON); argv[2..4]: n, warmup, builds; argv[5]: the
# Dockerfile; argv[6]: extra `docker run` options (JSON).
MEASURE = r"""
import json, shutil, subprocess, sys, tempfile, time

docker = json.loads(sys.argv[1])
n, warmup, builds = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def timed(args):
    t = time.perf_counter()
    p = subprocess.run(docker + args, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        err = (p.stderr or p.stdout).decode(errors="replace")[-1500:]
        print(json.dumps({"error": "docker %s: exit %d: %s" % (" ".join(args), p.returncode, err)}))
        sys.exit(1)
    return dt


ctx = tempfile.mkdtemp(prefix="klbench-")
try:
    with open(ctx + "/Dockerfile", "w") as f:
        f.write(sys.argv[5])
    with open(ctx + "/payload.txt", "w") as f:
        f.write("payload\n" * 512)
    run = ["run", "--rm"] + json.loads(sys.argv[6]) + ["busybox", "true"]
    for _ in range(warmup):
        timed(run)
    runs = [timed(run) for _ in range(n)]
    timed(["build", "-q", "-t", "klbench:warm", ctx])  # the base image's first use is not timed
    cold, cached = [], []
    for _ in range(builds):
        cold.append(timed(["build", "-q", "--no-cache", "-t", "klbench:cold", ctx]))
        cached.append(timed(["build", "-q", "-t", "klbench:cached", ctx]))
    print(json.dumps({"run": runs, "cold": cold, "cached": cached}))
finally:
    shutil.rmtree(ctx, ignore_errors=True)
"""


def measure_args(docker: list[str], run_opts: list[str], args: argparse.Namespace) -> list[str]:
    return [
        "-c",
        MEASURE,
        json.dumps(docker),
        str(args.n),
        str(args.warmup),
        str(args.builds),
        DOCKERFILE,
        json.dumps(run_opts),
    ]


def parse(out: str, where: str) -> dict[str, list[float]]:
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{where}: the measuring program printed no result: {out[-1500:]!r}")
    data: dict[str, Any] = json.loads(lines[-1])
    if "error" in data:
        raise RuntimeError(f"{where}: {data['error']}")
    return {k: [float(x) for x in v] for k, v in data.items()}


# --- our engine ---------------------------------------------------------------------------------


def our_engine(c: Client, work: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    ensure_busybox(c, TAG)
    ensure_repo_image(c, TAG, ENGINE_IMAGE, work)
    t = time.perf_counter()
    sid = c.create_sandbox(SANDBOX_SPEC)["id"]
    log(TAG, f"sandbox {sid} with the docker service in {ms((time.perf_counter() - t) * 1000)} ms")
    try:
        budget = 120.0 + (args.n + args.warmup) * 10 + args.builds * 120
        r = c.exec(
            sid,
            ["python3", *measure_args(["docker"], [], args)],
            timeout=budget,
            env={"DOCKER_BUILDKIT": "0"},
        )
        out = r.stdout.decode(errors="replace")
        if r.timed_out or r.exit_code != 0:
            detail = out + r.stderr.decode(errors="replace")
            raise RuntimeError(f"in sandbox {sid} (exit {r.exit_code}, timed out {r.timed_out}): {detail[-1500:]}")
        return parse(out, f"sandbox {sid}")
    finally:
        c.remove_sandbox(sid)


# --- Debian's dockerd ----------------------------------------------------------------------------


def docker_archive(oci_tar: Path, dest: Path, tags: tuple[str, ...]) -> None:
    """Add a ``manifest.json`` to an OCI layout export: a ``docker save`` archive of the same image."""

    def blob(digest: str) -> str:
        return "blobs/sha256/" + digest.split(":", 1)[1]

    with tarfile.open(oci_tar) as src, tarfile.open(dest, "w") as out:
        index_f = src.extractfile("index.json")
        assert index_f is not None
        index = json.load(index_f)
        manifest_f = src.extractfile(blob(index["manifests"][0]["digest"]))
        assert manifest_f is not None
        manifest = json.load(manifest_f)
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isreg() else None)
        entry = {
            "Config": blob(manifest["config"]["digest"]),
            "RepoTags": list(tags),
            "Layers": [blob(layer["digest"]) for layer in manifest["layers"]],
        }
        data = json.dumps([entry]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mode = len(data), 0o644
        out.addfile(info, io.BytesIO(data))


def repo_busybox(work: Path) -> Path:
    """The repository store's busybox (built if missing; the recipe is reproducible, so it is
    the image runtimed's catalog serves), exported as an OCI layout tarball."""
    store = ImageStore(REPO / "var/runtime/images")
    cfg = store.build("busybox", lambda line: log(TAG, line))
    out = work / "busybox.oci.tar"
    store.export_oci("busybox", out)
    log(TAG, f"busybox {cfg.digest} exported for dockerd")
    return out


def dockerd_half(busybox_oci: Path, work: Path, args: argparse.Namespace) -> tuple[dict[str, list[float]], str]:
    image = catalog.lookup("busybox")
    assert image is not None
    archive = work / "busybox.docker.tar"
    docker_archive(busybox_oci, archive, image.refs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_BUILDKIT"] = "0"
    with private_dockerd(work) as cli:
        subprocess.run([*cli, "load", "-i", str(archive)], check=True, capture_output=True, timeout=120, env=env)
        version = subprocess.run(
            [*cli, "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30, env=env
        ).stdout.strip()
        log(TAG, f"dockerd {version}: loaded {', '.join(image.refs)}; measuring")
        proc = subprocess.run(
            [sys.executable, *measure_args(cli, ["--network", "none"], args)],
            capture_output=True,
            text=True,
            timeout=600 + args.builds * 300,
            env=env,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"dockerd: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
        return parse(proc.stdout, "dockerd"), version


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=20, help="docker run iterations per engine")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--builds", type=int, default=3, help="cold and cached builds per engine")
    ap.add_argument("--no-dockerd", action="store_true", help="skip the dockerd comparison")
    ap.add_argument("--no-engine", action="store_true", help="skip our engine (dockerd only)")
    args = ap.parse_args()
    sigterm_as_interrupt()
    load_before = loadavg()
    work = Path(tempfile.mkdtemp(prefix="kl-bench-dockerw-", dir="/tmp"))
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    version = None
    try:
        if args.no_dockerd:
            log(TAG, "dockerd: skipped (--no-dockerd)")
        elif shutil.which("dockerd") is None:
            log(TAG, "dockerd: skipped, dockerd is not installed (apt-get install docker.io)")
        else:
            log(TAG, "dockerd: private Debian dockerd")
            try:
                theirs, version = dockerd_half(repo_busybox(work), work, args)
            except (OSError, RuntimeError, subprocess.SubprocessError, errors.RuntimeError) as e:
                detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else ""
                log(TAG, f"dockerd: FAILED, {e} {detail!r}")
        if args.no_engine:
            log(TAG, "our engine: skipped (--no-engine)")
        else:
            log(TAG, "our engine: a lab-base sandbox with the docker service")
            try:
                with private_daemon(TAG, RESOURCES) as dmn, Client(dmn.socket, timeout=120) as c:
                    ours = our_engine(c, work, args)
            except (RuntimeError, errors.RuntimeError, SystemExit) as e:
                log(TAG, f"our engine: FAILED, {e}")
    finally:
        unmount_beneath(work)
        shutil.rmtree(work, ignore_errors=True)

    def p(xs: list[float] | None, q: float) -> float | None:
        return ms(pct(xs, q) * 1000) if xs else None

    def med(xs: list[float] | None) -> float | None:
        return round(statistics.median(xs), 2) if xs else None

    result = {
        "n": args.n,
        "builds": args.builds,
        "run_p50_ms": p(ours.get("run"), 50),
        "run_p95_ms": p(ours.get("run"), 95),
        "build_cold_s": med(ours.get("cold")),
        "build_cached_s": med(ours.get("cached")),
        "dockerd_run_p50_ms": p(theirs.get("run"), 50),
        "dockerd_run_p95_ms": p(theirs.get("run"), 95),
        "dockerd_build_cold_s": med(theirs.get("cold")),
        "dockerd_build_cached_s": med(theirs.get("cached")),
        "dockerd_version": version,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    log(
        TAG,
        f"ours:    run p50 {result['run_p50_ms']} ms, build cold {result['build_cold_s']} s, "
        f"cached {result['build_cached_s']} s",
    )
    log(
        TAG,
        f"dockerd: run p50 {result['dockerd_run_p50_ms']} ms, build cold {result['dockerd_build_cold_s']} s, "
        f"cached {result['dockerd_build_cached_s']} s",
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
