"""Debian's docker CLI 20.10 as the oracle for images moved as files and containers' files:
``docker commit``, ``save``/``load``, ``import``/``export``, ``cp`` on a stopped container and
``rm --link`` (issue #15).

Written from the Docker Engine API reference (v1.41: ``POST /commit``, ``GET /images/get``,
``POST /images/load``, ``POST /images/create?fromSrc``, ``GET /containers/{id}/export``,
``/containers/{id}/archive``, ``DELETE /containers/{id}?link=1``), the docker-archive format
(``manifest.json``: Config, RepoTags, Layers; ``repositories``) and the OCI image layout spec.
Archives made by hand here are built from those documents, not from what our engine writes.
A real sandbox, a real ``Engine`` on its disk, the API on a unix socket and ``/usr/bin/docker``.
The tests run in file order and share the sandbox, as one session would.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.conftest_daemon import real_sandboxes_available, short_tmp
from tests.runtime.dockerapi.api_helpers import DOCKER, docker, served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox, engine_on

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TAG = 44


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    if not os.access(DOCKER, os.X_OK):
        pytest.skip("Debian's docker CLI is not installed (apt-get install docker.io)")
    with docker_sandbox(TAG, disk=768 * 2**20) as sb:
        yield sb


@pytest.fixture(scope="module")
def sock(sandbox: DockerSandbox) -> Iterator[Path]:
    d = short_tmp("dcompat-")
    with engine_on(sandbox) as eng, served(eng, d / "docker.sock"):
        yield d / "docker.sock"
    d.rmdir()


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    d = short_tmp("dcwork-")
    yield d
    for f in sorted(d.rglob("*"), reverse=True):
        f.unlink() if not f.is_dir() else f.rmdir()
    d.rmdir()


def ok(sock: Path, *args: str, **kw: object) -> str:
    r = docker(sock, *args, **kw)  # type: ignore[arg-type]
    assert r.returncode == 0, f"docker {' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def fails(sock: Path, *args: str, **kw: object) -> str:
    r = docker(sock, *args, **kw)  # type: ignore[arg-type]
    assert r.returncode != 0, f"docker {' '.join(args)} should have failed:\n{r.stdout}"
    return r.stderr


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _add(t: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), 0o644
    t.addfile(ti, io.BytesIO(data))


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- docker commit --------------------------------------------------------------------------------


def test_commit_keeps_the_changes_and_applies_change_author_and_message(sock: Path) -> None:
    ok(sock, "run", "-d", "--name", "web", "busybox:1.35", "sh", "-c", "echo hello > /greeting; exec sleep 600")
    ok(sock, "exec", "web", "sh", "-c", "test -f /greeting || sleep 1; test -f /greeting")
    out = ok(
        sock,
        "commit",
        "--change",
        "ENV COLOR=blue",
        "--change",
        'CMD ["cat", "/greeting"]',
        "--change",
        "EXPOSE 8080",
        "-a",
        "Ann Example <ann@example.org>",
        "-m",
        "add a greeting",
        "web",
        "snap:v1",
    )
    image_id = out.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert ok(sock, "run", "--rm", "snap:v1") == "hello\n"
    fmt = "{{.Author}}|{{.Comment}}|{{json .Config.Env}}|{{json .Config.ExposedPorts}}|{{.Id}}"
    author, comment, env, ports, iid = ok(sock, "image", "inspect", "snap:v1", "--format", fmt).strip().split("|")
    assert (author, comment, iid) == ("Ann Example <ann@example.org>", "add a greeting", image_id)
    assert "COLOR=blue" in json.loads(env)
    assert json.loads(ports) == {"8080/tcp": {}}
    history = ok(sock, "history", "--no-trunc", "--format", "{{.Comment}}", "snap:v1").splitlines()
    assert history[0] == "add a greeting"
    # dockerd pauses the container during the commit (default) and resumes it
    assert ok(sock, "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "web").strip() == "running false"
    assert ok(sock, "exec", "web", "cat", "/greeting") == "hello\n"


def test_commit_without_pause_and_of_an_unchanged_container(sock: Path) -> None:
    ok(sock, "exec", "web", "sh", "-c", "echo again > /second")
    ok(sock, "commit", "--pause=false", "web", "snap:v2")
    assert ok(sock, "run", "--rm", "snap:v2", "cat", "/second") == "again\n"
    ok(sock, "create", "--name", "untouched", "busybox:1.35", "true")
    ok(sock, "commit", "untouched", "same:v1")
    base = ok(sock, "image", "inspect", "-f", "{{json .RootFS.Layers}}", "busybox:1.35")
    assert ok(sock, "image", "inspect", "-f", "{{json .RootFS.Layers}}", "same:v1") == base
    ok(sock, "rm", "untouched")


def test_commit_refuses_what_dockerd_refuses(sock: Path) -> None:
    assert "run is not a valid change command" in fails(sock, "commit", "--change", "RUN echo no", "web", "bad:v1")
    assert "No such container" in fails(sock, "commit", "nosuchcontainer", "bad:v1")
    assert "bad:v1" not in ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}")


# -- docker save / docker load ------------------------------------------------------------------


def test_save_writes_a_docker_archive_and_load_restores_every_tag(sock: Path, work: Path) -> None:
    ok(sock, "tag", "snap:v1", "snap:alias")
    archive = work / "snaps.tar"
    ok(sock, "save", "-o", str(archive), "snap:v1", "snap:alias", "snap:v2")
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(t.extractfile("repositories"))  # type: ignore[arg-type]
        names = set(t.getnames())
    tags = sorted(tag for entry in manifest for tag in entry["RepoTags"] or [])
    assert tags == ["snap:alias", "snap:v1", "snap:v2"]
    assert set(repositories["snap"]) == {"v1", "v2", "alias"}
    for entry in manifest:
        assert entry["Config"] in names and all(layer in names for layer in entry["Layers"])
    ok(sock, "rmi", "snap:v1", "snap:alias", "snap:v2")
    out = ok(sock, "load", "-i", str(archive))
    assert sorted(line for line in out.splitlines() if line.startswith("Loaded image: ")) == [
        "Loaded image: snap:alias",
        "Loaded image: snap:v1",
        "Loaded image: snap:v2",
    ]
    assert ok(sock, "run", "--rm", "snap:v1") == "hello\n"
    assert ok(sock, "run", "--rm", "snap:v2", "cat", "/second") == "again\n"
    # the same bytes give the same image ids (content addressed)
    again = work / "again.tar"
    ok(sock, "save", "-o", str(again), "snap:v1")
    with tarfile.open(again) as t:
        assert json.load(t.extractfile("manifest.json"))[0]["Config"] in names  # type: ignore[arg-type]


def _handmade_layer() -> bytes:
    return _tar_bytes({"hello.txt": b"made by hand\n", "etc/motd": b"welcome\n"})


def _busybox_base(sock: Path, work: Path) -> tuple[dict[str, object], list[bytes]]:
    """busybox:1.35's config and layer tars, from a docker save archive."""
    path = work / "busybox.tar"
    ok(sock, "save", "-o", str(path), "busybox:1.35")
    with tarfile.open(path) as t:
        entry = json.load(t.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(t.extractfile(entry["Config"]))  # type: ignore[arg-type]
        layers = [t.extractfile(name).read() for name in entry["Layers"]]  # type: ignore[union-attr]
    return config, layers


def _config_on(base: dict[str, object], diff_ids: list[str]) -> bytes:
    config = json.loads(json.dumps(base))
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    config["history"] = [*config.get("history", []), {"created_by": "by hand"}]
    return json.dumps(config).encode()


def test_load_reads_a_hand_built_docker_archive_with_a_gzipped_layer(sock: Path, work: Path) -> None:
    base, base_layers = _busybox_base(sock, work)
    mine = _handmade_layer()
    diff_ids = [_sha(layer) for layer in base_layers] + [_sha(mine)]
    config = _config_on(base, diff_ids)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        paths = []
        for i, layer in enumerate(base_layers):
            _add(t, f"base{i}/layer.tar", layer)
            paths.append(f"base{i}/layer.tar")
        _add(t, "mine/layer.tar.gz", gzip.compress(mine))
        paths.append("mine/layer.tar.gz")
        _add(t, "config.json", config)
        manifest = [{"Config": "config.json", "RepoTags": ["handmade:1", "handmade:latest"], "Layers": paths}]
        _add(t, "manifest.json", json.dumps(manifest).encode())
    out = ok(sock, "load", stdin=buf.getvalue())
    assert "Loaded image: handmade:1" in out and "Loaded image: handmade:latest" in out
    assert ok(sock, "run", "--rm", "handmade:1", "cat", "/hello.txt", "/etc/motd") == "made by hand\nwelcome\n"
    # an image id is the sha256 of its config bytes
    assert ok(sock, "image", "inspect", "-f", "{{.Id}}", "handmade").strip() == _sha(config)


def test_load_reads_an_oci_image_layout(sock: Path, work: Path) -> None:
    base, base_layers = _busybox_base(sock, work)
    mine = _handmade_layer()
    blobs = [gzip.compress(layer) for layer in [*base_layers, mine]]
    config = _config_on(base, [_sha(layer) for layer in [*base_layers, mine]])
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _sha(b), "size": len(b)}
                for b in blobs
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _sha(manifest),
                "size": len(manifest),
                "annotations": {"io.containerd.image.name": "docker.io/library/ocimade:2"},
            }
        ],
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        _add(t, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add(t, "index.json", json.dumps(index).encode())
        for blob in [*blobs, config, manifest]:
            _add(t, "blobs/sha256/" + _sha(blob).split(":")[1], blob)
    path = work / "oci.tar"
    path.write_bytes(buf.getvalue())
    assert "Loaded image: ocimade:2" in ok(sock, "load", "-i", str(path))
    assert ok(sock, "run", "--rm", "ocimade:2", "cat", "/hello.txt") == "made by hand\n"


def test_load_refuses_a_layer_that_does_not_match_its_diff_id(sock: Path) -> None:
    layer = _handmade_layer()
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [_sha(b"x")]}}
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        _add(t, "l/layer.tar", layer)
        _add(t, "c.json", config.encode())
        _add(
            t,
            "manifest.json",
            json.dumps([{"Config": "c.json", "RepoTags": ["liar:1"], "Layers": ["l/layer.tar"]}]).encode(),
        )
    assert "does not match" in fails(sock, "load", stdin=buf.getvalue())
    assert "liar" not in ok(sock, "images", "--format", "{{.Repository}}")
    assert "manifest.json" in fails(sock, "load", stdin=_tar_bytes({"hello": b"not an image\n"}))


# -- docker import / docker export --------------------------------------------------------------


def test_export_then_import_with_change_and_message(sock: Path, work: Path) -> None:
    exported = work / "web.tar"
    ok(sock, "export", "-o", str(exported), "web")
    with tarfile.open(exported) as t:
        greeting = t.getmember("greeting")
        assert t.extractfile(greeting).read() == b"hello\n"  # type: ignore[union-attr]
        assert (greeting.uid, greeting.gid) == (0, 0)  # container uids, not the host's
        assert "bin/busybox" in t.getnames()
    out = ok(
        sock,
        "import",
        "--change",
        'CMD ["/bin/cat", "/greeting"]',
        "--change",
        "ENV ORIGIN=export",
        "-m",
        "from an export",
        "-",
        "imported:1",
        stdin=exported.read_bytes(),
    )
    assert out.strip().startswith("sha256:")
    assert ok(sock, "run", "--rm", "imported:1") == "hello\n"
    assert ok(sock, "image", "inspect", "-f", "{{.Comment}}", "imported:1").strip() == "from an export"
    assert "ORIGIN=export" in ok(sock, "image", "inspect", "-f", "{{json .Config.Env}}", "imported:1")
    assert ok(sock, "history", "--format", "{{.Comment}}", "imported:1").splitlines() == ["from an export"]
    # a compressed tarball from a file, no message: dockerd's default comment
    gz = work / "web.tar.gz"
    gz.write_bytes(gzip.compress(exported.read_bytes()))
    ok(sock, "import", str(gz), "imported:2")
    assert ok(sock, "run", "--rm", "imported:2", "/bin/cat", "/greeting") == "hello\n"


def test_import_refuses_a_url_and_an_invalid_change(sock: Path) -> None:
    err = fails(sock, "import", "http://example.org/rootfs.tar", "fromurl:1")
    assert "no internet" in err
    err = fails(sock, "import", "--change", "RUN true", "-", "badchange:1", stdin=_tar_bytes({"a": b"a"}))
    assert "run is not a valid change command" in err


# -- docker cp on a stopped container -------------------------------------------------------------


def test_cp_into_and_out_of_a_stopped_container(sock: Path, work: Path) -> None:
    ok(sock, "create", "--name", "box", "-v", "/data", "busybox:1.35", "cat", "/tmp/in.txt", "/data/vol.txt")
    src = work / "in.txt"
    src.write_text("copied in while stopped\n")
    ok(sock, "cp", str(src), "box:/tmp/in.txt")
    vol = work / "vol.txt"
    vol.write_text("into the volume\n")
    ok(sock, "cp", str(vol), "box:/data/vol.txt")
    out_dir = work / "out"
    out_dir.mkdir()
    ok(sock, "cp", "box:/tmp/in.txt", str(out_dir / "back.txt"))
    assert (out_dir / "back.txt").read_text() == "copied in while stopped\n"
    ok(sock, "start", "-a", "box")
    assert ok(sock, "logs", "box") == "copied in while stopped\ninto the volume\n"
    # and from the exited container
    ok(sock, "cp", "box:/etc/passwd", str(out_dir / "passwd"))
    assert (out_dir / "passwd").read_text().startswith("root:")
    err = fails(sock, "cp", "box:/no/such/file", str(out_dir / "x"))
    assert "No such container:path: box:/no/such/file" in err  # the CLI's words for the stat's 404


# -- docker rm --link -----------------------------------------------------------------------------


def test_rm_link_answers_as_dockerd(sock: Path) -> None:
    # dockerd registers "/parent/alias" only for legacy links (the default bridge's --link):
    # removing such a name that does not exist is a 404, and a container's own name is not a
    # link (test_cli_lifecycle.py removes a real one).
    assert "No such container: web/db" in fails(sock, "rm", "--link", "web/db")
    assert "cannot remove the default link name" in fails(sock, "rm", "--link", "web")
    assert ok(sock, "inspect", "-f", "{{.State.Running}}", "web").strip() == "true"
