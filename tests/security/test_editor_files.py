"""The lab editor's file access (runtime/sandbox/files.py) against a hostile student who owns
the sandbox's /root: links planted to /etc/shadow or out of the sandbox, ``..`` and encoded
paths, absolute paths, a FIFO, a huge file, a link swapped in while the editor works, and
another sandbox's credential.

Real runtimed and runc sandboxes, raw HTTP where a client could normalise a path. Each test
fails if the attack gets through: the secret's content in an answer, the secret changed, a
request that hangs, or any answer that is not a refusal.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from runtime import errors
from runtime.client import Client
from tests.runtime.conftest_daemon import Env

SECRET = "root:$6$SECRET-HASH:19000:0:99999:7:::"


def sh(env: Env, sid: str, script: str, timeout: float = 30) -> str:
    r = env.client.exec(sid, ["sh", "-c", script], timeout=timeout)
    assert r.exit_code == 0, r.stderr_text
    return r.stdout_text


def _sandbox(env: Env) -> str:
    sid = env.sandbox()
    sh(env, sid, f"printf '%s\\n' '{SECRET}' > /etc/shadow && chmod 600 /etc/shadow")
    return sid


def _raw(env: Env, method: str, sid: str, path: str, **kw: Any) -> httpx.Response:
    token = env.client.mint_token(sid, role="web", ttl=300)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(env.socket)), base_url="http://runtimed") as http:
        return http.request(
            method, f"/v1/sandboxes/{sid}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw
        )


def test_a_planted_link_to_etc_shadow_is_neither_read_nor_written(runc_env: Env) -> None:
    c = runc_env.client
    sid = _sandbox(runc_env)
    sh(
        runc_env,
        sid,
        "ln -s /etc/shadow /root/x && ln -s /etc /root/etc && mkdir /root/d && ln -s ../../etc/shadow /root/d/up",
    )
    for path in ("x", "etc/shadow", "d/up", "/root/x"):
        with pytest.raises(errors.Forbidden, match="symbolic link"):
            c.file_read(sid, path)
        for etag in ("*", None):
            with pytest.raises((errors.Forbidden, errors.Conflict)):
                c.file_write(sid, path, "owned\n", etag)
    with pytest.raises(errors.Forbidden, match="symbolic link"):
        c.files_list(sid, "etc")
    assert sh(runc_env, sid, "cat /etc/shadow") == SECRET + "\n"
    # the listing shows the links as links, without following them
    entries = {e["name"]: e["type"] for e in c.files_list(sid, "")["entries"]}
    assert entries["x"] == "link" and entries["etc"] == "link"


def test_a_link_to_another_sandboxs_files_is_refused(runc_env: Env) -> None:
    c = runc_env.client
    mine, victim = _sandbox(runc_env), _sandbox(runc_env)
    sh(runc_env, victim, "echo victim-canary > /root/notes.txt")
    # the victim's files as the host and /proc see them: any of these a student might guess
    for n, target in enumerate(
        (
            f"/proc/{c.get_sandbox(victim)['pid']}/root/root/notes.txt",
            "/proc/1/root/root/notes.txt",
            "/proc/self/root/etc/shadow",
        )
    ):
        sh(runc_env, mine, f"ln -s '{target}' /root/l{n}")
        with pytest.raises(errors.Forbidden):
            c.file_read(mine, f"l{n}")
        with pytest.raises(errors.Forbidden):
            c.file_write(mine, f"l{n}", "owned\n", "*")
    assert sh(runc_env, victim, "cat /root/notes.txt") == "victim-canary\n"


@pytest.mark.parametrize(
    "path",
    [
        "../etc/shadow",
        "a/../../etc/shadow",
        "/etc/shadow",
        "/root/../etc/shadow",
        "/root/./../etc/shadow",
        "..",
        "x\x00y",
    ],
)
def test_dot_dot_absolute_and_nul_paths_are_refused(runc_env: Env, path: str) -> None:
    sid = _sandbox(runc_env)
    for method, route, kw in (
        ("GET", "/files/content", {"params": {"path": path}}),
        ("GET", "/files", {"params": {"path": path}}),
        ("PUT", "/files/content", {"json": {"path": path, "content": "owned\n", "etag": "*"}}),
    ):
        r = _raw(runc_env, method, sid, route, **kw)
        assert r.status_code == 400, (path, route, r.text)
        assert "SECRET" not in r.text
    assert sh(runc_env, sid, "cat /etc/shadow") == SECRET + "\n"


def test_encoded_paths_are_decoded_once_and_stay_names(runc_env: Env) -> None:
    sid = _sandbox(runc_env)
    # %2e%2e is '..' after the one decoding of the query: refused; %252e%252e is the literal
    # name '%2e%2e', which does not exist below /root
    for query, status in (("path=%2e%2e%2fetc%2fshadow", 400), ("path=%252e%252e%252fetc%252fshadow", 400)):
        r = _raw(runc_env, "GET", sid, f"/files/content?{query}")
        assert r.status_code == status, (query, r.text)
        assert "SECRET" not in r.text
    r = _raw(runc_env, "GET", sid, "/files/content?path=%2Fetc%2Fshadow")
    assert r.status_code == 400 and "SECRET" not in r.text


def test_a_fifo_a_directory_and_a_huge_file_are_refused_without_hanging(runc_env: Env) -> None:
    c = runc_env.client
    sid = _sandbox(runc_env)
    # (a device node cannot be made inside a sandbox, the user namespace forbids mknod; the
    # same fstat check that refuses the FIFO refuses any file that is not a regular one)
    sh(runc_env, sid, "mkfifo /root/pipe && mkdir /root/dir && dd if=/dev/zero of=/root/big bs=1M count=3 2>/dev/null")
    with pytest.raises(errors.BadRequest, match="not a regular file"):
        c.file_read(sid, "pipe")
    with pytest.raises(errors.BadRequest, match="not a regular file"):
        c.file_write(sid, "pipe", "x", "*")
    with pytest.raises(errors.BadRequest, match=r"directory|not a regular file"):
        c.file_read(sid, "dir")
    with pytest.raises(errors.BadRequest, match="up to 1048576 bytes"):
        c.file_read(sid, "big")
    with pytest.raises(errors.BadRequest, match="up to 1048576 bytes"):
        c.file_write(sid, "new.txt", "x" * ((1 << 20) + 1), None)
    sh(runc_env, sid, "printf '\\377\\376' > /root/bin")
    with pytest.raises(errors.BadRequest, match="not UTF-8"):
        c.file_read(sid, "bin")
    # nothing was created or replaced by the refused writes
    assert sh(runc_env, sid, "ls /root; test -p /root/pipe && echo fifo").split() == [
        "big",
        "bin",
        "dir",
        "pipe",
        "fifo",
    ]


def test_a_link_swapped_in_while_the_editor_reads_and_writes_never_reaches_the_target(runc_env: Env) -> None:
    """The student swaps /root/race between a regular file and a link to /etc/shadow as fast
    as the sandbox can, while the editor reads and saves it: every answer is the file's own
    content or a refusal, and /etc/shadow never changes."""
    c = runc_env.client
    sid = _sandbox(runc_env)
    sh(runc_env, sid, "echo plain > /root/race")
    swapper = (
        "cd /root; while [ ! -e stop ]; do "
        "ln -sf /etc/shadow l.tmp; mv -f l.tmp race; echo plain > f.tmp; mv -f f.tmp race; done"
    )
    done = threading.Event()

    def swap() -> None:
        with Client(runc_env.socket, timeout=120) as own:
            own.exec(sid, ["sh", "-c", swapper], timeout=90)
        done.set()

    t = threading.Thread(target=swap)
    t.start()
    outcomes: set[str] = set()
    try:
        for i in range(60):
            try:
                got = c.file_read(sid, "race")
                assert "SECRET" not in got["content"]
                outcomes.add("read")
            except errors.Forbidden:
                outcomes.add("refused")
            except errors.BadRequest:
                outcomes.add("gone")  # between rm and rename in busybox's mv: the name is absent
            try:
                c.file_write(sid, "race", f"editor {i}\n", "*")
                outcomes.add("written")
            except (errors.Forbidden, errors.BadRequest, errors.Conflict):
                outcomes.add("refused-write")
    finally:
        sh(runc_env, sid, "touch /root/stop")
        t.join(120)
    assert done.is_set()
    assert sh(runc_env, sid, "cat /etc/shadow") == SECRET + "\n"
    assert "read" in outcomes and "refused" in outcomes, outcomes  # the race was really run


def test_another_sandboxs_token_cannot_reach_its_files(runc_env: Env) -> None:
    mine, victim = _sandbox(runc_env), _sandbox(runc_env)
    sh(runc_env, victim, "echo victim-canary > /root/notes.txt")
    token = runc_env.client.mint_token(mine, role="web", ttl=300)
    grader = runc_env.client.mint_token(victim, role="grader", ttl=300)
    with Client(runc_env.socket, token=token) as web, Client(runc_env.socket, token=grader) as g:
        with pytest.raises(errors.Forbidden):
            web.file_read(victim, "notes.txt")
        with pytest.raises(errors.Forbidden):
            web.file_write(victim, "notes.txt", "owned\n", "*")
        with pytest.raises(errors.Forbidden):
            web.files_list(victim)
        with pytest.raises(errors.Forbidden, match="does not allow 'files'"):
            g.file_read(victim, "notes.txt")
        assert web.file_read(mine, "/root/.profile")["path"] == ".profile"
    assert sh(runc_env, victim, "cat /root/notes.txt") == "victim-canary\n"
