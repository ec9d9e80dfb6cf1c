"""How far real clients cannot tell our engines from dockerd and a real API server (issue #15).

Runs the compatibility suites and prints, per client, how many of its tests pass:

* ``tests/compat/docker/``: the docker CLI (files named ``*cli*``) and the pinned ``docker``
  SDK (files named ``*sdk*``), against a real sandbox's Docker engine;
* ``tests/compat/kube/``: ``kubectl`` (``*kubectl*``), ``helm`` (``*helm*``) and the pinned
  ``kubernetes`` Python client (the other files), against the lab cluster; a suite that does
  not exist yet reports ``{"passed": 0, "total": 0}``;
* ``tests/runtime/kube/test_helm.py``: the real helm v4 through a release's lifecycle (helm);
* optionally the docker SDK's own integration suite (``tests/integration`` of a docker-py
  source tree of the pinned version, ``--sdk-suite DIR`` or ``$DOCKER_SDK_TESTS``), without
  its swarm tests (services, secrets, configs, nodes, swarm) and its ``credentials/`` tests
  (the SDK's credential-store helpers, no engine involved), against a sandbox's engine,
  with ``DOCKER_TEST_API_VERSION=1.41`` and the catalog's ``busybox`` tagged as the suite's
  ``alpine:3.10`` (the lab has no internet to pull it). The SDK's sdist on PyPI ships no
  tests, so the tree must come from the project's repository at the pinned tag (its
  ``tests/`` and ``pytest.ini``), its test dependencies (paramiko) on ``--sdk-pythonpath``;
  without it that client is reported as not run, with why.

Every run takes the shared test lock (``/tmp/kubelab-test.lock``): the suites start
sandboxes, bridges and runc containers with fixed host names. Test outcomes come from
pytest's JUnit XML: a skipped test counts in ``total`` and not in ``passed`` (and in
``skipped``), so a missing tool shows as such instead of inflating the figure.

Progress goes to stderr; the last stdout line is one JSON object:
``{"docker CLI": {"passed": 11, "total": 11, ...}, ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LOCK = "/tmp/kubelab-test.lock"
CLIENTS = ("docker CLI", "docker SDK", "docker SDK's own suite", "kubectl", "kubernetes client", "helm")
SWARM_FILES = re.compile(r"(swarm|service|secret|config|node)s?_test\.py$")
SDK_SANDBOX_TAG = 37
SDK_TEST_IMAGE = "alpine:3.10"  # docker-py's tests/integration/base.py TEST_IMG
SDK_IMAGE_STAND_IN = "busybox:latest"


def log(msg: str) -> None:
    print(f"[compat] {msg}", file=sys.stderr, flush=True)


def client_of(classname: str, file: str = "") -> str | None:
    """Which client a test of our compat suites exercises, from its module's name
    (``tests.compat.docker.test_cli_archives[.Class]`` -> "docker CLI")."""
    parts = (file.removesuffix(".py").replace("/", ".") if file else classname).split(".")
    if "test_helm" in parts:
        return "helm"  # tests/runtime/kube/test_helm.py: the real helm v4 through a release's lifecycle
    if "compat" not in parts:
        return None
    i = parts.index("compat")
    kind, module = [*parts[i + 1 : i + 3], "", ""][:2]
    if kind == "docker":
        return "docker SDK" if "sdk" in module else "docker CLI"
    if kind == "kube":
        if "kubectl" in module:
            return "kubectl"
        if "helm" in module:
            return "helm"
        return "kubernetes client"
    return None


def _empty() -> dict[str, int]:
    return {"passed": 0, "total": 0, "failed": 0, "skipped": 0}


def tally(junit: Path, classify: Callable[[str, str], str | None] = client_of) -> dict[str, dict[str, int]]:
    """Per-client counts from a JUnit XML report."""
    out: dict[str, dict[str, int]] = {}
    root = ET.parse(junit).getroot()
    for case in root.iter("testcase"):
        client = classify(case.get("classname", ""), case.get("file", ""))
        if client is None:
            continue
        row = out.setdefault(client, _empty())
        row["total"] += 1
        if case.find("skipped") is not None:
            row["skipped"] += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            row["failed"] += 1
        else:
            row["passed"] += 1
    return out


@contextlib.contextmanager
def test_lock() -> Iterator[None]:
    with open(LOCK, "a") as f:
        log(f"waiting for {LOCK}")
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_pytest(
    args: list[str], junit: Path, *, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float
) -> int:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *args]
    log(" ".join(cmd))
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, check=False, stdout=sys.stderr).returncode
    except subprocess.TimeoutExpired:
        log(f"pytest did not finish in {timeout:.0f} s")
        return -1


def our_suites(timeout: float) -> dict[str, dict[str, int]]:
    dirs = [
        str(d.relative_to(REPO))
        for d in (REPO / "tests/compat/docker", REPO / "tests/compat/kube", REPO / "tests/runtime/kube/test_helm.py")
        if d.exists()
    ]
    if not dirs:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "compat.xml"
        run_pytest(dirs, junit, timeout=timeout)
        return tally(junit) if junit.exists() else {}


def sdk_suite(tree: Path, timeout: float, pythonpath: str = "") -> dict[str, object]:
    """The docker SDK's own integration tests (non-swarm) against a real sandbox's engine."""
    integration = tree / "tests" / "integration"
    if not integration.is_dir():
        return {"passed": None, "total": None, "why": f"{integration} is not a directory"}
    from tests.runtime.conftest_daemon import real_sandboxes_available, short_tmp
    from tests.runtime.dockerapi.api_helpers import served
    from tests.runtime.dockerapi.engine_helpers import docker_sandbox, engine_on

    why = real_sandboxes_available()
    if why:
        return {"passed": None, "total": None, "why": why}
    ignored = [
        f"--ignore=tests/integration/{p.name}"
        for p in sorted(integration.glob("*_test.py"))
        if SWARM_FILES.search(p.name)
    ]
    sock_dir = short_tmp("dcompat-sdk-")
    try:
        with (
            docker_sandbox(SDK_SANDBOX_TAG, disk=4 * 2**30) as sb,
            engine_on(sb) as eng,
            served(eng, sock_dir / "docker.sock"),
            tempfile.TemporaryDirectory() as tmp,
        ):
            # The suite's test image, alpine:3.10, is not in the lab's catalog (no internet): the
            # catalog's busybox stands in under that name (a shell, top, sleep, wget, as alpine's).
            eng.store.tag(SDK_IMAGE_STAND_IN, SDK_TEST_IMAGE)
            junit = Path(tmp) / "sdk.xml"
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "PYTEST_"))},
                "DOCKER_HOST": f"unix://{sock_dir / 'docker.sock'}",
                "DOCKER_TEST_API_VERSION": "1.41",  # what the engine speaks (the SDK defaults to newer)
            }
            if pythonpath:  # the suite's own test dependencies (paramiko), kept out of the project's venv
                env["PYTHONPATH"] = pythonpath
            # credentials/: the SDK's credential-store helpers (docker-credential-* binaries, no
            # engine involved); its utils_test rebinds os.environ, which drops DOCKER_HOST for
            # every test after it, so it is left out rather than let it fail the rest.
            args = ["tests/integration", *ignored, "--ignore=tests/integration/credentials", "--timeout=60"]
            rc = run_pytest(args, junit, env=env, cwd=tree, timeout=timeout)
            counts = tally(junit, lambda _c, _f: "sdk") if junit.exists() else {}
    finally:
        with contextlib.suppress(OSError):
            sock_dir.rmdir()
    row = counts.get("sdk", _empty())
    if row["total"] == 0:
        return {"passed": None, "total": None, "why": f"pytest exited {rc} before running a test (see stderr)"}
    return {
        **row,
        "ignored": [*(a.rpartition("/")[2] for a in ignored), "credentials/"],
        "stand_in": f"{SDK_TEST_IMAGE} is {SDK_IMAGE_STAND_IN}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdk-suite", default=os.environ.get("DOCKER_SDK_TESTS", ""), help="a docker-py source tree")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for each pytest run")
    parser.add_argument(
        "--sdk-pythonpath", default="", help="PYTHONPATH for the SDK's suite (its test dependencies, e.g. paramiko)"
    )
    parser.add_argument("--sdk-only", action="store_true", help="run only the SDK's own suite")
    opts = parser.parse_args()
    result: dict[str, object] = {} if opts.sdk_only else {client: _empty() for client in CLIENTS}
    with test_lock():
        if not opts.sdk_only:
            result.update(our_suites(opts.timeout))
        if opts.sdk_suite:
            result["docker SDK's own suite"] = sdk_suite(Path(opts.sdk_suite), opts.timeout, opts.sdk_pythonpath)
        elif not opts.sdk_only:
            result["docker SDK's own suite"] = {
                "passed": None,
                "total": None,
                "why": "not run: give --sdk-suite DIR (docker-py's source at the pinned tag; its sdist has no tests)",
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
