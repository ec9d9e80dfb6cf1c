"""runtimed's fork server (runtime/kernel/forkserver.py) is reachable by runtimed alone and
runs nothing but the helpers it loaded, whatever a request carries (issue #13).

It forks root helpers, so a way in would be a way out of every sandbox: it has no name to
connect to (no path, no abstract address: a socketpair), its helper children keep none of
its descriptors, and a helper name or argv built from request data is data, never a script
to run."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.kernel import forkserver
from tests.runtime.sandbox_helpers import as_subreaper

MOUNT = "runtime.sandbox._mounthelper"


@pytest.fixture
def server() -> Iterator[forkserver.ForkServer]:
    with as_subreaper():
        srv = forkserver.shared()
        proc = forkserver.spawn(MOUNT, [], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.communicate(b'{"op": "warm-up"}', timeout=30)  # the server is running now
        yield srv


def socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            out.add(target[len("socket:[") : -1])
    return out


def test_the_server_has_no_socket_anyone_could_connect_to(server: forkserver.ForkServer) -> None:
    assert server.pid is not None
    inodes = socket_inodes(server.pid)
    assert len(inodes) == 1  # its end of runtimed's socketpair, nothing else
    named = {}
    for line in Path(f"/proc/{server.pid}/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[6] in inodes:
            named[cols[6]] = cols[7] if len(cols) > 7 else ""
    assert named == dict.fromkeys(inodes, "")  # unnamed: no path, no abstract address


def test_a_helper_name_from_request_data_is_refused(server: forkserver.ForkServer, tmp_path: Path) -> None:
    evil = tmp_path / "evil.py"
    marker = tmp_path / "ran"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    before = server.launched
    # paths, the old table's short names, modules that exist but are no forked helper
    names = (str(evil), "../../../" + str(evil), "mount", "mount/../../x", "__builtins__", "")
    for name in (*names, "os", "runtime.sandbox.manager", "runtime.kube.node._netns_sockets", MOUNT + "."):
        r, w = os.pipe()
        try:
            with pytest.raises(forkserver.Unavailable, match="refused"):
                server.launch(name, [str(evil)], {0: r, 1: w, 2: w}, False)
        finally:
            os.close(r)
            os.close(w)
    assert server.launched == before
    assert server.pid is not None  # refusing did not stop it
    assert not marker.exists()


def test_an_argv_from_request_data_is_only_the_helpers_argv(server: forkserver.ForkServer, tmp_path: Path) -> None:
    evil = tmp_path / "evil.py"
    marker = tmp_path / "ran"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    proc = forkserver.spawn(
        MOUNT, [str(evil), "-c", "import os"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, _err = proc.communicate(b'{"op": "still-the-mount-helper"}', timeout=30)
    assert (proc.returncode, json.loads(out)) == (1, {"error": "unknown op 'still-the-mount-helper'"})
    assert not marker.exists()
