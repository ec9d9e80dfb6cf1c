"""PTY sessions and exec-with-timeout, on top of ``SandboxManager.spawn()``.

Nothing here touches the kernel beyond file descriptors the sandbox layer hands
over: ``spawn(tty=True)`` gives a non-blocking PTY master, ``spawn(tty=False)``
gives pipes.  Everything runs on the daemon's asyncio loop; processes are
watched with pidfds (no thread per process).

PTY sessions (``runtime.sessions.pty``)
    A session is a shell inside a sandbox whose PTY master is held by a small
    per-session holder process (``runtime.sessions.holder``, the static C
    ``kl-pty-holder``), so it outlives any client and runtimed itself: a browser
    reload re-attaches to the same shell, and a restarted runtimed re-adopts the
    holders under the same session ids (a SIGTERM'd runtimed leaves them
    running).  Without the holder binary the master lives in the daemon and the
    shell ends with it.  The daemon talks to the holder over a unix socket of
    its own; below, "the PTY" is the holder's connection when there is one.
    Output is appended to a scrollback ring buffer (256 KiB by default) and
    fanned out to every attached client.  A new attachment is first given a
    snapshot of the ring (the replay), then live output, with no gap and no
    duplicate, because both happen in one synchronous step on the loop.
    Several sessions may run in one sandbox, several clients may attach to one
    session, and a client attached read-only has its input dropped.

Flow control
    The master is read with ``loop.add_reader``, 64 KiB at most per callback,
    so one busy session never monopolises the loop.  Each attachment counts the
    bytes queued for it and not yet accepted by its WebSocket (aiohttp's
    ``send_bytes`` waits for the transport to drain, so "accepted" means "in a
    bounded transport buffer").  When any attachment is above the high
    watermark the reader is removed: the daemon stops reading the PTY, the
    kernel's PTY buffer fills, and the program inside blocks in ``write()``.
    The reader is re-added once every attachment is below the low watermark.
    With a holder the pause travels one hop further: runtimed stops reading
    the holder's socket, the socket fills, and the holder (which reads the
    master only into ring space its client has already been sent) stops
    reading the master.  Memory per session is therefore bounded by scrollback
    + high watermark per client in runtimed, plus the ring in the holder,
    whatever runs inside.  Input is written to the master directly,
    never queued behind output, so Ctrl-C (``\\x03``) reaches the line
    discipline at once; the kernel then signals the foreground process group
    and flushes the PTY output queue.  One slow client slows the session for
    all its clients (as a shared terminal must), never other sessions.
    With no client attached, the session keeps reading (so the scrollback holds
    what happened meanwhile) but at most 20 reads per second, so a detached
    ``yes`` costs the daemon almost nothing; a holder whose runtimed is down
    does the same on its own.

Exec (``runtime.sessions.exec``)
    Runs argv with pipes, collects stdout/stderr up to a cap each (the rest is
    read and dropped so the program never blocks on a full pipe), and on
    timeout kills the whole process tree (``Spawned.kill_tree()``).  A timeout
    is reported in the result (``timed_out=True``), not raised: graders want
    the partial output too.  ``ExecTimeout`` is reserved for callers that wait
    on the client side.
"""

from __future__ import annotations

from runtime.sessions.base import SpawnedProcess, Spawner
from runtime.sessions.exec import ExecOutcome, run_exec, stream_exec
from runtime.sessions.pty import Attachment, Session, SessionRegistry

__all__ = [
    "Attachment",
    "ExecOutcome",
    "Session",
    "SessionRegistry",
    "SpawnedProcess",
    "Spawner",
    "run_exec",
    "stream_exec",
]
