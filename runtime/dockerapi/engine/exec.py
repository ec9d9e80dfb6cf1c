"""``docker exec`` (moby's ``daemon/exec.go``): exec instances, started with ``runc exec``
in the container, their streams, exit codes and TTY size."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.dockerapi import fsutil
from runtime.dockerapi.engine.core import RUNC_TIMEOUT, _Exec
from runtime.dockerapi.engine.io import ProcessIO
from runtime.dockerapi.engine.policy import PRIVILEGED_REASON, capabilities
from runtime.dockerapi.engine.spec import Spec, _groups, _replace_or_append_env
from runtime.dockerapi.engine.streams import Stream, _console_socket, _stdio_pipes
from runtime.dockerapi.images.store import Forbidden, NotFound
from runtime.dockerapi.limits import quota_message
from runtime.procfs import proc_start
from runtime.sandbox import bundle


class Exec(Spec, ProcessIO):
    def exec_create(self, cid: str, body: dict[str, Any]) -> str:
        c = self._get(cid)
        if c.status == "restarting":
            raise errors.Conflict(f"Container {c.id} is restarting, wait until the container is running")
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        if c.paused:
            raise errors.Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if body.get("Privileged"):
            raise Forbidden(PRIVILEGED_REASON)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        if not cmd:
            raise errors.BadRequest("No exec command specified")
        eid = secrets.token_hex(32)
        cfg = {
            "User": str(body.get("User") or c.config.get("User") or ""),
            "Privileged": False,
            "Tty": bool(body.get("Tty")),
            "AttachStdin": bool(body.get("AttachStdin")),
            "AttachStdout": bool(body.get("AttachStdout", True)),
            "AttachStderr": bool(body.get("AttachStderr", True)),
            "Env": list(body.get("Env") or []),
            "WorkingDir": str(body.get("WorkingDir") or ""),
            "Cmd": [str(x) for x in cmd],
            "ConsoleSize": body.get("ConsoleSize"),
        }
        with self._lock:
            if len(self._execs) >= self.limits.execs:
                for old in [x for x in self._execs.values() if x.done.is_set()]:
                    if len(self._execs) < self.limits.execs:
                        break
                    del self._execs[old.id]
            if len(self._execs) >= self.limits.execs:
                remedy = "let running ones finish, or remove their container"
                raise Forbidden(quota_message("exec instances", self.limits.execs, remedy))
            self._execs[eid] = _Exec(eid, c.id, cfg)
        return eid

    def _exec(self, eid: str) -> _Exec:
        with self._lock:
            e = self._execs.get(eid)
        if e is None:
            raise NotFound(f"No such exec instance: {eid}")
        return e

    def exec_start(self, eid: str, *, detach: bool, tty: bool) -> Stream | None:
        """Run an exec. Its process gets a TTY if exec-create asked for one; ``tty`` (exec-start's
        ``Tty``) decides only the framing of the attached stream, raw or multiplexed, as
        dockerd's exec start router does."""
        e = self._exec(eid)
        c = self._get(e.cid)
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        if c.paused:
            raise errors.Conflict(f"Container {c.id} is paused, unpause the container before exec")
        with self._lock:
            if e.running or e.exit_code is not None:
                raise errors.Conflict(f"Error: Exec command {eid} has already run")
            e.running = True
        framing_tty, tty = tty, bool(e.config["Tty"])
        d = self._dir(c.id)
        rootfs = d / "rootfs"
        try:
            user = fsutil.resolve_user(rootfs, e.config["User"])
            _groups(rootfs, user, c.host_config)
        except ValueError as exc:
            e.running, e.exit_code = False, 126
            raise errors.BadRequest(f"unable to start exec: {exc}") from None
        env = _replace_or_append_env(self._process_env(c, user, tty=tty), [str(x) for x in e.config["Env"]])
        doc: dict[str, Any] = {
            "terminal": tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": _groups(rootfs, user, c.host_config)},
            "args": e.config["Cmd"],
            "env": env,
            "cwd": e.config["WorkingDir"] or c.config.get("WorkingDir") or "/",
            "capabilities": {k: capabilities(c.host_config) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        }
        size = e.config.get("ConsoleSize") or [24, 80]
        if tty:
            doc["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
        n = eid[:12]
        pfile, pidfile, logfile = d / f"exec-{n}.json", d / f"exec-{n}.pid", d / f"exec-{n}.log"
        sock_path = Path()
        pfile.write_text(json.dumps(doc))
        attach_in = e.config["AttachStdin"] and not detach
        sock: socket.socket | None = None
        child: builtins.list[int] = []
        ours: builtins.list[int] = []
        stream: Stream | None = None
        try:
            if tty:
                sock, sock_path = _console_socket()
                stdio = (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
                out_r = err_r = -1
            elif detach:
                stdio = (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
                out_r = err_r = -1
            else:
                stdio, e.stdin_fd, out_r, err_r = _stdio_pipes(attach_in, child, ours)
            argv = [self.ctx.runc, "--root", str(self.runc_root), "--log", str(logfile), "--log-format", "json"]
            argv += ["exec", "-d", "--pid-file", str(pidfile), "--process", str(pfile)]
            if tty:
                argv += ["--tty", "--console-socket", str(sock_path)]
            argv.append(c.id)
            rc = self.place.run_quiet(argv, timeout=RUNC_TIMEOUT, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
            for fd in child:
                os.close(fd)
            child = []
            if rc != 0:
                why = bundle.runc_error(logfile)
                e.exit_code = 127 if "no such file" in why or "not found" in why else 126
                raise errors.BadRequest(f"OCI runtime exec failed: {why}")
            e.pid = int(pidfile.read_text().strip())
            if sock is not None:
                e.pty = bundle.receive_pty_master(sock)
                self._set_winsize(e.pty, int(size[0]), int(size[1]))
            pending = {"n": 0}
            if not detach:

                def write(data: bytes) -> None:
                    fd = e.pty if e.pty is not None else e.stdin_fd
                    if fd is not None:
                        with contextlib.suppress(OSError):
                            os.write(fd, data)

                def close_in() -> None:
                    fd, e.stdin_fd = e.stdin_fd, None
                    if fd is not None:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                    elif e.pty is not None:
                        with contextlib.suppress(OSError):
                            os.write(e.pty, b"\x04")

                stream = Stream(
                    tty=framing_tty, write=write if attach_in else None, close_stdin=close_in if attach_in else None
                )
                lock = threading.Lock()

                def one_done() -> None:
                    with lock:
                        pending["n"] -= 1
                        last = pending["n"] == 0
                    if last:  # the stream ends once the exit code is known (exec inspect)
                        assert stream is not None
                        self._when_exec_done(e, lambda: stream.push(None))

                if e.pty is not None:
                    pending["n"] = 1
                    pty_fd = os.dup(e.pty)
                    self._pump(stream, pty_fd, 1, one_done)
                else:
                    pending["n"] = 2
                    self._pump(stream, out_r, 1, one_done)
                    self._pump(stream, err_r, 2, one_done)
                    ours = [fd for fd in ours if fd not in (out_r, err_r)]
            elif e.pty is not None:
                # detached with a TTY: drain the PTY so the process never blocks on output
                self._pump(Stream(tty=True), os.dup(e.pty), 1)
        except BaseException:
            for fd in child + ours:
                with contextlib.suppress(OSError):
                    os.close(fd)
            e.running = False
            if e.exit_code is None:
                e.exit_code = 126
            self._exec_done(e)
            raise
        finally:
            if sock is not None:
                sock.close()
                shutil.rmtree(sock_path.parent, ignore_errors=True)
            for p in (pfile, pidfile, logfile):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        self._watch_pid(e.pid, lambda: self._exec_exited(e))
        return stream

    def _when_exec_done(self, e: _Exec, fn: Callable[[], None]) -> None:
        with self._lock:
            if not e.done.is_set():
                e.when_done.append(fn)
                return
        fn()

    def _exec_done(self, e: _Exec) -> None:
        with self._lock:
            e.done.set()
            fns, e.when_done = e.when_done, []
        for fn in fns:
            fn()

    def _exec_exited(self, e: _Exec) -> None:
        code: int | None = None
        while code is None:
            code = self._reap(e.pid, timeout=1.0)
            if code is None and proc_start(e.pid) is None:
                code = self._reap(e.pid, timeout=0) if self._is_child(e.pid) else 255
        with self._lock:
            e.exit_code = 128 - code if code < 0 else code
            e.running = False
            fd, e.stdin_fd = e.stdin_fd, None
            pty, e.pty = e.pty, None
        for x in (fd, pty):
            if x is not None:
                with contextlib.suppress(OSError):
                    os.close(x)
        self._exec_done(e)

    @staticmethod
    def _is_child(pid: int) -> bool:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
        except (OSError, ValueError, IndexError):
            return False

    def exec_inspect(self, eid: str) -> dict[str, Any]:
        e = self._exec(eid)
        return {
            "ID": e.id,
            "Running": e.running,
            "ExitCode": e.exit_code,
            "ProcessConfig": {
                "tty": e.config["Tty"],
                "entrypoint": e.config["Cmd"][0],
                "arguments": e.config["Cmd"][1:],
                "privileged": False,
                "user": e.config["User"],
            },
            "OpenStdin": e.config["AttachStdin"],
            "OpenStderr": e.config["AttachStderr"],
            "OpenStdout": e.config["AttachStdout"],
            "CanRemove": False,
            "ContainerID": e.cid,
            "DetachKeys": "",
            "Pid": e.pid,
        }

    def exec_resize(self, eid: str, *, height: int, width: int) -> None:
        pty = self._exec(eid).pty
        if pty is not None:
            with contextlib.suppress(OSError):
                self._set_winsize(pty, height, width)
