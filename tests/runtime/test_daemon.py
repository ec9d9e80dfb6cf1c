"""runtimed's API over its socket, against the stand-in and against real runc sandboxes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runtime import errors
from runtime.client import AsyncClient, SyncAttach
from tests.runtime.conftest_daemon import Env
from tests.runtime.daemon_helpers import read_event, read_until

SHELL = ["/bin/sh", "-i"]
PROMPT_ENV = {"PS1": "P$ "}


def prompt(att: SyncAttach, ps1: str = "P$ ") -> None:
    """Set a known prompt (images' profiles set their own) and wait for it."""
    a, b = ps1[0], ps1[1:]
    att.send(f"PS1='{a}''{b}'; echo pr''ompt-set\n".encode())
    read_until(att, b"prompt-set\r\n" + ps1.encode())


def test_sandbox_round_trip(env: Env) -> None:
    c = env.client
    assert c.healthz()["ok"] is True
    sid = env.sandbox(labels={"lab": "l1"})
    info = c.get_sandbox(sid)
    assert info["id"] == sid
    assert info["status"] == "running"
    assert info["spec"]["labels"] == {"lab": "l1"}
    assert sid in [b["id"] for b in c.list_sandboxes()]
    stats = c.stats(sid)
    assert stats["memory_bytes"] > 0 and stats["pids_limit"] > 0
    assert stats["sessions"] == 0
    before = info["last_activity"]
    time.sleep(0.05)
    assert c.touch(sid)["last_activity"] > before
    c.remove_sandbox(sid)
    with pytest.raises(errors.SandboxNotFound):
        c.get_sandbox(sid)
    assert sid not in [b["id"] for b in c.list_sandboxes()]


def test_errors_come_back_as_their_classes(env: Env) -> None:
    c = env.client
    for call in (
        lambda: c.get_sandbox("nosuchbox"),
        lambda: c.stats("nosuchbox"),
        lambda: c.remove_sandbox("nosuchbox"),
        lambda: c.exec("nosuchbox", ["true"]),
        lambda: c.create_session("nosuchbox"),
        lambda: c.list_sessions("nosuchbox"),
    ):
        with pytest.raises(errors.SandboxNotFound):
            call()
    sid = env.sandbox()
    with pytest.raises(errors.SessionNotFound):
        c.attach(sid, "nosuchsession")
    with pytest.raises(errors.SessionNotFound):
        c.resize(sid, "nosuchsession", 10, 10)
    with pytest.raises(errors.BadRequest):
        c.create_sandbox({"image": "busybox", "memory": "lots"})
    with pytest.raises(errors.BadRequest):
        c.exec(sid, [])
    with pytest.raises(errors.BadRequest):
        c.exec(sid, ["true"], timeout=-1)
    if env.kind == "standin":  # the stand-in manager has no service hooks; runtimed has docker
        with pytest.raises(errors.NotAvailable, match="docker"):
            c.create_sandbox({"image": "busybox", "services": ["docker"]})


def test_exec_returns_stdout_stderr_and_exit_code(env: Env) -> None:
    sid = env.sandbox()
    r = env.client.exec(sid, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (7, b"out\n", b"err\n", False)
    r = env.client.exec(
        sid,
        ["sh", "-c", 'cat; echo "$GREETING"; pwd'],
        stdin="piped\n",
        env={"GREETING": "hi"},
        cwd="/tmp",
    )
    assert r.ok
    assert r.stdout == b"piped\nhi\n/tmp\n"
    binary = bytes(range(256))
    r = env.client.exec(sid, ["cat"], stdin=binary)
    assert r.stdout == binary


def test_exec_output_is_capped(env: Env) -> None:
    sid = env.sandbox()
    r = env.client.exec(sid, ["sh", "-c", "yes | head -c 300000; echo done >&2"], max_output=1000)
    assert r.exit_code == 0
    assert len(r.stdout) == 1000 and r.stdout_truncated
    assert r.stderr == b"done\n" and not r.stderr_truncated


def _scan(marker: str) -> list[str]:
    """argv of a shell that lists processes whose command line contains ``marker``.

    The regex ``12[3]`` matches 123 but not itself, so the scan never finds itself.
    """
    regex = f"{marker[:-1]}[{marker[-1]}]"
    script = f'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f"; echo; done 2>/dev/null | grep {regex}'
    return ["sh", "-c", script]


def test_timed_out_exec_leaves_no_process_behind(env: Env) -> None:
    sid = env.sandbox()
    base = int(time.time() * 1000) % 100000 + 100000
    marker, control = str(base), str(base + 1)
    # the scan works: a process left running on purpose is found
    r = env.client.exec(sid, ["sh", "-c", f"sleep {control} >/dev/null 2>&1 &"], timeout=10)
    assert r.ok
    found = env.client.exec(sid, _scan(control), timeout=10)
    assert found.exit_code == 0 and control.encode() in found.stdout, found
    r = env.client.exec(sid, ["sh", "-c", f"sleep {marker} & sleep {marker}; echo never"], timeout=1)
    assert r.timed_out
    assert b"never" not in r.stdout
    # neither the foreground sleep nor the background one (nor their shell) survived
    left = env.client.exec(sid, _scan(marker), timeout=10)
    assert left.exit_code == 1, (left.stdout, left.stderr)


def test_session_survives_disconnect_and_replays_scrollback(env: Env) -> None:
    c, sid = env.client, env.sandbox()
    s = c.create_session(sid, SHELL, env=PROMPT_ENV)
    att = c.attach(sid, s["session_id"])
    prompt(att)
    att.send(b"echo first-$((40+2))\n")
    read_until(att, b"first-42")
    att.close()  # the browser went away
    assert c.get_session(sid, s["session_id"])["exited"] is False
    att2 = c.attach(sid, s["session_id"])
    replay = read_until(att2, b"first-42")  # the scrollback comes first
    assert b"echo first-$((40+2))" in replay
    att2.send(b"echo second-$((50+5))\n")
    read_until(att2, b"second-55")
    att2.send(b"exit 3\n")
    assert read_event(att2, "exit")["code"] == 3
    assert c.get_session(sid, s["session_id"])["exit_code"] == 3
    # attaching to an exited session replays and ends
    att3 = c.attach(sid, s["session_id"])
    read_until(att3, b"second-55")
    assert read_event(att3, "exit")["code"] == 3


def test_two_sessions_in_one_sandbox_are_independent(env: Env) -> None:
    c, sid = env.client, env.sandbox()
    a = c.create_session(sid, SHELL, env={"PS1": "A$ "})
    b = c.create_session(sid, SHELL, env={"PS1": "B$ "})
    ta, tb = c.attach(sid, a["session_id"]), c.attach(sid, b["session_id"])
    prompt(ta, "A$ ")
    prompt(tb, "B$ ")
    ta.send(b"X=alpha; echo in-a-$X\n")
    read_until(ta, b"in-a-alpha")
    tb.send(b"echo in-b-${X:-unset}\n")
    out_b = read_until(tb, b"in-b-unset")
    assert b"alpha" not in out_b
    ids = {s["session_id"] for s in c.list_sessions(sid)}
    assert ids == {a["session_id"], b["session_id"]}
    c.remove_session(sid, a["session_id"])
    assert read_event(ta, "exit")["code"] is not None
    tb.send(b"echo b-still-$((1+1))\n")
    read_until(tb, b"b-still-2")
    with pytest.raises(errors.SessionNotFound):
        c.get_session(sid, a["session_id"])


def test_read_only_attach_drops_input(env: Env) -> None:
    c, sid = env.client, env.sandbox()
    s = c.create_session(sid, SHELL, env=PROMPT_ENV)
    rw = c.attach(sid, s["session_id"])
    ro = c.attach(sid, s["session_id"], read_only=True)
    prompt(rw)
    ro.send(b"echo from-observer-$((6*7))\n")
    ro.resize(5, 5)
    rw.send(b"echo from-owner-$((6*8))\n")
    seen_by_observer = read_until(ro, b"from-owner-48")  # the observer sees the owner's work
    seen_by_owner = read_until(rw, b"from-owner-48")
    assert b"from-observer" not in seen_by_owner + seen_by_observer
    rw.send(b"stty size\n")
    assert b"24 80" in read_until(rw, b"24 80")


def test_resize_changes_stty_size(env: Env) -> None:
    c, sid = env.client, env.sandbox()
    s = c.create_session(sid, SHELL, rows=30, cols=100, env=PROMPT_ENV)
    att = c.attach(sid, s["session_id"])
    prompt(att)
    att.send(b"stty size\n")
    read_until(att, b"30 100")
    c.resize(sid, s["session_id"], 40, 120)  # over HTTP
    att.send(b"stty size\n")
    read_until(att, b"40 120")
    att.resize(50, 132)  # over the attach stream
    time.sleep(0.2)
    att.send(b"stty size\n")
    read_until(att, b"50 132")
    assert c.get_session(sid, s["session_id"])["rows"] == 50


def test_sessions_end_with_their_sandbox(env: Env) -> None:
    c, sid = env.client, env.sandbox()
    s = c.create_session(sid, SHELL, env=PROMPT_ENV)
    att = c.attach(sid, s["session_id"])
    prompt(att)
    c.remove_sandbox(sid)
    assert "code" in read_event(att, "exit")


async def test_async_client_round_trip_and_errors(env: Env) -> None:
    sid = env.sandbox()
    async with AsyncClient(env.socket) as ac:
        assert (await ac.healthz())["ok"]
        with pytest.raises(errors.SandboxNotFound):
            await ac.get_sandbox("nosuchbox")
        with pytest.raises(errors.SessionNotFound):
            await ac.attach(sid, "nosuchsession")
        r = await ac.exec(sid, ["sh", "-c", "echo async; exit 1"])
        assert (r.exit_code, r.stdout) == (1, b"async\n")
        s = await ac.create_session(sid, SHELL)
        att = await ac.attach(sid, s["session_id"])
        await att.send(b"echo via-$((3+4))\n")
        buf = b""
        while b"via-7" not in buf:
            item = await att.recv(timeout=20)
            assert item is not None
            if isinstance(item, bytes):
                buf += item
        await ac.resize(sid, s["session_id"], 20, 60)
        assert (await ac.get_session(sid, s["session_id"]))["cols"] == 60
        await att.close()
        await ac.remove_session(sid, s["session_id"])
        assert await ac.list_sessions(sid) == []


def test_images_build_export_import_remove(runc_env: Env, tmp_path: Path) -> None:
    c = runc_env.client
    names = [i["name"] for i in c.images()]
    assert "busybox" in names
    lines: list[str] = []
    again = c.build_image("busybox", lines.append)  # rebuilding reports progress and succeeds
    assert again["name"] == "busybox" and lines
    tar = tmp_path / "busybox.tar"
    c.export_image("busybox", tar)
    assert tar.stat().st_size > 100_000
    copy = c.import_image(tar, "busybox-copy")
    assert copy["name"] == "busybox-copy"
    sid = c.create_sandbox({"image": "busybox-copy"})["id"]
    assert c.exec(sid, ["echo", "from-copy"]).stdout == b"from-copy\n"
    c.remove_sandbox(sid)
    c.remove_image("busybox-copy")
    assert "busybox-copy" not in [i["name"] for i in c.images()]
    with pytest.raises(errors.ImageNotFound):
        c.export_image("busybox-copy", tmp_path / "none.tar")
    with pytest.raises(errors.ImageNotFound):
        c.create_sandbox({"image": "no-such-image"})
