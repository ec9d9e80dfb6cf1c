"""PTY session behaviour that needs a long-running program: flow control, Ctrl-C, activity."""

from __future__ import annotations

import time

from runtime.sessions.pty import HIGH_WATERMARK
from tests.runtime.conftest_daemon import Env
from tests.runtime.daemon_helpers import read_until
from tests.runtime.test_daemon import prompt

SHELL = ["/bin/sh", "-i"]


def _wait(pred, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_yes_without_reader_pauses_the_pty_and_ctrl_c_stops_it(env: Env) -> None:
    c, sid = env.client, env.sandbox()
    s = c.create_session(sid, SHELL, env={"PS1": "P$ "})
    att = c.attach(sid, s["session_id"])
    prompt(att)
    rss_before = env.daemon.rss_bytes() if env.daemon else 0
    att.send(b"yes\n")
    # we do not read: the daemon must stop reading the PTY rather than buffer without bound
    _wait(lambda: c.get_session(sid, s["session_id"])["paused"], what="flow control to pause")
    samples = []
    for _ in range(10):
        time.sleep(0.2)
        info = c.get_session(sid, s["session_id"])
        assert info["paused"] and not info["exited"]
        if env.daemon:
            samples.append(env.daemon.rss_bytes())
    if env.daemon:
        # bounded: scrollback + one high watermark + transport buffers, not megabytes per second
        assert max(samples) - rss_before < 32 * 2**20, (rss_before, samples)
        assert max(samples) - min(samples) < 8 * 2**20, samples
    # another session in the same sandbox is not starved meanwhile
    r = c.exec(sid, ["echo", "still-responsive"], timeout=20)
    assert r.stdout == b"still-responsive\n"
    att.send(b"\x03")
    tail = read_until(att, b"P$ ", timeout=60)
    assert tail.count(b"y") >= HIGH_WATERMARK // 4  # the backlog arrived, then the prompt
    att.send(b"echo after-$((2+3))\n")
    read_until(att, b"after-5")
    assert c.get_session(sid, s["session_id"])["paused"] is False


def test_session_activity_touches_the_sandbox(env: Env) -> None:
    c, sid = env.client, env.sandbox()
    s = c.create_session(sid, SHELL, env={"PS1": "P$ "})
    att = c.attach(sid, s["session_id"])
    prompt(att)
    before = c.get_sandbox(sid)["last_activity"]
    time.sleep(1.2)  # activity touches are throttled to one a second
    att.send(b"echo typing\n")
    read_until(att, b"typing\r\n")
    _wait(lambda: c.get_sandbox(sid)["last_activity"] > before, what="last_activity to move")


def test_exec_stream_pipes_stdin_and_separates_streams(env: Env) -> None:
    c, sid = env.client, env.sandbox()
    st = c.exec_stream(sid, ["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 4"])
    st.send(b"hello ")
    st.send(b"world\n")
    st.close_stdin()
    out, err = b"", b""
    for tag, data in st:
        if tag == 1:
            out += data
        else:
            err += data
    st.close()
    assert (out, err, st.exit_code, st.timed_out) == (b"HELLO WORLD\n", b"oops\n", 4, False)
