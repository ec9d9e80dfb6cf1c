"""Base image recipes: how ``ImageStore.build(name)`` makes each image from this host.

A recipe is a function ``BuildContext -> BuiltImage`` plus a version. It writes layer
tarballs into ``ctx.work_dir`` (deleted after the build) and may keep expensive
intermediate results in ``ctx.cache_dir`` (kept across builds). The store records
``name/version`` with the image, so a second build of an image from the same
recipe version returns at once; bump ``version`` when a recipe's output changes.

A recipe with a ``base`` stacks its layers on that image's (built first, by its own
recipe): the store reuses the base's layer blobs as they are, so the new image's first
layers *are* the base's (same diff ids, as ``FROM`` gives in Docker), and the recorded
version includes the base's digest, so rebuilding the base rebuilds the image.
``ctx.image_layers(name)`` gives any image's layer blobs (building it if needed), for a
recipe that starts from another image's files without stacking on it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runtime import errors


@dataclass(frozen=True)
class BuildContext:
    name: str
    work_dir: Path
    cache_dir: Path
    progress: Callable[[str], None]
    image_layers: Callable[[str], list[Path]]  # layer blobs of an image (built if missing), lowest first

    def say(self, message: str) -> None:
        self.progress(f"{self.name}: {message}")


@dataclass(frozen=True)
class BuiltImage:
    layers: list[Path]  # tarballs, lowest first
    env: list[str]
    cmd: list[str]
    working_dir: str = "/"
    user: str = ""
    created: str | None = None
    comment: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp", as Docker's EXPOSE records them
    stop_signal: str = ""  # e.g. "SIGQUIT"; "" = the runtime's default (SIGTERM)
    move: bool = False  # the store may move (not copy) the tarballs into its blobs
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str
    description: str
    build: Callable[[BuildContext], BuiltImage]
    base: str | None = None  # an image whose layers this one stacks on (see the module docstring)


def run_logged(
    argv: Sequence[str],
    *,
    timeout: float,
    progress: Callable[[str], None],
    prefix: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``argv``, passing each output line (stdout and stderr merged) to ``progress``.

    Kills the process group and raises ``errors.RuntimeError`` on timeout or a non-zero exit,
    quoting the last lines of output.
    """
    tail: list[str] = []
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.RuntimeError(
                        f"{argv[0]} did not finish within {timeout:.0f}s; last output: " + " | ".join(tail[-5:])
                    )
                if not sel.select(timeout=min(left, 1.0)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    if line.strip():
                        tail = [*tail[-19:], line]
                        progress(f"{prefix}{line}")
            if buf.strip():
                line = buf.decode("utf-8", "replace")
                tail.append(line)
                progress(f"{prefix}{line}")
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            proc.stdout.close()
    if rc != 0:
        raise errors.RuntimeError(
            f"{' '.join(argv[:3])}... exited with status {rc}; last output: " + " | ".join(tail[-5:])
        )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def _registry() -> dict[str, Recipe]:
    from runtime.images.recipes import busybox, debian, hello, lab_base, nginx, python

    return {
        r.name: r
        for r in (
            busybox.RECIPE,
            lab_base.RECIPE,
            debian.RECIPE,
            python.SLIM,
            python.MINIMAL,
            nginx.RECIPE,
            hello.V1,
            hello.V2,
        )
    }


RECIPES: dict[str, Recipe] = _registry()
