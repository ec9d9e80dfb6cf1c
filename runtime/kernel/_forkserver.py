"""Fork server for runtimed's Python helper children (stdlib only, a helper module itself).

Started once by ``forkserver.py`` as ``python -P -s -S -m runtime.kernel._forkserver FD``
(``children.helper_argv``); see that module for why and for the protocol. It imports each
helper module of ``FORKED`` once (``importlib``, by module name: their imports and their code),
then serves requests on the SOCK_SEQPACKET socket FD, one at a time: a JSON message
``{"helper": MODULE, "argv": [...], "fds": [N, ...], "session": BOOL}`` with the descriptors
for the child's fds ``N`` attached (SCM_RIGHTS, in that order). ``MODULE`` must be a key of
``FORKED``: a request names one of the modules imported at start-up, nothing else. For each
it forks twice: the grandchild places the descriptors at exactly those numbers, closes every
other one (the server's socket included), makes its session if asked, reports its pid through
a pipe, sets ``sys.argv`` and the std streams, runs the helper's ``main`` and exits with its
status; the middle child exits at once, so the grandchild is re-parented to runtimed (a child
subreaper) before the server, having reaped the middle one, answers with that pid. runtimed
then waits for it as for any child of its own. An empty message (runtimed closed its end, or
died) ends the server.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import socket
import sys

# The helper modules the server imports at start-up and forks, each with whether its ``main``
# takes ``sys.argv``; every one is also in ``children.HELPERS`` (a test keeps them so).
FORKED = {
    "runtime.sandbox._mounthelper": False,
    "runtime.kube.node._netns_listen": True,
}
MAX_FDS = 16

Helpers = dict[str, tuple[object, bool]]  # module -> (its main, takes argv)


def load() -> Helpers:
    return {name: (importlib.import_module(name).main, takes_argv) for name, takes_argv in FORKED.items()}


def place_fds(received: list[int], targets: list[int], keep: int) -> int:
    """Put ``received[i]`` at fd ``targets[i]``, close every other descriptor but ``keep``;
    ``keep``'s new number (close-on-exec, above the targets)."""
    top = max([*targets, *received, keep]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for fd in received]
    kept = fcntl.fcntl(keep, fcntl.F_DUPFD_CLOEXEC, top)
    for fd in {*received, keep}:
        os.close(fd)
    for fd, target in zip(moved, targets, strict=True):
        os.dup2(fd, target)  # the copy at target is inheritable, the high one is closed below
    lo = 0
    for fd in sorted({*targets, kept}):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)
    return kept


def run_child(helpers: Helpers, req: dict[str, object], fds: list[int], w: int) -> None:
    code = 1
    try:
        targets = [int(n) for n in req["fds"]]  # type: ignore[attr-defined]
        w = place_fds(fds, targets, w)
        if req.get("session"):
            os.setsid()
        # set up as Popen's child is when Popen returns: only now the server answers
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        argv = [str(a) for a in req["argv"]]  # type: ignore[attr-defined]
        main, takes_argv = helpers[str(req["helper"])]
        sys.argv = argv
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False, buffering=1)  # noqa: SIM115
        try:
            ret = main(argv) if takes_argv else main()  # type: ignore[operator]
        except SystemExit as exc:
            ret = exc.code
        if ret is None:
            code = 0
        elif isinstance(ret, int):
            code = ret
        else:
            print(ret, file=sys.stderr)
    except BaseException:
        import traceback  # only on failure

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:  # noqa: SIM105 - no contextlib (import cost)
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def serve(ctl: socket.socket, helpers: Helpers) -> None:
    while True:
        msg, fds, _flags, _addr = socket.recv_fds(ctl, 1 << 16, MAX_FDS)
        if not msg:
            return
        try:
            req = json.loads(msg)
            if req.get("helper") not in helpers or len(req.get("fds", ())) != len(fds):
                raise ValueError(f"bad request {msg[:200]!r} with {len(fds)} fds")
            r, w = os.pipe()
            middle = os.fork()
            if middle == 0:
                try:
                    os.close(r)
                    ctl.close()
                    if os.fork() == 0:
                        run_child(helpers, req, fds, w)  # writes its pid to w once set up
                finally:
                    os._exit(0)
            os.close(w)
            with open(r, "rb") as f:
                answer = f.read()
            os.waitpid(middle, 0)  # once it is gone, its child is runtimed's
            reply = answer if answer.isdigit() else b"error: no child"
        except (OSError, ValueError) as exc:
            reply = f"error: {exc}".encode()
        finally:
            for fd in fds:
                os.close(fd)
        ctl.send(reply)


def main() -> int:
    ctl = socket.socket(fileno=int(sys.argv[1]))
    helpers = load()
    ctl.send(b"ready")
    serve(ctl, helpers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
