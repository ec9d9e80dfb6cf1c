"""Health checks as dockerd runs them (moby's ``daemon/health.go``): probes are execs in the
container on the engine's timers, at most ``health.MAX_RUNNING`` of a sandbox at once;
the check's own rules are in health.py."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal as signal_mod
import threading
import time

from runtime.dockerapi import fsutil
from runtime.dockerapi.engine import health
from runtime.dockerapi.engine.core import RUNC_TIMEOUT, ZERO_TIME, _Container, log
from runtime.dockerapi.engine.exec import Exec
from runtime.dockerapi.engine.policy import capabilities
from runtime.dockerapi.engine.spec import _groups
from runtime.kernel.clock import parse_epoch
from runtime.procfs import proc_start
from runtime.sandbox import bundle


class Probes(Exec):
    def _schedule_probe(self, c: _Container, delay: float | None = None) -> None:
        p = health.probe(c.config.get("Healthcheck"))
        if p is None:
            return
        with self._lock:
            if not c.running or self._closed:
                return
            if c.probe_timer is not None:
                self._timers.cancel(c.probe_timer)
            gen = c.probe_gen
            c.probe_timer = self._timers.call_later(
                p.interval if delay is None else delay, lambda: self._jobs.submit(lambda: self._probe_due(c, gen))
            )

    def _stop_probes(self, c: _Container) -> None:
        """The run ended (call with _lock): a probe of it that is due or running records nothing."""
        c.probe_gen += 1
        if c.probe_timer is not None:
            self._timers.cancel(c.probe_timer)
            c.probe_timer = None

    def _probe_due(self, c: _Container, gen: int) -> None:
        with self._lock:
            if gen != c.probe_gen or not c.running or self._closed or self._closing:
                return
            c.probe_timer = None
            if self._probes_running >= health.MAX_RUNNING:  # the sandbox's share: wait for a slot
                self._probes_waiting.append((c, gen))
                return
            self._probes_running += 1
        try:
            self._run_probe(c, gen)
        except Exception:
            log.exception("container %s: health probe failed to run", c.id[:12])
            self._probe_slot_free()

    def _probe_slot_free(self) -> None:
        with self._lock:
            self._probes_running -= 1
            nxt = self._probes_waiting.popleft() if self._probes_waiting else None
        if nxt is not None:
            self._jobs.submit(lambda: self._probe_due(*nxt))

    def _run_probe(self, c: _Container, gen: int) -> None:
        """One probe: ``runc exec`` of the test in the container (its user, env, workdir,
        capabilities, cgroup), output (stdout and stderr, first 4096 bytes) read on the
        watcher, exit on the pidfd, timeout on a timer; the result recorded by ``_probe_done``."""
        p = health.probe(c.config.get("Healthcheck"))
        assert p is not None
        start = time.time()
        if c.paused:
            self._probe_done(
                c, gen, p, start, -1, f"Container {c.id} is paused, unpause the container before exec".encode()
            )
            return
        d = self._dir(c.id)
        rootfs = d / "rootfs"
        try:
            user = fsutil.resolve_user(rootfs, c.config.get("User") or "")
            groups = _groups(rootfs, user, c.host_config)
        except ValueError as exc:
            self._probe_done(c, gen, p, start, -1, f"unable to start health check: {exc}".encode())
            return
        doc = {
            "terminal": False,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": groups},
            "args": p.argv,
            "env": self._process_env(c, user, tty=False),
            "cwd": c.config.get("WorkingDir") or "/",
            "capabilities": {k: capabilities(c.host_config) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        }
        n = secrets.token_hex(6)
        pfile, pidfile, logfile = d / f"health-{n}.json", d / f"health-{n}.pid", d / f"health-{n}.log"
        out_r, out_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(out_w, True)
        try:
            os.fchown(out_w, self.ctx.uid_base, self.ctx.uid_base)
            pfile.write_text(json.dumps(doc))
            argv = [self.ctx.runc, "--root", str(self.runc_root), "--log", str(logfile), "--log-format", "json"]
            argv += ["exec", "-d", "--pid-file", str(pidfile), "--process", str(pfile), c.id]
            rc = self.place.run_quiet(argv, timeout=RUNC_TIMEOUT, stdout=out_w, stderr=out_w)
            os.close(out_w)
            out_w = -1
            if rc != 0:
                os.close(out_r)
                self._probe_done(
                    c, gen, p, start, -1, f"OCI runtime exec failed: {bundle.runc_error(logfile)}".encode()
                )
                return
            pid = int(pidfile.read_text().strip())
        except BaseException:
            for fd in (out_r, out_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            raise
        finally:
            for f in (pfile, pidfile, logfile):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        buf = bytearray()
        lock = threading.Lock()
        state = {"done": False, "timed_out": False}

        def drain() -> bool:  # False at EOF (or once the result is recorded)
            with lock:
                if state["done"]:
                    return False
                while True:
                    try:
                        data = os.read(out_r, 65536)
                    except BlockingIOError:
                        return True
                    except OSError:
                        return False
                    if not data:
                        return False
                    if len(buf) < health.MAX_OUTPUT:
                        buf.extend(data[: health.MAX_OUTPUT - len(buf)])

        def expire() -> None:
            state["timed_out"] = True
            if proc_start(pid) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal_mod.SIGKILL)

        timer = self._timers.call_later(p.timeout, expire)

        def exited() -> None:
            code = None
            while code is None:
                code = self._reap(pid, timeout=1.0)
                if code is None and proc_start(pid) is None:
                    code = self._reap(pid, timeout=0) if self._is_child(pid) else -1
            self._timers.cancel(timer)
            drain()
            with lock:
                state["done"] = True
                output = bytes(buf)
            if state["timed_out"]:
                exit_code, output = -1, f"Health check exceeded timeout ({p.timeout:g}s)".encode()
            else:
                exit_code = 128 - code if code < 0 else code
            self._probe_done(c, gen, p, start, exit_code, output)

        self._watcher.add(out_r, drain, lambda: os.close(out_r))
        self._watch_pid(pid, lambda: self._jobs.submit(exited))

    def _probe_done(self, c: _Container, gen: int, p: health.Probe, start: float, code: int, output: bytes) -> None:
        changed, status = False, ""
        with self._lock:
            if gen == c.probe_gen and c.running and c.id in self._containers:
                h = health.Health.from_json(c.health) or health.Health()
                started = int(parse_epoch(c.started_at)) if c.started_at != ZERO_TIME else start
                changed = h.record(start=start, end=time.time(), exit_code=code, output=output, p=p, started_at=started)
                c.health = h.to_json()
                self._save(c)
                status = h.status
        if changed:
            self._event(f"health_status: {status}", c)
        self._probe_slot_free()
        self._schedule_probe(c)
