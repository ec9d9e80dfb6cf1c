"""A container's filesystem from outside (moby's ``daemon/changes.go``, ``archive.go``,
``commit.go``, ``export.go``): ``docker diff``, the processes ``docker cp`` runs in a
running or stopped container, ``docker commit``, ``docker export``."""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.dockerapi import ENGINE_VERSION, fsutil
from runtime.dockerapi.engine import archive
from runtime.dockerapi.engine.containers import Containers
from runtime.dockerapi.engine.core import DEFAULT_PATH, INIT_FILES, RUNC_TIMEOUT, _Container
from runtime.dockerapi.engine.policy import CAPS
from runtime.dockerapi.images import changes
from runtime.dockerapi.images.commit import apply_changes
from runtime.kernel.children import AdoptedPopen
from runtime.kernel.clock import micro_ts
from runtime.procfs import mounted
from runtime.sandbox import bundle


class _OneOff:
    """A ``runc run`` whose container is deleted (and bundle removed) once it has been waited
    for or killed: the process interface archive.py's tar needs."""

    def __init__(self, proc: subprocess.Popen[bytes], cleanup: Callable[[], None]) -> None:
        self.proc = proc
        self.stdin, self.stdout, self.stderr = proc.stdin, proc.stdout, proc.stderr
        self._cleanup: Callable[[], None] | None = cleanup

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout=timeout)
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            cleanup()
        return rc

    def kill(self) -> None:
        self.proc.kill()

    def poll(self) -> int | None:
        return self.proc.poll()


class Rootfs(Containers):
    def changes(self, ref: str) -> builtins.list[dict[str, Any]]:
        """``docker diff``: the container's writable layer against its image (images/changes.py); the
        files and dirs the engine mounts (Docker's init layer, volumes, binds) are left out."""
        c = self._get(ref)
        image = self.store.resolve(c.image)
        lowers = self.store.lower_dirs([*image.layers, self._init_layer_lower()])
        hidden = [*(f"/{p}" for p in INIT_FILES), "/dev", "/proc", "/sys", *(m["Destination"] for m in c.mounts)]
        return changes.changes(self._dir(c.id) / "upper", [Path(x["path"]) for x in reversed(lowers)], hidden=hidden)

    def container_fs(self, ref: str) -> archive.ContainerFS:
        """``docker cp``: its tar runs inside the container (archive.py); in a stopped one, in a
        one-off runc container on the container's own filesystem (``_spawn_stopped``)."""
        c = self._get(ref)
        if c.status == "removing":
            raise errors.Conflict(f"container {c.id[:12]} is being removed")
        if c.running:
            return archive.ContainerFS(lambda argv, stdin: self._spawn_in(c, argv, stdin=stdin), ref)
        self._await_exit_processed(c, 30)  # its teardown unmounts the root: before ours mounts it
        return archive.ContainerFS(lambda argv, stdin: self._spawn_stopped(c, argv, stdin=stdin), ref)

    def _spawn_in(self, c: _Container, argv: builtins.list[str], *, stdin: bool) -> subprocess.Popen[bytes]:
        """Run ``argv`` in the running container as its root, the way exec runs a process
        (``runc exec``: its namespaces, capabilities, seccomp and cgroup), with pipes."""
        d = self._dir(c.id)
        n = secrets.token_hex(6)
        pfile, pidfile, logfile = d / f"cp-{n}.json", d / f"cp-{n}.pid", d / f"cp-{n}.log"
        doc = {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        }
        pfile.write_text(json.dumps(doc))

        def launch(stdin_fd: int, stdout_fd: int, stderr_fd: int) -> int:
            cmd = [self.ctx.runc, "--root", str(self.runc_root), "--log", str(logfile), "--log-format", "json"]
            cmd += ["exec", "-d", "--pid-file", str(pidfile), "--process", str(pfile), c.id]
            rc = self.place.run_quiet(cmd, timeout=RUNC_TIMEOUT, stdin=stdin_fd, stdout=stdout_fd, stderr=stderr_fd)
            if rc != 0:
                raise archive.SpawnFailed(f"OCI runtime exec failed: {bundle.runc_error(logfile)}")
            return int(pidfile.read_text().strip())

        try:
            return AdoptedPopen(
                launch,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                argv=argv,
            )
        finally:
            for p in (pfile, pidfile, logfile):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def _rootfs(self, c: _Container) -> Path:
        """The container's merged root (image layers, init layer, its upper), mounted on the
        host where it is not running; ``start`` reuses the mount, teardown and rm unmount it."""
        d = self._dir(c.id)
        with self._rootfs_lock:
            if not mounted(d / "rootfs"):
                image = self.store.resolve(c.image)
                (d / "rootfs").mkdir(exist_ok=True)
                self.store.mount(
                    [*image.layers, self._init_layer_lower()], d / "rootfs", upper=d / "upper", work=d / "work"
                )
        return d / "rootfs"

    def _spawn_stopped(self, c: _Container, argv: builtins.list[str], *, stdin: bool) -> subprocess.Popen[bytes]:
        """Run ``argv`` as root in a one-off runc container on a stopped container's root
        filesystem, volumes and binds (its own runc config: user namespace, capabilities,
        seccomp, a cgroup below the sandbox's; no network), as dockerd mounts a stopped
        container's filesystem for ``docker cp``. The host never walks that tree itself."""
        d = self._dir(c.id)
        rootfs = self._rootfs(c)
        binds = self._stage_binds(c)
        hc = dict(c.host_config)
        hc["NetworkMode"] = "none"
        probe = _Container(**{**{k: getattr(c, k) for k in _Container.PERSISTED}, "host_config": hc})
        cfg = self._runc_config(probe, rootfs, fsutil.ExecUser(0, 0, (), "/"), binds)
        managed = {f"/{name}" for name in INIT_FILES}
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] not in managed]
        n = secrets.token_hex(6)
        cfg["process"] = {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        }
        cfg["linux"]["cgroupsPath"] = f"{self.ctx.cgroup_path}/docker-{c.id[:12]}-cp{n}"
        bdir = d / f"cp-{n}"
        bdir.mkdir(mode=0o700)
        (bdir / "config.json").write_text(json.dumps(cfg))
        rid = f"{c.id[:12]}-cp-{n}"
        cmd = [self.ctx.runc, "--root", str(self.runc_root), "--log", str(bdir / "runc.log"), "--log-format", "json"]
        cmd += ["run", "--bundle", str(bdir), rid]

        def cleanup() -> None:
            with contextlib.suppress(errors.RuntimeError, OSError):
                self._runc("delete", "--force", rid, check=False)
            shutil.rmtree(bdir, ignore_errors=True)

        try:
            proc = _OneOff(
                self.place.popen(
                    cmd,
                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
                cleanup,
            )
        except BaseException:
            cleanup()
            raise
        return proc  # type: ignore[return-value]

    @contextlib.contextmanager
    def _paused_for(self, c: _Container, pause: bool) -> Iterator[None]:
        """dockerd pauses (freezes) a running container while it commits it, unless told not to;
        one the student paused stays paused."""
        if not (pause and c.running and not c.paused):
            yield
            return
        r = self._runc("pause", c.id, check=False)
        if r.returncode != 0 and self._stopped_meanwhile(c):
            # it exited between our look and the pause (`docker commit` of a container that is
            # finishing): its tree is still, so it is committed as a stopped one is, unpaused
            yield
            return
        if r.returncode != 0:
            why = (r.stderr or b"").decode(errors="replace").strip()[-300:]
            raise errors.RuntimeError(
                f"docker commit could not pause the container ({why or 'runc pause failed'}): "
                "commit it with --pause=false, or stop it first"
            )
        try:
            yield
        finally:
            self._runc("resume", c.id, check=False)

    def _stopped_meanwhile(self, c: _Container) -> bool:
        """runc says the container's init is gone (exited, a zombie not yet reaped, or already
        deleted from runc by the engine's exit handling)."""
        st = self._runc("state", c.id, check=False)
        if st.returncode != 0:
            return not self._runc_exists(c.id)  # deleted: the engine saw it exit meanwhile
        try:
            return bool(json.loads(st.stdout or b"{}").get("status") == "stopped")
        except ValueError:
            return False

    def commit(
        self,
        ref: str,
        *,
        tag: str = "",
        author: str = "",
        comment: str = "",
        pause: bool = True,
        changes: builtins.list[str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> str:
        """``docker commit`` (moby ``daemon/commit.go``): the container's writable layer on top
        of its image, its config (the request's non-empty fields win, then ``changes``)."""
        c = self._get(ref)
        if c.status == "removing":
            raise errors.Conflict(f"container {c.id[:12]} is being removed")
        image = self.store.resolve(c.image)
        cfg = copy.deepcopy(c.config)
        for k, v in (config or {}).items():
            if v not in (None, "", [], {}, 0, False):
                cfg[k] = copy.deepcopy(v)
        cfg = apply_changes(cfg, changes or [])
        with self.store.holding_new_layers():  # a prune meanwhile keeps the new layer
            with self._paused_for(c, pause):
                layer = self.store.layer_from_tree(self._dir(c.id) / "upper", what="docker commit")
            created = micro_ts()
            row: dict[str, Any] = {"created": created, "created_by": " ".join([c.path, *c.args]).strip()}
            if author:
                row["author"] = author
            if comment:
                row["comment"] = comment
            if layer is None:
                row["empty_layer"] = True
            doc: dict[str, Any] = {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "config": cfg,
                "container": c.id,
                "container_config": copy.deepcopy(c.config),
                "docker_version": ENGINE_VERSION,
                "history": [*(image.config.get("history") or []), row],
            }
            if author:
                doc["author"] = author
            if comment:
                doc["comment"] = comment
            layers = [*image.layers, *([layer] if layer is not None else [])]
            return self.store.commit(doc, layers, parent=image.id, tags=[tag] if tag else []).id

    def export(self, ref: str) -> Iterator[bytes]:
        """``docker export``: the container's root filesystem (without its volumes and binds, as
        dockerd's) as a tar in container uids, read from its merged mount on the host by a
        descriptor-relative walk that follows no link."""
        c = self._get(ref)
        if c.status == "removing":
            raise errors.Conflict(f"container {c.id[:12]} is being removed")
        if not c.running:
            self._await_exit_processed(c, 30)
        return self.store.layer_tar(self._rootfs(c))
