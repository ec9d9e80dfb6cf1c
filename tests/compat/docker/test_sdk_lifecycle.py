"""The ``docker`` Python SDK (pinned) as the oracle for what test_cli_lifecycle.py cannot reach
through the CLI (issue #15, part 1): exec framing chosen by exec-start's ``Tty``, stats'
``networks``, the echo of an endpoint's ``DriverOpts``/``LinkLocalIPs``/``Links``/
``MacAddress``, a repeated ``dockerfile`` parameter, the swarm endpoints' 503, events, and
restart policies across a runtimed restart (a new ``Engine`` on the same sandbox, as
runtimed's re-adoption makes one).

Written from the Engine API reference v1.41 (``POST /exec/{id}/start``: "Tty: Allocate a
pseudo-TTY" decides the stream's framing; ``ContainerStats.networks``; ``EndpointSettings``;
``/swarm`` 503 "This node is not a swarm manager"; ``RestartPolicy``) and the SDK's own
documentation (``APIClient.exec_start(tty=...)`` demultiplexes only when ``tty`` is False).
"""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from runtime.dockerapi.engine import Engine
from tests.runtime.conftest_daemon import real_sandboxes_available, short_tmp
from tests.runtime.dockerapi.api_helpers import served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox, docker_sandbox

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TAG = 49


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with docker_sandbox(TAG) as sb:
        yield sb


@pytest.fixture(scope="module")
def client(sandbox: DockerSandbox) -> Iterator[docker.DockerClient]:
    d = short_tmp("dsdklife-")
    eng = Engine(sandbox.ctx, sandbox.mgr.images)  # type: ignore[arg-type]
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


def until(what: str, check: Callable[[], Any], limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


SH = "test -t 1 && echo tty || echo notty; echo err >&2"


def test_exec_framing_follows_exec_starts_tty(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    api = client.api
    # a TTY process, framed output (start Tty=false): the SDK demultiplexes the frames
    eid = api.exec_create(c.id, ["sh", "-c", SH], tty=True)["Id"]
    out = api.exec_start(eid, tty=False)
    assert out.replace(b"\r\n", b"\n") == b"tty\nerr\n"
    out, err = api.exec_start(api.exec_create(c.id, ["sh", "-c", SH], tty=True)["Id"], tty=False, demux=True)
    assert out is not None and b"tty" in out and err is None  # a TTY has one stream: all of it is stdout
    # pipes, raw stream (start Tty=true): stdout and stderr unframed, as they come
    eid = api.exec_create(c.id, ["sh", "-c", "echo notty-out; sleep 0.2; echo raw-err >&2"], tty=False)["Id"]
    raw = api.exec_start(eid, tty=True)
    assert raw == b"notty-out\nraw-err\n"  # no 8-byte frame headers
    # the usual case: both false, frames per stream
    out, err = api.exec_start(api.exec_create(c.id, ["sh", "-c", SH])["Id"], demux=True)
    assert (out, err) == (b"notty\n", b"err\n")
    c.remove(force=True)


def test_stats_have_networks(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sh", "-c", "ping -c 2 -W 1 172.17.0.1; sleep 1000"], detach=True)
    c.exec_run(["ping", "-c", "1", "-W", "1", "172.17.0.1"])
    stats = c.stats(stream=False)
    eth0 = stats["networks"]["eth0"]
    assert set(eth0) >= {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets"}
    assert eth0["tx_packets"] > 0 and "lo" not in stats["networks"]
    c.remove(force=True)


def test_endpoint_settings_are_honoured_and_echoed(client: docker.DockerClient) -> None:
    net = client.networks.create("echo-net", driver="bridge")
    target = client.containers.run("busybox", ["sleep", "1000"], detach=True, name="echo-target", network="echo-net")
    api = client.api
    netcfg = api.create_networking_config(
        {
            "echo-net": api.create_endpoint_config(
                links={"echo-target": "db"}, link_local_ips=["169.254.8.8"], driver_opt={"com.example.opt": "1"}
            )
        }
    )
    cid = api.create_container(
        "busybox",
        ["sleep", "1000"],
        mac_address="02:42:ac:11:99:01",
        networking_config=netcfg,
        host_config=api.create_host_config(network_mode="echo-net"),
    )["Id"]
    api.start(cid)
    ep = api.inspect_container(cid)["NetworkSettings"]["Networks"]["echo-net"]
    assert ep["DriverOpts"] == {"com.example.opt": "1"}
    assert ep["IPAMConfig"]["LinkLocalIPs"] == ["169.254.8.8"]
    assert ep["Links"] == ["echo-target:db"]
    assert ep["MacAddress"] == "02:42:ac:11:99:01"
    c = client.containers.get(cid)
    link = c.exec_run(["ip", "-o", "link", "show", "eth0"]).output.decode()
    assert "02:42:ac:11:99:01" in link
    assert "169.254.8.8" in c.exec_run(["ip", "-o", "addr", "show", "eth0"]).output.decode()
    target_ip = (
        target.attrs["NetworkSettings"]["Networks"]["echo-net"]["IPAddress"]
        or api.inspect_container(target.id)["NetworkSettings"]["Networks"]["echo-net"]["IPAddress"]
    )
    hosts = c.exec_run(["cat", "/etc/hosts"]).output.decode()
    assert f"{target_ip}\tdb" in hosts  # the link's alias resolves in the linking container
    c.remove(force=True)
    target.remove(force=True)
    net.remove()


def test_network_connect_refuses_endpoint_settings_it_cannot_apply(client: docker.DockerClient) -> None:
    net = client.networks.create("conn-net", driver="bridge")
    c = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    for kwargs in ({"ipv4_address": "172.30.0.9"}, {"link_local_ips": ["169.254.1.1"]}, {"links": {"x": "y"}}):
        with pytest.raises(docker.errors.APIError) as e:
            net.connect(c, **kwargs)
        assert e.value.status_code == 403 and "not available in this lab" in str(e.value.explanation)
    net.connect(c, aliases=["web"])  # what it can apply, it applies
    assert "web" in client.api.inspect_container(c.id)["NetworkSettings"]["Networks"]["conn-net"]["Aliases"]
    c.remove(force=True)
    net.remove()


def test_a_repeated_dockerfile_parameter_takes_the_first(client: docker.DockerClient) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in (("First", b"FROM busybox:1.35\nLABEL which=first\n"), ("Second", b"FROM busybox:1.35\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(text)
            tar.addfile(ti, io.BytesIO(text))
    api = client.api
    r = api._post(
        api._url("/build"),
        params=[("dockerfile", "First"), ("dockerfile", "Second"), ("t", "which:1")],
        data=buf.getvalue(),
        headers={"Content-Type": "application/x-tar"},
    )
    assert r.status_code == 200, r.text
    assert "errorDetail" not in r.text
    assert client.images.get("which:1").labels.get("which") == "first"


def test_swarm_endpoints_answer_503_as_outside_a_swarm(client: docker.DockerClient) -> None:
    for call in (client.api.inspect_swarm, client.api.services, client.api.nodes, client.api.tasks):
        with pytest.raises(docker.errors.APIError) as e:
            call()
        assert e.value.status_code == 503
        assert "This node is not a swarm manager" in str(e.value.explanation)


def test_events_report_a_containers_life(client: docker.DockerClient) -> None:
    since = time.time()
    c = client.containers.run("busybox", ["sleep", "1000"], detach=True, name="ev1", labels={"course": "k8s"})
    c.kill()
    c.remove()
    events = list(client.events(since=since, until=time.time() + 1, decode=True, filters={"container": "ev1"}))
    actions = [e["Action"] for e in events]
    assert actions == ["create", "start", "kill", "die", "destroy"]
    die = next(e for e in events if e["Action"] == "die")
    assert die["Type"] == "container" and die["Actor"]["Attributes"]["exitCode"] == "137"
    assert die["Actor"]["Attributes"]["name"] == "ev1" and die["Actor"]["Attributes"]["course"] == "k8s"
    assert die["status"] == "die" and die["id"] == c.id and die["from"] == "busybox"
    r = client.api._get(client.api._url("/events"), params={"filters": json.dumps({"bogus": ["x"]}), "until": "1"})
    assert r.status_code == 400 and "invalid filter 'bogus'" in r.json()["message"]


def test_api_refuses_autoremove_with_a_restart_policy(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create("busybox", ["true"], auto_remove=True, restart_policy={"Name": "always"})
    assert "can't create 'AutoRemove' container with restart policy" in str(e.value.explanation)


def test_restart_policies_across_a_runtimed_restart(sandbox: DockerSandbox) -> None:
    """runtimed restarts: a new Engine on the same sandbox. As dockerd's restore: ``always``
    comes back even after a docker stop; ``unless-stopped`` only if it was not stopped by hand;
    one whose process died while runtimed was away restarts by its policy."""
    d = short_tmp("dsdkrst-")
    eng = Engine(sandbox.ctx, sandbox.mgr.images)  # type: ignore[arg-type]
    try:
        with served(eng, d / "docker.sock"):
            c = docker.DockerClient(base_url=f"unix://{d / 'docker.sock'}", timeout=120)
            always = c.containers.run("busybox", ["sleep", "1000"], detach=True, restart_policy={"Name": "always"})
            stopped = c.containers.run(
                "busybox", ["sleep", "1000"], detach=True, restart_policy={"Name": "unless-stopped"}
            )
            died = c.containers.run(
                "busybox", ["sleep", "1000"], detach=True, restart_policy={"Name": "unless-stopped"}
            )
            plain = c.containers.run("busybox", ["sleep", "1000"], detach=True)
            always.stop(timeout=1)
            stopped.stop(timeout=1)
            pid = c.api.inspect_container(died.id)["State"]["Pid"]
            c.close()
        eng.detach()  # runtimed stops; containers go on running
        os.kill(pid, signal.SIGKILL)  # one dies while runtimed is away
        until("its death", lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid))
        eng = Engine(sandbox.ctx, sandbox.mgr.images)  # type: ignore[arg-type]
        with served(eng, d / "docker.sock"):
            c = docker.DockerClient(base_url=f"unix://{d / 'docker.sock'}", timeout=120)

            def state(ct: Any) -> dict[str, Any]:
                return c.api.inspect_container(ct.id)["State"]

            until("always back up", lambda: state(always)["Running"] and not state(always)["Restarting"])
            until("the dead one back up", lambda: state(died)["Running"] and not state(died)["Restarting"])
            assert state(stopped)["Status"] == "exited"  # unless-stopped, stopped by hand: stays down
            assert state(plain)["Running"]  # re-adopted, never stopped
            for ct in (always, stopped, died, plain):
                c.api.remove_container(ct.id, force=True)
            c.close()
    finally:
        eng.close(remove=False)
        d.rmdir()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_json_shapes_of_update_and_info(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    r = client.api.update_container(c.id, mem_limit="32m", restart_policy={"Name": "unless-stopped"})
    assert "Warnings" in r
    hc = client.api.inspect_container(c.id)["HostConfig"]
    assert hc["Memory"] == 32 * 2**20 and hc["RestartPolicy"]["Name"] == "unless-stopped"
    with pytest.raises(docker.errors.APIError) as e:
        client.api.update_container(c.id, cpuset_cpus="0")
    assert e.value.status_code == 403 and "CpusetCpus" in str(e.value.explanation)
    assert json.dumps(client.info()["ExperimentalBuild"]) == "false"
    c.remove(force=True)
