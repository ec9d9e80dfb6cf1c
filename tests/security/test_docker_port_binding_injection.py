"""A published port's ``HostIp`` and ``HostPort`` cannot write the engine's nftables script.

The engine's published ports are DNAT rules that runtimed writes as an nft script and runs
with ``nsenter --net=... nft -f -``: root, in the host's mount namespace. The raw Engine API
(the student holds ``/var/run/docker.sock``; the CLI's own parsing is no wall) put the
binding's ``HostIp`` into that script as text: ``include "/host/file"`` made nft read any
host file as root, and the start's error carried nft's message, the file's first line in it,
back to the student. ``HostPort`` ranges were expanded before any bound was checked (a range
to 2**31 is a list of two billion numbers in runtimed). dockerd refuses both at create
(``invalid IP address``, ``invalid port specification``), so the engine does too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from runtime.dockerapi.engine import Engine
from tests.runtime.conftest_daemon import real_sandboxes_available, short_tmp
from tests.runtime.dockerapi.api_helpers import served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TAG = 57


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with docker_sandbox(TAG) as sb:
        yield sb


@pytest.fixture(scope="module")
def client(sandbox: DockerSandbox) -> Iterator[docker.DockerClient]:
    eng = Engine(sandbox.ctx, sandbox.mgr.images)  # type: ignore[arg-type]
    d = short_tmp("dsepb-")
    try:
        with served(eng, d / "docker.sock"):
            c = docker.DockerClient(base_url=f"unix://{d / 'docker.sock'}", timeout=120)
            yield c
            for ct in c.containers.list(all=True):
                ct.remove(force=True)
            c.close()
    finally:
        eng.close(remove=False)
        d.rmdir()


@pytest.fixture
def secret(tmp_path: Path) -> Iterator[Path]:
    p = tmp_path / "host-secret"
    p.write_text("HOSTSECRET-first-line\n")
    os.chmod(p, 0o600)
    yield p


def create(client: docker.DockerClient, bindings: dict[str, list[dict[str, str]]]) -> dict[str, object]:
    """POST /containers/create with the bindings as sent (past the CLI's and SDK's parsing)."""
    body = {
        "Image": "busybox:1.35",
        "Cmd": ["sleep", "300"],
        "ExposedPorts": {k: {} for k in bindings},
        "HostConfig": {"PortBindings": bindings},
    }
    resp = client.api._post_json(client.api._url("/containers/create"), data=body)
    client.api._raise_for_status(resp)
    return dict(resp.json())


def test_host_ip_cannot_include_a_host_file(client: docker.DockerClient, secret: Path) -> None:
    host_ip = f'10.0.0.1 tcp dport 1 drop\n    include "{secret}"\n    ip daddr 10.0.0.1'
    seen = ""
    try:
        cid = str(create(client, {"80/tcp": [{"HostIp": host_ip, "HostPort": "8080"}]})["Id"])
        client.api.start(cid)
    except docker.errors.APIError as e:
        seen = str(e.explanation)
    assert "HOSTSECRET" not in seen, f"a host file's content reached the student: {seen}"
    assert seen.startswith("invalid IP address"), seen
    assert not [c for c in client.containers.list(all=True) if c.status == "running"]


@pytest.mark.parametrize("host_port", ["65530-70000", "8080-700000", "http", "-1", "80-70"])
def test_host_port_ranges_are_bounded_before_they_are_expanded(client: docker.DockerClient, host_port: str) -> None:
    with pytest.raises(docker.errors.APIError) as err:
        create(client, {"80/tcp": [{"HostIp": "", "HostPort": host_port}]})
    assert err.value.status_code == 400
    assert "invalid port specification" in str(err.value.explanation)


def test_an_ordinary_binding_still_publishes(client: docker.DockerClient) -> None:
    cid = str(create(client, {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081-8085"}]})["Id"])
    client.api.start(cid)
    ports = client.api.inspect_container(cid)["NetworkSettings"]["Ports"]["80/tcp"]
    assert ports[0]["HostIp"] == "127.0.0.1" and 8081 <= int(ports[0]["HostPort"]) <= 8085
    client.api.remove_container(cid, force=True)
