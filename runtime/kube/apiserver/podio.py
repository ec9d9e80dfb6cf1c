"""What the lab cluster's API server needs from a kubelet to serve logs, exec and attach.

``kubectl logs``, ``kubectl exec`` and ``kubectl attach`` reach the API server
(``.../pods/NAME/log|exec|attach``); a real kube-apiserver proxies them to the kubelet of
the pod's node. Ours calls a ``PodIO`` (``Cluster.pod_io``; ``None`` until a kubelet runs
the cluster's pods, and then the API server answers as for pods that never start).

Split of the work
-----------------
``Subresources.pod_stream`` (apiserver/subresources.py, transport-free) does what kube-apiserver does
before it proxies: the pod must exist and be bound to a node, the container is defaulted
and validated with kube-apiserver's messages, the query options are parsed and checked.
It answers a ``Reply`` whose body is a ``LogCall`` or an ``ExecCall``; apiserver/server.py sees the
body's type and streams: the log as chunked ``text/plain``, exec/attach over a WebSocket
(``v5.channel.k8s.io``, ``v4.channel.k8s.io`` or ``v4.base64.channel.k8s.io``; SPDY is
not served).

The PodIO's methods block. apiserver/server.py calls them on threads of its own (a small pool per
request, shut down at the end of the request), never on the event loop, with one
exception: ``close()``, which must not block and must make any ``read()`` in progress
return ``None`` soon, so that no thread outlives a client that went away.

Exec over the WebSocket (client-go ``tools/remotecommand``, apimachinery ``wsstream``)
------------------------------------------------------------------------------------
Every message is binary, its first byte the channel: 0 stdin (client to server), 1
stdout, 2 stderr, 3 error (one ``Status`` JSON when the command has ended: ``Success``,
or ``Failure`` with reason ``NonZeroExitCode`` and a cause ``{"reason": "ExitCode",
"message": "3"}`` that kubectl turns into its own exit code), 4 resize (client to
server: ``{"Width": cols, "Height": rows}``) and, in v5 only, 255 = close: ``[255, 0]``
is the client's end of stdin. The server then closes the WebSocket normally, which is
the end of stdout/stderr for the client.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol

#: WebSocket subprotocols served for exec/attach (the client's first one that is served is
#: taken, as wsstream does). ``v4.base64``: the same channels in text frames, the channel as
#: an ASCII digit and the data base64-encoded (browser clients).
WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io")
BASE64_PROTOCOL = "v4.base64.channel.k8s.io"

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


class LogStream(Protocol):
    """The log of one container, as it is read."""

    def read(self) -> bytes | None:
        """The next chunk (blocks until there is one); ``None`` at the end: the log is all
        sent (no follow), the container ended (follow), or ``close()`` was called."""
        ...

    def close(self) -> None:
        """The client went away or the response ended: release everything. Called on the
        event loop: must not block; a ``read()`` blocked in another thread returns None."""
        ...


class PodStream(Protocol):
    """A process started in a container (exec) or a container's own process (attach)."""

    def read(self) -> tuple[int, bytes] | None:
        """The next output chunk as (1 stdout | 2 stderr, data), blocking until there is
        one; ``None`` once the process ended and all its output was read (or ``close()``
        was called). Under a TTY all output is on stream 1."""
        ...

    def write(self, data: bytes) -> None:
        """Feed the process's stdin. May block while the process does not read; may raise
        ``OSError`` once the process has closed its stdin or ended."""
        ...

    def close_stdin(self) -> None:
        """End of the client's stdin (the process reads EOF)."""
        ...

    def resize(self, cols: int, rows: int) -> None:
        """The client's terminal changed size (TTY sessions; ignored otherwise)."""
        ...

    def exit_code(self) -> int:
        """The exit code (0..255; 128+N if killed by signal N), called after ``read()``
        returned ``None``; may block until the process is reaped."""
        ...

    def close(self) -> None:
        """The client went away or the session is over: end the exec'd process (attach:
        just detach) and release everything. Called on the event loop: must not block; a
        ``read()`` blocked in another thread then returns None soon."""
        ...


class PodIO(Protocol):
    """The kubelet side of logs/exec/attach. Errors are ``runtime.kube.machinery.apierrors.ApiError``
    with the kubelet's messages (e.g. 400 'container "web" in pod "web" is waiting to start:
    ContainerCreating', or 'previous terminated container "web" in pod "web" not found')."""

    def logs(
        self,
        ns: str,
        pod: str,
        container: str,
        *,
        follow: bool,
        tail_lines: int | None,
        previous: bool,
        timestamps: bool,
        since_seconds: int | None,
        since_time: str | None,
        limit_bytes: int | None,
    ) -> LogStream:
        """The container's log with kubelet's options: ``since_time`` is RFC 3339;
        ``timestamps`` prefixes each line with its RFC 3339 (nanosecond) time and a space;
        ``limit_bytes`` ends the stream after that many bytes."""
        ...

    def exec(self, ns: str, pod: str, container: str, command: list[str], *, stdin: bool, tty: bool) -> PodStream:
        """Start ``command`` in the container (stdin attached only if ``stdin``; under a
        TTY if ``tty``). Raises ApiError if it cannot start (e.g. executable not found)."""
        ...

    def attach(self, ns: str, pod: str, container: str, *, stdin: bool, tty: bool) -> PodStream:
        """Attach to the container's main process (ApiError 400 if the PodIO cannot)."""
        ...

    def port_forward(self, ns: str, pod: str, port: int) -> socket.socket:
        """A non-blocking TCP socket connected to ``port`` on the pod's own loopback, made in
        the pod's network namespace (runtime/kube/node/portforward.py). Blocks while it connects;
        raises ApiError (no such pod, nothing running) or OSError (connection refused)."""
        ...


@dataclass
class LogCall:
    """A checked ``GET .../log``: what to ask ``io.logs`` for."""

    io: PodIO
    ns: str
    pod: str
    container: str
    follow: bool
    tail_lines: int | None
    previous: bool
    timestamps: bool
    since_seconds: int | None
    since_time: str | None
    limit_bytes: int | None

    def open(self) -> LogStream:
        return self.io.logs(
            self.ns,
            self.pod,
            self.container,
            follow=self.follow,
            tail_lines=self.tail_lines,
            previous=self.previous,
            timestamps=self.timestamps,
            since_seconds=self.since_seconds,
            since_time=self.since_time,
            limit_bytes=self.limit_bytes,
        )


@dataclass
class ExecCall:
    """A checked exec or attach request (``command`` is empty for attach); the channels
    the client asked for (``stdout``/``stderr``) decide what is forwarded."""

    io: PodIO
    kind: str  # "exec" | "attach"
    ns: str
    pod: str
    container: str
    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def open(self) -> PodStream:
        if self.kind == "exec":
            return self.io.exec(self.ns, self.pod, self.container, self.command, stdin=self.stdin, tty=self.tty)
        return self.io.attach(self.ns, self.pod, self.container, stdin=self.stdin, tty=self.tty)
