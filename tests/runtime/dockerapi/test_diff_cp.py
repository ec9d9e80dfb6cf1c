"""``docker diff`` and ``docker cp`` with Debian's docker CLI 20.10 against a real engine.

A real sandbox (runc, tag 251), a real ``Engine`` and the API on a unix socket, as
test_cli.py drives them. ``docker cp`` runs tar inside the container (engine/archive.py): the
tests plant symlinks that would lead a host-side copier out of the container (``ln -s /
/escape``) and check that both directions stay inside it. The tests share the sandbox
and run in file order.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker as docker_sdk
import docker.errors
import pytest

from runtime import errors
from runtime.dockerapi.engine import Engine, archive
from runtime.images.store import ImageStore
from tests.runtime.conftest_daemon import short_tmp
from tests.runtime.dockerapi.api_helpers import DOCKER, PLATFORM_IMAGES, cli_sandbox, docker, served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    with cli_sandbox(251) as sb:
        yield sb


@pytest.fixture(scope="module")
def platform_images() -> ImageStore | None:
    """The platform's built image store when ``make`` has built debian:bookworm there (GNU
    tar's side of docker cp); None otherwise (the sandbox's own store has busybox only)."""
    store = ImageStore(PLATFORM_IMAGES)
    return store if all(store.exists(n) for n in ("busybox", "debian:bookworm")) else None


@pytest.fixture(scope="module")
def sock(sandbox: DockerSandbox, platform_images: ImageStore | None) -> Iterator[Path]:
    d = short_tmp("dcp-")
    eng = Engine(sandbox.ctx, platform_images or sandbox.mgr.images)  # type: ignore[arg-type]
    try:
        with served(eng, d / "docker.sock"):
            yield d / "docker.sock"
    finally:
        for c in eng.list(all=True):
            with contextlib.suppress(errors.RuntimeError):
                eng.remove(c["Id"], force=True, volumes=True)
        d.rmdir()


@pytest.fixture
def host_dir() -> Iterator[Path]:
    d = short_tmp("dcph-")
    yield d
    subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=True, timeout=60)


def ok(sock: Path, *args: str, stdin: bytes | None = None) -> str:
    r = docker(sock, *args, stdin=stdin)
    assert r.returncode == 0, f"docker {' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def cp_out_raw(sock: Path, src: str) -> bytes:
    """``docker cp CONTAINER:SRC -``: the tar the CLI writes to stdout."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CLI_HINTS": "false"}
    r = subprocess.run([DOCKER, "cp", src, "-"], capture_output=True, env=env, timeout=60, check=False)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def tar_names(data: bytes) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for ti in t:
            f = t.extractfile(ti) if ti.isfile() else None
            out[ti.name] = f.read() if f else None
    return out


def test_paths_are_made_absolute_the_way_docker_does() -> None:
    assert archive._abs("etc//hostname") == "/etc/hostname"
    assert archive._abs("/a/../b/") == "/b/"
    assert archive._abs("/srv/site/.") == "/srv/site/."
    assert archive._abs("/.") == archive._abs("//") == "/"


def test_modes_are_go_file_modes() -> None:
    d = tarfile.TarInfo("d")
    d.type, d.mode = tarfile.DIRTYPE, 0o1777
    link = tarfile.TarInfo("l")
    link.type, link.mode = tarfile.SYMTYPE, 0o777
    suid = tarfile.TarInfo("f")
    suid.mode = 0o4755
    assert archive.go_file_mode(d) == (1 << 31) | (1 << 20) | 0o777
    assert archive.go_file_mode(link) == (1 << 27) | 0o777
    assert archive.go_file_mode(suid) == (1 << 23) | 0o755


CHANGES = "touch /new; rm /etc/shells; echo extra >> /etc/passwd; mkdir -p /var/data; echo x > /var/data/f"
EXPECTED_DIFF = [
    "C /etc",
    "C /etc/passwd",
    "D /etc/shells",
    "A /new",
    "C /var",
    "A /var/data",
    "A /var/data/f",
]


def test_diff_lists_added_deleted_changed_and_their_parents(sock: Path) -> None:
    ok(sock, "run", "-d", "--name", "web", "-v", "/vol", "busybox:1.35", "sleep", "600")
    ok(sock, "exec", "web", "sh", "-c", CHANGES)
    lines = ok(sock, "diff", "web").splitlines()
    assert lines == EXPECTED_DIFF
    # the engine's own mount points and the volume are not the student's changes
    for hidden in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev", "/proc", "/sys", "/vol"):
        assert not any(line.split()[1] == hidden for line in lines)
    # the API's form, as the SDK gets it: Kind 0 = C, 1 = A, 2 = D
    client = docker_sdk.APIClient(base_url=f"unix://{sock}", timeout=60)
    try:
        assert client.diff("web")[:3] == [
            {"Path": "/etc", "Kind": 0},
            {"Path": "/etc/passwd", "Kind": 0},
            {"Path": "/etc/shells", "Kind": 2},
        ]
    finally:
        client.close()


def test_diff_of_the_stopped_container_is_the_same(sock: Path) -> None:
    ok(sock, "stop", "-t", "0", "web")
    assert ok(sock, "diff", "web").splitlines() == EXPECTED_DIFF


def test_cp_of_a_stopped_container_works_as_on_dockerd(sock: Path, host_dir: Path) -> None:
    try:
        ok(sock, "cp", "web:/etc/passwd", str(host_dir / "passwd"))  # a file the container changed
        assert "No such container:path: web:/etc/shells" in docker(sock, "cp", "web:/etc/shells", "-").stderr  # deleted
        (host_dir / "f").write_text("x")
        ok(sock, "cp", str(host_dir / "f"), "web:/tmp/f")
    finally:
        ok(sock, "start", "web")  # the later tests use it
    assert (host_dir / "passwd").read_text() == ok(sock, "exec", "web", "cat", "/etc/passwd")
    assert ok(sock, "exec", "web", "cat", "/tmp/f") == "x"
    ok(sock, "exec", "web", "rm", "/tmp/f")


def test_cp_out_a_file_and_a_directory(sock: Path, host_dir: Path) -> None:
    ok(
        sock,
        "exec",
        "web",
        "sh",
        "-c",
        "mkdir -p /srv/site/sub && echo home > /srv/site/index && echo s > /srv/site/sub/s",
    )
    ok(sock, "cp", "web:/etc/passwd", str(host_dir / "passwd"))
    assert (host_dir / "passwd").read_text().endswith("extra\n")
    ok(sock, "cp", "web:/srv/site", str(host_dir))
    assert (host_dir / "site" / "index").read_text() == "home\n"
    assert (host_dir / "site" / "sub" / "s").read_text() == "s\n"
    ok(sock, "cp", "web:/srv/site/.", str(host_dir / "contents"))
    assert sorted(os.listdir(host_dir / "contents")) == ["index", "sub"]
    ok(sock, "cp", "web:/srv/site/", str(host_dir / "slash"))
    assert (host_dir / "slash" / "sub" / "s").read_text() == "s\n"


def test_cp_out_to_stdout_is_a_tar(sock: Path) -> None:
    names = tar_names(cp_out_raw(sock, "web:/srv/site"))
    assert names["site/index"] == b"home\n"
    assert names["site/sub/s"] == b"s\n"
    hostname = tar_names(cp_out_raw(sock, "web:/etc/hostname"))
    assert list(hostname) == ["hostname"]
    assert hostname["hostname"] == ok(sock, "exec", "web", "cat", "/etc/hostname").encode()


def test_cp_in_a_file_a_directory_and_a_tar_on_stdin(sock: Path, host_dir: Path) -> None:
    (host_dir / "note.txt").write_text("from the host\n")
    (host_dir / "tree" / "deep").mkdir(parents=True)
    (host_dir / "tree" / "deep" / "f").write_text("deep file\n")
    ok(sock, "cp", str(host_dir / "note.txt"), "web:/tmp/")
    ok(sock, "cp", str(host_dir / "note.txt"), "web:/tmp/renamed.txt")
    ok(sock, "cp", str(host_dir / "tree"), "web:/srv/tree")
    assert ok(sock, "exec", "web", "cat", "/tmp/note.txt", "/tmp/renamed.txt", "/srv/tree/deep/f") == (
        "from the host\nfrom the host\ndeep file\n"
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"streamed\n"
        ti = tarfile.TarInfo("streamed.txt")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    ok(sock, "cp", "-", "web:/tmp", stdin=buf.getvalue())
    assert ok(sock, "exec", "web", "cat", "/tmp/streamed.txt") == "streamed\n"


def test_cp_of_a_large_file_both_ways_keeps_every_byte(sock: Path, host_dir: Path) -> None:
    ok(sock, "exec", "web", "sh", "-c", "head -c 6000000 /dev/urandom > /tmp/big")
    ok(sock, "cp", "web:/tmp/big", str(host_dir / "big"))
    digest = ok(sock, "exec", "web", "md5sum", "/tmp/big").split()[0]
    got = subprocess.run(["md5sum", str(host_dir / "big")], capture_output=True, text=True, check=True, timeout=60)
    assert got.stdout.split()[0] == digest
    ok(sock, "cp", str(host_dir / "big"), "web:/tmp/big.back")
    assert ok(sock, "exec", "web", "md5sum", "/tmp/big.back").split()[0] == digest
    ok(sock, "exec", "web", "rm", "/tmp/big", "/tmp/big.back")


def test_cp_with_gnu_tar_in_a_debian_container(sock: Path, host_dir: Path, platform_images: ImageStore | None) -> None:
    if platform_images is None:
        pytest.skip("debian:bookworm is not built in the platform's image store (run make)")
    ok(sock, "run", "-d", "--name", "deb", "debian:bookworm", "sleep", "600")
    try:
        ok(sock, "exec", "deb", "sh", "-c", "mkdir -p /data/d && echo one > /data/d/1 && ln -s d/1 /data/link")
        ok(sock, "cp", "web:/srv/site", str(host_dir / "from-web"))
        ok(sock, "cp", str(host_dir / "from-web"), "deb:/data/")
        assert ok(sock, "exec", "deb", "cat", "/data/from-web/sub/s") == "s\n"
        ok(sock, "cp", "deb:/data/", str(host_dir / "data"))
        assert (host_dir / "data" / "d" / "1").read_text() == "one\n"
        assert os.readlink(host_dir / "data" / "link") == "d/1"
        ok(sock, "cp", "-L", "deb:/data/link", str(host_dir / "followed"))  # -L: the link's target
        assert (host_dir / "followed").read_text() == "one\n"
        # rm -r then mkdir: overlayfs makes the new dir opaque; the image's files in it are gone
        image_files = ok(sock, "exec", "deb", "ls", "-A", "/etc/apt/apt.conf.d").split()
        assert image_files
        conf = "rm -r /etc/apt/apt.conf.d && mkdir /etc/apt/apt.conf.d && touch /etc/apt/apt.conf.d/mine"
        ok(sock, "exec", "deb", "sh", "-c", conf)
        assert ok(sock, "diff", "deb").splitlines() == [
            "A /data",
            "A /data/d",
            "A /data/d/1",
            "A /data/from-web",
            "A /data/from-web/index",
            "A /data/from-web/sub",
            "A /data/from-web/sub/s",
            "A /data/link",
            "C /etc",
            "C /etc/apt",
            "C /etc/apt/apt.conf.d",
            *sorted(f"D /etc/apt/apt.conf.d/{n}" for n in image_files if n != "mine"),
            "A /etc/apt/apt.conf.d/mine",
        ]
    finally:
        ok(sock, "rm", "-f", "deb")


def test_cp_refuses_to_replace_a_directory_with_a_file(sock: Path, host_dir: Path) -> None:
    ok(sock, "exec", "web", "mkdir", "-p", "/tmp/clash/note.txt")
    (host_dir / "note.txt").write_text("x\n")
    r = docker(sock, "cp", str(host_dir / "note.txt"), "web:/tmp/clash")
    assert r.returncode == 1
    assert 'cannot overwrite directory "/tmp/clash/note.txt" with non-directory "note.txt"' in r.stderr


def test_missing_paths_get_dockers_404(sock: Path, host_dir: Path) -> None:
    # the CLI turns the 404 of its stat into its own wording
    r = docker(sock, "cp", "web:/no/such/file", str(host_dir))
    assert (r.returncode, r.stderr) == (1, "Error: No such container:path: web:/no/such/file\n")
    # the API's message is Docker's, as the SDK shows it
    client = docker_sdk.APIClient(base_url=f"unix://{sock}", timeout=60)
    try:
        with pytest.raises(docker_sdk.errors.NotFound, match="Could not find the file /no/such/file in container web"):
            client.get_archive("web", "/no/such/file")
        with pytest.raises(docker_sdk.errors.NotFound, match="Could not find the file /no/dir in container web"):
            client.put_archive("web", "/no/dir", b"")
        stream, stat = client.get_archive("web", "/etc/passwd")
        assert tar_names(b"".join(stream))["passwd"] == ok(sock, "exec", "web", "cat", "/etc/passwd").encode()
        assert (stat["name"], stat["mode"], stat["linkTarget"]) == ("passwd", 0o644, "")
        assert client.get_archive("web", "/srv/site")[1]["mode"] == (1 << 31) | 0o755  # Go's os.ModeDir
        with pytest.raises(docker_sdk.errors.APIError, match="extraction point is not a directory"):
            client.put_archive("web", "/etc/passwd", b"")
    finally:
        client.close()


def test_sdk_put_archive_takes_a_gzipped_tar(sock: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = b"zipped\n"
        ti = tarfile.TarInfo("dir/zipped.txt")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    client = docker_sdk.APIClient(base_url=f"unix://{sock}", timeout=60)
    try:
        assert client.put_archive("web", "/tmp", buf.getvalue()) is True
    finally:
        client.close()
    assert ok(sock, "exec", "web", "cat", "/tmp/dir/zipped.txt") == "zipped\n"


def test_planted_symlinks_never_reach_the_host(sock: Path, sandbox: DockerSandbox, host_dir: Path) -> None:
    ok(
        sock,
        "exec",
        "web",
        "sh",
        "-c",
        "echo container-name > /etc/hostname; ln -s / /escape; ln -s /etc/shadow /shadow",
    )
    # out: /escape/etc/hostname is the container's file, not the host's
    ok(sock, "cp", "web:/escape/etc/hostname", str(host_dir / "h"))
    assert (host_dir / "h").read_text() == "container-name\n"
    assert (host_dir / "h").read_text() != Path("/etc/hostname").read_text()
    # a symlink is copied as a symlink (its target as written), never followed on the host
    ok(sock, "cp", "web:/shadow", str(host_dir / "s"))
    assert os.readlink(host_dir / "s") == "/etc/shadow"
    # in: /escape/tmp is the container's /tmp
    marker = "kubelab-cp-escape-check.txt"
    (host_dir / marker).write_text("stays inside\n")
    ok(sock, "cp", str(host_dir / marker), "web:/escape/tmp/")
    assert ok(sock, "exec", "web", "cat", f"/tmp/{marker}") == "stays inside\n"
    assert not Path("/tmp", marker).exists()
    # the archive's own names cannot climb out either: tar runs in the container's root
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"climb\n"
        ti = tarfile.TarInfo(f"../../../../../../tmp/{marker}.2")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    docker(sock, "cp", "-", "web:/tmp", stdin=buf.getvalue())
    assert not Path("/tmp", f"{marker}.2").exists()


def test_an_image_without_tar_gets_a_clear_error(sock: Path, host_dir: Path) -> None:
    (host_dir / "Dockerfile").write_text("FROM busybox:1.35\nRUN rm /bin/tar\n")
    ok(sock, "build", "-t", "notar", str(host_dir))
    ok(sock, "run", "-d", "--name", "notar", "notar", "sleep", "600")
    r = docker(sock, "cp", "notar:/etc/passwd", str(host_dir / "p"))
    assert r.returncode == 1
    assert "this container's image has no tar" in r.stderr
    ok(sock, "rm", "-f", "notar", "web")


def test_export_of_a_created_container_is_its_image_filesystem(sock: Path, host_dir: Path) -> None:
    ok(sock, "create", "--name", "exp", "busybox:1.35", "true")
    ok(sock, "export", "exp", "-o", str(host_dir / "exp.tar"))
    with tarfile.open(host_dir / "exp.tar") as t:
        names = t.getnames()
    assert "bin/busybox" in names and "etc/passwd" in names
    ok(sock, "rm", "exp")
