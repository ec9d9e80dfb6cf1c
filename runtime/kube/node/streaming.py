"""The exec and attach sessions the kubelet serves (kubelet's streaming server): a process's
I/O in the engine, as apiserver/podio.py's ``PodStream``. Made by kubelet.py for
``pods/exec`` and ``pods/attach``, by prober.py for exec probes and by ingress.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from runtime import errors
from runtime.dockerapi.engine import Engine, Stream


class _Session:
    """A process's I/O as ``runtime/kube/apiserver/podio.py``'s ``PodStream``: ``read`` gives
    (1|2, data) and None at the end or soon after ``close`` (which never blocks)."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._closed = threading.Event()

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed.is_set():
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError("no output yet")
            try:
                return self._stream.read(timeout=wait)
            except TimeoutError:
                continue
        return None

    def write(self, data: bytes) -> None:
        self._stream.write(data)

    def close_stdin(self) -> None:
        self._stream.close_stdin()

    def close(self) -> None:
        self._closed.set()
        self._stream.close()


class PodExec(_Session):
    """A ``kubectl exec`` session: the engine's exec, its exit code and resize; ``close``
    kills the process if it still runs."""

    def __init__(self, engine: Engine, eid: str, stream: Stream) -> None:
        super().__init__(stream)
        self._engine = engine
        self._eid = eid

    def close(self) -> None:
        super().close()
        with contextlib.suppress(errors.RuntimeError, ProcessLookupError):
            info = self._engine.exec_inspect(self._eid)
            if info["Running"] and info["Pid"]:  # runtimed's child until the engine reaps it
                os.kill(int(info["Pid"]), signal.SIGKILL)

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(errors.RuntimeError):
            self._engine.exec_resize(self._eid, height=rows, width=cols)

    def exit_code(self) -> int:
        """The command's exit code once its output ended (waits up to 10 s for the engine)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                info = self._engine.exec_inspect(self._eid)
            except errors.RuntimeError:  # the container was removed meanwhile
                return 137
            if not info["Running"] and info["ExitCode"] is not None:
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                return 1
            time.sleep(0.05)


class PodAttach(_Session):
    """A ``kubectl attach`` session on a container's own process; ``close`` detaches."""

    def __init__(self, engine: Engine, cid: str, stream: Stream) -> None:
        super().__init__(stream)
        self._engine = engine
        self._cid = cid

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(errors.RuntimeError):
            self._engine.resize(self._cid, height=rows, width=cols)

    def exit_code(self) -> int:
        """The container's exit code once it ended (0 if the session only detached)."""
        try:
            state = self._engine.inspect(self._cid)["State"]
        except errors.RuntimeError:
            return 137
        if state["Running"] and not self._closed.is_set():
            return self._engine.wait(self._cid)
        return 0 if state["Running"] else int(state["ExitCode"])
