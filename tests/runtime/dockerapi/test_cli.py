"""Debian's docker CLI 20.10 against the API, through a student's realistic session.

A real sandbox (runc), a real ``Engine`` on its disk, the API served on a unix socket
(``api_helpers.served``, as runtimed serves it) and ``/usr/bin/docker`` with
``DOCKER_BUILDKIT=0``: build a multi-stage web app, rebuild from the cache, run it with a
published port and fetch the page from inside the sandbox's network namespace, then
exec, logs, inspect, history, ps, stop, rm, rmi, images, system df, volumes, the
interactive paths (stdin half-close, ``-it`` under a real PTY) and the refusals. The tests
run in file order and share the sandbox, as one session would.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.client import Client
from runtime.images.store import ImageStore
from tests.runtime.conftest_daemon import private_daemon, real_sandboxes_available, short_tmp
from tests.runtime.dockerapi.api_helpers import DOCKER, PLATFORM_IMAGES, cli_sandbox, docker, docker_env, served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, engine_on

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

DOCKERFILE = """\
FROM busybox:1.35 AS page
ARG GREETING=hello
RUN mkdir -p /out && echo "<h1>$GREETING from a build stage</h1>" > /out/index.html

FROM busybox:1.35
COPY --from=page /out /www
EXPOSE 80
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    with cli_sandbox(48) as sb:
        yield sb


@pytest.fixture(scope="module")
def sock(sandbox: DockerSandbox) -> Iterator[Path]:
    d = short_tmp("dapi-")
    with engine_on(sandbox) as eng, served(eng, d / "docker.sock"):
        yield d / "docker.sock"
    d.rmdir()


@pytest.fixture(scope="module")
def app_dir() -> Iterator[Path]:
    d = short_tmp("dapp-")
    (d / "Dockerfile").write_text(DOCKERFILE)
    (d / ".dockerignore").write_text("secret.txt\n")
    (d / "secret.txt").write_text("not for the image\n")
    yield d
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


def ok(sock: Path, *args: str, **kw: object) -> str:
    r = docker(sock, *args, **kw)  # type: ignore[arg-type]
    assert r.returncode == 0, f"docker {' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_version_negotiates_api_141(sock: Path) -> None:
    out = ok(sock, "version", "--format", "{{.Server.APIVersion}} {{.Server.Version}}")
    assert out.split()[0] == "1.41"
    assert "kubelab" in out


def test_build_multi_stage_then_rebuild_hits_the_cache(sock: Path, app_dir: Path) -> None:
    out = ok(sock, "build", "-t", "web:v1", str(app_dir))
    assert "Step 1/7 : FROM busybox:1.35 AS page" in out
    assert "Successfully tagged web:v1" in out
    again = ok(sock, "build", "-t", "web:v1", str(app_dir))
    assert "Using cache" in again
    assert again.strip().splitlines()[-2].split()[-1] == out.strip().splitlines()[-2].split()[-1]  # same id


def test_a_failing_build_step_reports_the_error(sock: Path, app_dir: Path) -> None:
    bad = app_dir / "Dockerfile.bad"
    bad.write_text("FROM busybox:1.35\nRUN echo about to fail && exit 3\n")
    try:
        r = docker(sock, "build", "-f", str(bad), str(app_dir))
    finally:
        bad.unlink()
    assert r.returncode != 0
    assert "about to fail" in r.stdout
    assert "returned a non-zero code: 3" in r.stderr


def test_run_prints_output_and_returns_the_exit_code(sock: Path) -> None:
    r = docker(sock, "run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n")
    assert docker(sock, "run", "busybox", "false").returncode == 1
    r = docker(sock, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")


def test_run_with_stdin_ends_when_stdin_ends(sock: Path) -> None:
    data = b"".join(b"line %d\n" % i for i in range(50_000))
    r = docker(sock, "run", "-i", "--rm", "busybox", "wc", "-l", stdin=data)
    assert (r.returncode, r.stdout.strip()) == (0, "50000")


def test_run_detached_with_a_published_port_serves_the_page(sock: Path, sandbox: DockerSandbox) -> None:
    cid = ok(sock, "run", "-d", "-p", "8080:80", "--name", "web", "web:v1").strip()
    assert len(cid) == 64
    assert ok(sock, "port", "web").strip() == "80/tcp -> 0.0.0.0:8080"
    page = ""
    for _ in range(50):  # httpd binds a moment after the container starts
        code, page, _err = sandbox.sh("wget -qO- http://127.0.0.1:8080/")
        if code == 0:
            break
        time.sleep(0.1)
    assert page == "<h1>hello from a build stage</h1>\n"


def test_exec_and_exec_with_stdin(sock: Path) -> None:
    assert ok(sock, "exec", "web", "cat", "/www/index.html") == "<h1>hello from a build stage</h1>\n"
    assert ok(sock, "exec", "-i", "web", "cat", stdin=b"hi\n") == "hi\n"
    assert docker(sock, "exec", "web", "sh", "-c", "exit 5").returncode == 5
    assert docker(sock, "exec", "web", "test", "-e", "/secret.txt").returncode == 1


def test_logs_and_logs_follow(sock: Path) -> None:
    ok(sock, "run", "-d", "--name", "ticker", "busybox", "sh", "-c", "for i in 1 2 3; do echo tick $i; done; sleep 600")
    for _ in range(50):
        if ok(sock, "logs", "ticker") == "tick 1\ntick 2\ntick 3\n":
            break
        time.sleep(0.1)
    assert ok(sock, "logs", "ticker") == "tick 1\ntick 2\ntick 3\n"
    # -f keeps the stream open: the CLI is still waiting when we stop it
    proc = subprocess.Popen(
        [DOCKER, "logs", "-f", "ticker"], stdout=subprocess.PIPE, env=docker_env(sock), stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        got = b""
        while got.count(b"\n") < 3:
            got += os.read(proc.stdout.fileno(), 100)
        assert got == b"tick 1\ntick 2\ntick 3\n"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(10)
    ok(sock, "rm", "-f", "ticker")


def test_logs_tail_counts_lines(sock: Path) -> None:
    ok(sock, "run", "--name", "lines", "busybox", "sh", "-c", "printf 'a\\nb\\nc\\n'")
    try:
        assert ok(sock, "logs", "--tail", "1", "lines") == "c\n"
    finally:
        ok(sock, "rm", "lines")


def test_inspect_history_ps(sock: Path) -> None:
    assert ok(sock, "inspect", "-f", "{{.State.Status}} {{.Config.Image}}", "web").strip() == "running web:v1"
    assert ok(sock, "image", "inspect", "-f", "{{.Config.Cmd}}", "web:v1").strip() == "[httpd -f -p 80 -h /www]"
    history = ok(sock, "history", "web:v1")
    assert "EXPOSE 80" in history and "COPY dir:" in history
    ps = ok(sock, "ps")
    line = next(line for line in ps.splitlines() if line.endswith(" web"))
    assert "Up " in line and "0.0.0.0:8080->80/tcp" in line and "web:v1" in line
    assert ok(sock, "ps", "-a", "--filter", "status=exited", "--format", "{{.Status}}").startswith("Exited (1)")


def test_stop_rm_rmi_images(sock: Path) -> None:
    assert ok(sock, "stop", "-t", "1", "web").strip() == "web"
    assert ok(sock, "ps", "-a", "--filter", "name=web", "--format", "{{.State}}").strip() == "exited"
    r = docker(sock, "rmi", "web:v1")
    assert r.returncode == 1 and "container" in r.stderr  # still used by the stopped container
    assert ok(sock, "rm", "web").strip() == "web"
    out = ok(sock, "rmi", "web:v1")
    assert "Untagged: web:v1" in out and "Deleted: sha256:" in out
    images = ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert "busybox:1.35" in images and "web:v1" not in images


def test_system_df_and_volumes(sock: Path) -> None:
    df = ok(sock, "system", "df")
    assert df.splitlines()[0].split()[:2] == ["TYPE", "TOTAL"]
    assert "Images" in df and "Local Volumes" in df
    assert ok(sock, "volume", "create", "data").strip() == "data"
    assert "data" in ok(sock, "volume", "ls", "-q").split()
    ok(sock, "run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert ok(sock, "run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f") == "kept\n"
    assert ok(sock, "volume", "rm", "data").strip() == "data"
    assert "data" not in ok(sock, "volume", "ls", "-q").split()


def test_network_ls_and_events(sock: Path) -> None:
    nets = ok(sock, "network", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert sorted(nets.splitlines()) == ["bridge bridge", "host host", "none null"]
    assert "172.17.0.0/16" in ok(sock, "network", "inspect", "bridge")
    r = docker(sock, "network", "create", "--driver", "macvlan", "mine")
    assert r.returncode == 1 and 'network driver "macvlan" is not available in this lab' in r.stderr
    # ``docker events`` waits for events; ``--until`` in the past makes it end at once
    ok(sock, "events", "--since", "1", "--until", "2")


def test_pull_of_the_catalog_and_refusal_of_the_rest(sock: Path) -> None:
    assert "Status: Image is up to date for busybox:1.35" in ok(sock, "pull", "busybox:1.35")
    r = docker(sock, "pull", "alpine")
    assert r.returncode == 1
    assert "Error response from daemon: pull access denied for alpine" in r.stderr
    assert "this lab has no internet; available images: busybox:1.35" in r.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--privileged"], "--privileged is not available in this lab"),
        (["--cap-add", "NET_ADMIN"], "--cap-add NET_ADMIN is not available in this lab"),
        (["-v", "/etc:/x"], "bind mounts of /etc are not available in this lab"),
        (["--pid", "host"], "--pid=host is not available in this lab"),
        (["--network", "host"], "--network=host is not available in this lab"),
        (["--device", "/dev/null"], "--device/--gpus are not available in this lab"),
        (["--security-opt", "seccomp=unconfined"], "--security-opt seccomp=unconfined is not available in this lab"),
    ],
)
def test_refusals_say_why(sock: Path, flags: list[str], message: str) -> None:
    r = docker(sock, "run", "--rm", *flags, "busybox", "true")
    assert r.returncode == 125
    assert f"docker: Error response from daemon: {message}" in r.stderr


class Pty:
    """The docker CLI on a real pseudo-terminal, as a student's terminal runs it."""

    def __init__(self, sock: Path, args: list[str], rows: int = 30, cols: int = 100) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: become the CLI
            os.execve(DOCKER, [DOCKER, *args], docker_env(sock))
        self.resize(rows, cols)
        self.buf = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def expect(self, token: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while token not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"{token!r} not seen; got {self.buf[-500:]!r}"
            if select.select([self.fd], [], [], min(left, 0.5))[0]:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                assert data, f"EOF before {token!r}; got {self.buf[-500:]!r}"
                self.buf += data
        seen, _, self.buf = self.buf.partition(token)
        return seen + token

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self) -> int:
        _pid, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def tty_size(term: Pty, want: bytes = b"30 100") -> bytes:
    """``stty size`` in the container, asked again until ``want`` (a resize is applied
    asynchronously: the CLI posts it when it sees the change) or 50 tries."""
    line = b""
    for _ in range(50):
        # The answer is read from the command's output, never from the echo of what was typed:
        # the shell's line editor may redraw the line in the middle of that echo (busybox ash
        # asks the terminal for the cursor position, ESC [6n, and redraws when no reply comes),
        # so "stty size\r\n" need not appear in one piece. "<rows cols>" is only ever output.
        term.send(b'echo "<$(stty size)>"\n')
        found = re.findall(rb"<(\d+ \d+)>\r\n", term.expect(b">\r\n"))
        line = found[-1] if found else b""
        if line == want:
            break
        time.sleep(0.1)
    return line


def test_run_it_under_a_pty_types_resizes_and_exits(sock: Path) -> None:
    term = Pty(sock, ["run", "-it", "--rm", "busybox", "sh"])
    term.expect(b"# ")
    assert tty_size(term) == b"30 100"  # the CLI sizes the container's tty after the start
    term.resize(40, 120)  # the kernel sends the CLI SIGWINCH; it resizes the container's tty
    assert tty_size(term, b"40 120") == b"40 120"
    term.send(b"echo $((6*7))\n")
    term.expect(b"42\r\n")
    term.send(b"exit 4\n")
    assert term.wait() == 4


def test_exec_it_and_detach_keys(sock: Path) -> None:
    ok(sock, "run", "-dit", "--name", "shell", "busybox", "sh")
    term = Pty(sock, ["exec", "-it", "shell", "sh"])
    term.send(b"echo in-$((1+1))\n")
    term.expect(b"in-2")
    term.send(b"exit\n")
    assert term.wait() == 0
    attach = Pty(sock, ["attach", "shell"])
    attach.send(b"echo attached-$((2+2))\n")
    attach.expect(b"attached-4")
    attach.send(b"\x10\x11")  # ctrl-p ctrl-q: detach, the container goes on
    attach.expect(b"read escape sequence")
    attach.wait()
    assert ok(sock, "inspect", "-f", "{{.State.Running}}", "shell").strip() == "true"
    ok(sock, "rm", "-f", "shell")


# -- the real path: runtimed serves the engine, the CLI runs inside the sandbox --------------------

IMAGES = PLATFORM_IMAGES
# this suite's own host resources (the manager tag 47 of test_api/test_sdk, which run before or after)
DAEMON_RESOURCES = [
    "--subnet",
    "10.231.47.0/24",
    "--bridge",
    "kltest47",
    "--cgroup-parent",
    "kubelab-test-47",
    "--uid-start",
    str(2_000_000_000 + 47 * 65536 * 32),
]


@pytest.fixture(scope="module")
def inside() -> Iterator[tuple[Client, str]]:
    """A sandbox on lab-base (Debian's docker CLI) with the docker service, on a real runtimed."""
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    try:
        ImageStore(IMAGES).get("lab-base")
    except Exception:
        pytest.skip(f"the lab-base image is not built in {IMAGES} (make images)")
    with private_daemon("rtd-", DAEMON_RESOURCES, IMAGES) as d, Client(d.socket, timeout=120) as c:
        box = c.create_sandbox({"image": "lab-base", "services": ["docker"], "memory": 512 * 2**20})
        yield c, str(box["id"])


def in_box(inside: tuple[Client, str], script: str, stdin: bytes | None = None) -> tuple[int, str]:
    client, sid = inside
    r = client.exec(sid, ["/bin/bash", "-c", script], timeout=180, stdin=stdin)
    assert not r.timed_out, f"{script!r} timed out: {r.stdout_text}{r.stderr_text}"
    return r.exit_code or 0, r.stdout_text + r.stderr_text


def test_session_inside_the_sandbox(inside: tuple[Client, str]) -> None:
    script = f"""set -e
mkdir -p /root/app && cd /root/app
cat > Dockerfile <<'EOF_DOCKERFILE'
{DOCKERFILE}EOF_DOCKERFILE
docker build -t web:v1 . >/dev/null
docker build -t web:v1 . | grep -c 'Using cache'
docker run -d -p 8080:80 --name web web:v1 >/dev/null
fetch() {{ exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && sed '1,/^\r$/d' <&3; }}
for i in $(seq 50); do fetch 2>/dev/null && break; sleep 0.1; done
docker exec web cat /www/index.html
echo piped | docker exec -i web cat
docker run --rm busybox:1.35 echo hi
docker port web
"""
    code, out = in_box(inside, script)
    assert code == 0, out
    assert out.splitlines() == [
        "5",
        "<h1>hello from a build stage</h1>",
        "<h1>hello from a build stage</h1>",
        "piped",
        "hi",
        "80/tcp -> 0.0.0.0:8080",
    ]
    code, out = in_box(inside, "docker run busybox:1.35 false")
    assert code == 1
    code, out = in_box(inside, "docker run --privileged busybox:1.35 true")
    assert code == 125 and "--privileged is not available in this lab" in out
