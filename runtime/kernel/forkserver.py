"""Python helper children of runtimed, forked from a pre-imported server: ``spawn``.

Why. runtimed does kernel work in child processes (CONVENTIONS.md, 10); two of them are
Python helper modules started for every sandbox start: the mount helper
(``runtime.sandbox._mounthelper``) and the netns listener (``runtime.kube.node._netns_listen``).
A fresh interpreter plus their imports costs ~20 ms of CPU each, and a class of 50 starting at
once is CPU-bound (issue #13). As multiprocessing's forkserver does, one small server process
(``runtime.kernel._forkserver``, started like every helper with ``children.helper_argv``)
imports them once by module name, then forks a child per request: about 3 ms of CPU in all
(server and child, measured with the mount helper refusing a request) instead of ~27 ms.

What does not change. The child is the same module's ``main`` in a process of its own that
starts with exactly the descriptors it was given (stdin, stdout, stderr and ``pass_fds`` at
the same numbers; every other one closed) and, with ``start_new_session``, a session of its
own (else the server's, which is its own session: a Ctrl-C at runtimed's terminal does not
reach helpers mid-mount; runtimed's own shutdown does as before). It runs where a directly
started helper runs: the server is runtimed's child, started from runtimed with a helper's
environment (``children.helper_env``: PYTHONPATH, PATH and LANG; no token of runtimed's), in
runtimed's cgroup and namespaces, as root; the helper then enters whatever the request names,
as before. It is runtimed's child too: the server forks twice and the middle process exits, so
the helper is re-parented to runtimed (a child subreaper, ``PR_SET_CHILD_SUBREAPER``) before
its pid is returned; the ``Popen`` that ``spawn`` returns waits for it, kills it and reads its
pipes like any other.

Who can reach it. Only runtimed: the server listens on nothing; it reads requests from one
end of a socketpair whose other end only runtimed holds (not inheritable, so no runc or
helper gets it), and a request can only name a helper module the server imported at start-up
(``_forkserver.FORKED``).

Who does not come through it, and why. A helper whose work is a sandbox's bill is started in
that sandbox's cgroup by ``runtime.sandbox.cgexec.Placement`` (``kl-cgexec`` joins the cgroup
before the exec), as ``children.helper_argv`` gives it: the engine's helper
(``runtime.dockerapi._enginehelper``), the files helper (``runtime.sandbox._fileshelper``), the
pod connectivity probe (``runtime.kube.node._netns_probe``) and the kubelet's socket helper
(``runtime.kube.node._netns_sockets``); a child of this server starts in runtimed's cgroup.

Failures. A server that died (killed, crashed) is reaped and started again at the next
request; if it cannot be used (not a subreaper: the child would not be ours to wait for;
a failed start or answer), the helper is started directly (``children.helper_argv``), as
before, and a line is logged.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import socket
import subprocess
import threading
from collections.abc import Sequence

from runtime.kernel import children
from runtime.kernel._forkserver import FORKED
from runtime.kernel.children import AdoptedPopen

log = logging.getLogger("runtime.kernel")

SERVER = "runtime.kernel._forkserver"
PR_GET_CHILD_SUBREAPER = 37
START_TIMEOUT = 10.0
ANSWER_TIMEOUT = 10.0


class Unavailable(Exception):
    """The server could not start this child; the caller starts it directly."""


def is_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    flag = ctypes.c_int(0)
    return bool(libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value)


class ForkServer:
    """One server per runtimed; ``launch`` is thread-safe (requests are served in turn)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self.launched = 0  # children started through the server (tests, benches)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(
                children.helper_argv(SERVER, [str(theirs.fileno())]),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                close_fds=True,
                start_new_session=True,
                env=children.helper_env(),
            )
        finally:
            theirs.close()
        ours.settimeout(START_TIMEOUT)
        try:
            ready = ours.recv(16)
        except OSError:
            ready = b""
        if ready != b"ready":
            ours.close()
            self._reap(proc)
            raise Unavailable("the fork server did not start")
        ours.settimeout(ANSWER_TIMEOUT)
        self._proc, self._sock = proc, ours

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._proc is not None:
            self._reap(self._proc)
        self._proc = self._sock = None

    def close(self) -> None:
        with self._lock:
            self._stop()

    def launch(self, helper: str, argv: Sequence[str], fds: dict[int, int], session: bool) -> int:
        """Fork helper module ``helper`` with ``argv``, descriptor ``fds[n]`` at ``n`` in the child; its pid."""
        msg = json.dumps({"helper": helper, "argv": list(argv), "fds": list(fds), "session": session}).encode()
        with self._lock:
            if self._proc is not None and self._proc.poll() is not None:
                log.warning("fork server exited (%s); starting it again", self._proc.returncode)
                self._stop()
            if self._proc is None:
                self._start()
            assert self._sock is not None
            try:
                socket.send_fds(self._sock, [msg], list(fds.values()))
                answer = self._sock.recv(256)
            except OSError as exc:
                # dead or stuck: a child may exist that no one will wait for, so no retry
                # here; the next request starts a fresh server
                self._stop()
                raise Unavailable(f"the fork server did not answer: {exc}") from exc
            if not answer.isdigit():
                if not answer:
                    self._stop()
                raise Unavailable(f"the fork server refused: {answer[:300].decode(errors='replace')}")
            self.launched += 1
            return int(answer)


def _forked(
    server: ForkServer, helper: str, argv: list[str], pass_fds: Sequence[int], session: bool, **kw: int | None
) -> AdoptedPopen:
    """A Popen whose child the fork server forked (re-parented to us: ``waitpid`` works)."""

    def launch(stdin: int, stdout: int, stderr: int) -> int:
        # -1: not redirected, the child has ours (as a directly started one would)
        fds = {0: stdin if stdin != -1 else 0, 1: stdout if stdout != -1 else 1, 2: stderr if stderr != -1 else 2}
        fds.update({fd: fd for fd in pass_fds})
        return server.launch(helper, argv, fds, session)

    return AdoptedPopen(launch, argv=argv, **kw)


_server = ForkServer()


def shared() -> ForkServer:
    """The process's fork server (started at its first use)."""
    return _server


def spawn(
    helper: str,
    args: Sequence[str],
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    pass_fds: Sequence[int] = (),
    start_new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start helper module ``helper`` (a key of ``_forkserver.FORKED``) with ``args``, like
    ``Popen(children.helper_argv(helper, args), env=children.helper_env(), ...)``: forked by
    the server when this process is a child subreaper, else started directly."""
    if helper not in FORKED:
        raise ValueError(f"{helper!r} is not a helper the fork server starts (_forkserver.FORKED)")
    argv = children.helper_argv(helper, args)
    if is_subreaper():
        try:
            return _forked(
                _server,
                helper,
                [helper, *args],
                pass_fds,
                start_new_session,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
            )
        except Unavailable as exc:
            log.warning("%s; starting the %s helper directly", exc, helper)
    return subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        pass_fds=pass_fds,
        close_fds=True,
        start_new_session=start_new_session,
        env=children.helper_env(),
    )
