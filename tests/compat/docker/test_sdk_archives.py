"""The ``docker`` Python SDK (pinned) as the oracle for commit, save/load, import/export,
archives of a stopped container, ``/distribution`` and link removal (issue #15, part 2).

Written from the Engine API reference v1.41 (``POST /commit`` 201 ``{"Id"}``; ``POST
/images/load`` streams ``{"stream": "Loaded image: ..."}``; ``POST /images/create?fromSrc=-``;
``GET /containers/{id}/export``; ``GET/PUT /containers/{id}/archive``; ``GET
/distribution/{name}/json``: ``{"Descriptor": {mediaType, digest, size}, "Platforms"}``;
``DELETE /containers/{id}?link=1``) and the SDK's documentation of the calls used.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from runtime.dockerapi.engine import Engine
from tests.runtime.conftest_daemon import real_sandboxes_available, short_tmp
from tests.runtime.dockerapi.api_helpers import served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox, engine_on

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TAG = 46


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with docker_sandbox(TAG, disk=768 * 2**20) as sb:
        yield sb


@pytest.fixture(scope="module")
def engine(sandbox: DockerSandbox) -> Iterator[Engine]:
    with engine_on(sandbox) as eng:
        yield eng


@pytest.fixture(scope="module")
def client(engine: Engine) -> Iterator[docker.DockerClient]:
    d = short_tmp("dsdkarc-")
    with served(engine, d / "docker.sock"):
        c = docker.DockerClient(base_url=f"unix://{d / 'docker.sock'}", timeout=120)
        yield c
        c.close()
    d.rmdir()


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _members(chunks: Iterator[bytes]) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as t:
        return {m.name: (t.extractfile(m).read() if m.isreg() else b"") for m in t}  # type: ignore[union-attr]


def test_commit_returns_the_image_with_config_author_and_message(client: docker.DockerClient) -> None:
    web = client.containers.run(
        "busybox:1.35", ["sh", "-c", "echo sdk > /made; exec sleep 600"], detach=True, name="web"
    )
    web.exec_run(["sh", "-c", "while ! test -f /made; do sleep 0.1; done"])
    image = web.commit(
        repository="sdksnap",
        tag="v1",
        message="from the sdk",
        author="SDK <sdk@example.org>",
        changes=["ENV STAGE=committed", "WORKDIR /srv"],
        conf={"Labels": {"course": "kubelab"}, "Cmd": ["cat", "/made"]},
    )
    assert image.tags == ["sdksnap:v1"]
    attrs = image.attrs
    assert (attrs["Comment"], attrs["Author"], attrs["Container"]) == ("from the sdk", "SDK <sdk@example.org>", web.id)
    assert attrs["Config"]["Labels"] == {"course": "kubelab"}
    assert attrs["Config"]["WorkingDir"] == "/srv"
    assert "STAGE=committed" in attrs["Config"]["Env"]
    assert client.containers.run("sdksnap:v1", remove=True) == b"sdk\n"
    web.reload()
    assert web.status == "running" and web.attrs["State"]["Paused"] is False


def test_a_container_that_exits_as_commit_pauses_it_is_committed_unpaused(
    engine: Engine, client: docker.DockerClient
) -> None:
    """docker-py's own CommitTest commits a container running ``touch``: it may exit between
    the engine's look at it and the pause. dockerd commits a stopped container without
    pausing it; so do we, rather than answer 500 "could not pause"."""
    done = client.containers.run("busybox:1.35", ["sh", "-c", "echo bye > /left"], detach=True)
    assert done.wait(timeout=60)["StatusCode"] == 0
    c = engine._get(done.id)  # the race's moment, held still: the exit not yet seen
    c.status = "running"
    try:
        done.commit(repository="leftover", tag="v1")
    finally:
        c.status = "exited"
    assert client.containers.run("leftover:v1", ["cat", "/left"], remove=True) == b"bye\n"
    client.images.remove("leftover:v1")


def test_save_then_load_gives_the_same_image(client: docker.DockerClient) -> None:
    image = client.images.get("sdksnap:v1")
    data = b"".join(image.save(named=True))
    client.images.remove("sdksnap:v1")
    loaded = client.images.load(data)
    assert [img.id for img in loaded] == [image.id]
    assert client.images.get("sdksnap:v1").id == image.id
    # quiet=0: a progress message per layer it had to unpack, then the same result line
    client.images.remove("sdksnap:v1")
    messages = list(client.api.load_image(data, quiet=False))
    assert [m["stream"] for m in messages if "stream" in m] == ["Loaded image: sdksnap:v1\n"]
    assert [m["status"] for m in messages if "status" in m] == ["Loading layer"]  # busybox's are there
    # a refused archive: dockerd's in-stream error, which the SDK raises as ImageLoadError
    with pytest.raises(docker.errors.ImageLoadError, match=r"manifest\.json"):
        client.images.load(_tar({"not-an-image": b"x"}))


def test_import_from_data_with_changes(client: docker.DockerClient) -> None:
    web = client.containers.get("web")
    rootfs = b"".join(web.export())
    members = _members(iter([rootfs]))
    assert members["made"] == b"sdk\n"
    client.api.import_image_from_data(rootfs, repository="sdkimp", tag="1", changes=['CMD ["/bin/cat", "/made"]'])
    assert client.containers.run("sdkimp:1", remove=True) == b"sdk\n"


def test_archives_of_a_stopped_container(client: docker.DockerClient) -> None:
    box = client.containers.create("busybox:1.35", ["cat", "/tmp/note.txt"], name="sdkbox")
    assert box.put_archive("/tmp", _tar({"note.txt": b"put while stopped\n"})) is True
    chunks, stat = box.get_archive("/tmp/note.txt")
    assert stat["name"] == "note.txt" and stat["size"] == len(b"put while stopped\n")
    assert _members(chunks)["note.txt"] == b"put while stopped\n"
    box.start()
    assert box.wait()["StatusCode"] == 0
    assert box.logs() == b"put while stopped\n"
    with pytest.raises(docker.errors.NotFound):
        box.get_archive("/nowhere")
    box.remove()


def test_distribution_answers_for_catalog_images_only(client: docker.DockerClient) -> None:
    data = client.images.get_registry_data("busybox:1.35")
    assert data.id.startswith("sha256:") and len(data.id) == 71
    assert data.has_platform("linux/amd64")
    descriptor = data.attrs["Descriptor"]
    assert descriptor["mediaType"].startswith("application/vnd.") and descriptor["size"] > 0
    with pytest.raises(docker.errors.NotFound):  # a tag the catalog does not have
        client.images.get_registry_data("busybox:0.0.1")
    with pytest.raises(docker.errors.APIError) as exc:  # a repository outside it
        client.images.get_registry_data("someone/private-app:1")
    assert exc.value.status_code == 401 and "no internet" in str(exc.value)


def test_remove_link_answers_as_dockerd(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.NotFound):
        client.api.remove_container("web/db", link=True)
    with pytest.raises(docker.errors.APIError, match="default link name"):
        client.api.remove_container("web", link=True)
    assert client.containers.get("web").status == "running"
    client.containers.get("web").remove(force=True)
