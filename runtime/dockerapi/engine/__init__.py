"""The engine of one sandbox (moby's ``daemon/``): a façade over the concerns.

``Engine`` is what the HTTP layer, the builder, the kubelet and the tests call; its
methods live in one module per concern, each a class built on ``core.EngineBase``
(the state and small helpers) and on the concerns it calls, so each module reads
alone and mypy checks every call across them:

``core.py``        the state, shared vocabulary (``_Container``, ``_Exec``), helpers
``streams.py``     ``Stream``, a container's output log and fan-out, stdio pipes
``io.py``          pumps, stdin, TTY size, logs, attach, reaping
``volumes.py``     volumes
``networks.py``    docker0, user-defined networks, addresses, ports, hosts files, links
``policy.py``      refusals of unsafe requests, capabilities, mounts and bind sources
``spec.py``        the OCI runtime spec (runc's config.json), resources, environment
``exec.py``        docker exec
``probes.py``      health checks run (health.py: their rules)
``inspect.py``     inspect, ps, top, port, stats, system df, info
``containers.py``  lifecycle: create, start, exit, restart policies, stop, kill, rm...
``rootfs.py``      diff, the processes of docker cp (archive.py), commit, export
``events.py``, ``watch.py``  docker events; the watcher, worker and timer threads

The engine's design (isolation, network, I/O, restarts) is in core.py's docstring."""

from __future__ import annotations

import contextlib
import signal as signal_mod

from runtime import errors
from runtime.dockerapi import netns
from runtime.dockerapi.engine.core import ZERO_TIME, _Container, log
from runtime.dockerapi.engine.inspect import Inspect
from runtime.dockerapi.engine.policy import CAPS
from runtime.dockerapi.engine.rootfs import Rootfs
from runtime.dockerapi.engine.streams import Stream
from runtime.dockerapi.limits import EngineLimits
from runtime.images.store import ImageStore
from runtime.kernel.clock import micro_ts
from runtime.procfs import mounts_under, proc_start
from runtime.sandbox.spec import SandboxContext


class Engine(Rootfs, Inspect):
    """A sandbox's Docker engine: containers, exec, volumes, networks; see core.py's docstring."""

    def __init__(self, ctx: SandboxContext, catalog_store: ImageStore, *, limits: EngineLimits | None = None) -> None:
        super().__init__(ctx, catalog_store, limits=limits)
        for c in list(self._containers.values()):
            self._readopt(c)
        for c in list(self._containers.values()):
            if c.running:
                self._schedule_probe(c)
            elif c.status in ("exited", "restarting") and self._daemon_start_restarts(c):
                # dockerd restarts these when it starts (daemon.restore): after runtimed's restart
                c.status = "restarting"
                self._save(c)
                c.restart_timer = self._restart_after(c, 0)

    def _readopt(self, c: _Container) -> None:
        if c.status in ("running", "removing") and c.pid and proc_start(c.pid) == c.pid_start and c.pid_start:
            c.status = "running"
            if self._take_back_output(c):
                log.info("container %s re-adopted (pid %d), its output collected again", c.id[:12], c.pid)
            else:
                log.warning("container %s re-adopted (pid %d); its output is no longer collected", c.id[:12], c.pid)
            self._watch_exit(c)
            return
        self._release_holder(c)
        if c.status == "restarting":  # waiting out its back-off when runtimed stopped: it had exited
            c.status = "exited"
            self._save(c)
            return
        if c.status not in ("created", "exited", "dead"):  # running, or caught mid-start/removal
            c.status = "exited"
            c.exit_code = 255 if c.exit_code == 0 else c.exit_code
            c.error = c.error or "the container's process ended while the engine was not running"
            c.finished_at = c.finished_at if c.finished_at != ZERO_TIME else micro_ts()
            self._teardown(c)
            self._save(c)

    def detach(self) -> None:
        """runtimed is shutting down and containers keep running: stop collecting their
        output between two reads (their holders keep the pipes; the next Engine takes them
        back), so no chunk already read is lost. The engine is unusable afterwards."""
        self._detached.set()
        with self._lock:
            self._closing = self._closed = True
            self._cond.notify_all()
        self._timers.close()
        self._jobs.close()
        self._watcher.close()
        self._worker.close()
        self.store.close()

    def close(self, *, remove: bool) -> None:
        """Kill every container, delete its runc state, unmount everything under engine_root;
        with ``remove`` also forget the containers (the disk goes next)."""
        with self._lock:
            containers = list(self._containers.values())
            self._closing = True
        self._timers.close()  # no restart or probe starts from now on
        self._jobs.close()
        for c in containers:
            if c.running or c.status == "starting":
                self._signal(c, signal_mod.SIGKILL)
                if c.paused:
                    with contextlib.suppress(errors.RuntimeError):
                        self._thaw(c)
        for c in containers:
            self._wait_state(c, 15)
            self._await_exit_processed(c, 15)
        with self._lock:
            self._closed = True
            self._cond.notify_all()
        for c in containers:
            if c.pid and c.status in ("running", "starting"):
                self._reap(c.pid, timeout=5)
                with self._lock:
                    c.status, c.exit_code, c.finished_at = "exited", 137, micro_ts()
            self._teardown(c)
            with self._lock:
                self._save(c)
        if remove:
            with contextlib.suppress(errors.RuntimeError):
                netns.remove_table(self.ctx.pid, place=self.place)
            with contextlib.suppress(errors.RuntimeError):
                netns.remove_bridge(self.ctx.pid, netns.BRIDGE, place=self.place)
                for n in self.store.networks():
                    netns.remove_bridge(self.ctx.pid, netns.bridge_name(n.id), place=self.place)
        leftovers = mounts_under(self.root)
        if leftovers:
            self.store.helper({"op": "umount", "targets": sorted(leftovers, key=len, reverse=True)})
        self._watcher.close()
        self._worker.close()
        self.store.close()


__all__ = ["CAPS", "Engine", "Stream"]
