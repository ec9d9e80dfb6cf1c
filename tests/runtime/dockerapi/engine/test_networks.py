"""User-defined networks through Debian's docker CLI 20.10, as module 2's networking lesson uses them.

A real sandbox (runc), a real ``Engine`` on its disk, the API served on a unix socket and
``/usr/bin/docker`` (as test_cli.py does): ``docker network create shop``, nginx as
``api`` on it, names resolved by busybox ``wget`` and debian ``getent``; the default
bridge and a second network cannot resolve nor reach it (nft isolation in the sandbox's
netns); ``-p`` on a user network; ``rm`` refused while a container is attached, then the
bridge gone from the sandbox's netns; ``network connect``/``disconnect`` (eth1, names on
both networks); the network kept by a re-opened engine; Docker's messages for invalid
requests. The tests run in file order and share the sandbox.

nginx:1.22 and debian:bookworm come from the platform's built image store (``make``), as a
test cannot debootstrap them in its time; the module is skipped when they are not built.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import errors
from runtime.dockerapi import netns
from runtime.dockerapi.engine import Engine
from runtime.images.store import ImageStore
from tests.runtime.conftest_daemon import short_tmp
from tests.runtime.dockerapi.api_helpers import PLATFORM_IMAGES, cli_sandbox, docker, served
from tests.runtime.dockerapi.engine_helpers import DockerSandbox

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

NGINX_PAGE = "Welcome to nginx!"
# Debian's busybox-static 1.35 wget crashes with -T; a dropped connection is bounded by timeout(1)
# instead, under sh so that wget is not the container's PID 1 (which ignores timeout's SIGTERM)
WGET_2S = ("sh", "-c", 'timeout 2 wget -qO- "$0" && echo fetched')


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DockerSandbox]:
    with cli_sandbox(250) as sb:
        yield sb


@pytest.fixture(scope="module")
def catalog() -> ImageStore:
    """The platform's built image store (``make`` builds nginx:1.22 and debian:bookworm there):
    the lesson needs nginx, which a test cannot build in its time (debootstrap from a mirror)."""
    store = ImageStore(PLATFORM_IMAGES)
    missing = [n for n in ("busybox", "debian:bookworm", "nginx:1.22") if not store.exists(n)]
    if missing:
        pytest.skip(f"images {', '.join(missing)} are not built in {store.root} (run make)")
    return store


@pytest.fixture(scope="module")
def sock(sandbox: DockerSandbox, catalog: ImageStore) -> Iterator[Path]:
    d = short_tmp("dnet-")
    eng = Engine(sandbox.ctx, catalog)
    try:
        with served(eng, d / "docker.sock"):
            yield d / "docker.sock"
    finally:
        for c in eng.list(all=True):
            with contextlib.suppress(errors.RuntimeError):
                eng.remove(c["Id"], force=True, volumes=True)
        d.rmdir()


def ok(sock: Path, *args: str) -> str:
    r = docker(sock, *args)
    assert r.returncode == 0, f"docker {' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def fetch(sock: Path, network: str, url: str) -> str:
    """busybox wget from a fresh container on ``network`` (nginx answers a moment after start)."""
    r = docker(sock, "run", "--rm", "--network", network, "busybox:1.35", "wget", "-qO-", url)
    for _ in range(30):
        if r.returncode == 0:
            break
        time.sleep(0.2)
        r = docker(sock, "run", "--rm", "--network", network, "busybox:1.35", "wget", "-qO-", url)
    assert r.returncode == 0, r.stderr
    return r.stdout


def ip_of(sock: Path, name: str, network: str) -> str:
    return ok(sock, "inspect", "-f", f"{{{{.NetworkSettings.Networks.{network}.IPAddress}}}}", name).strip()


def test_lesson_commands_resolve_api_by_name(sock: Path) -> None:
    net_id = ok(sock, "network", "create", "shop").strip()
    assert len(net_id) == 64
    # a container already running on the network learns of "api" when it starts (hosts rewritten in place)
    ok(sock, "run", "-d", "--network", "shop", "--name", "client", "debian:bookworm", "sleep", "600")
    ok(sock, "run", "-d", "--network", "shop", "--name", "api", "--network-alias", "backend", "nginx:1.22")
    assert NGINX_PAGE in fetch(sock, "shop", "http://api/")
    api_ip = ip_of(sock, "api", "shop")
    assert api_ip == "172.18.0.3"  # client got .2: Docker's first user subnet, gateway .1
    assert ok(sock, "exec", "client", "getent", "hosts", "api").split() == [
        api_ip,
        "api",
        "backend",
        ok(sock, "inspect", "-f", "{{.Id}}", "api").strip()[:12],
    ]
    assert ok(sock, "exec", "client", "getent", "hosts", "backend").split()[0] == api_ip
    assert ok(sock, "exec", "api", "getent", "hosts", "backend").split()[0] == api_ip  # itself, by alias
    assert NGINX_PAGE in fetch(sock, "shop", "http://backend/")


def test_network_and_container_inspect(sock: Path) -> None:
    net = json.loads(ok(sock, "network", "inspect", "shop"))[0]
    assert (net["Name"], net["Driver"], net["Scope"], net["Internal"]) == ("shop", "bridge", "local", False)
    assert net["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
    members = {v["Name"]: v for v in net["Containers"].values()}
    assert set(members) == {"client", "api"}
    assert members["api"]["IPv4Address"] == "172.18.0.3/16"
    assert members["api"]["MacAddress"] == "02:42:ac:12:00:03"
    ep = json.loads(ok(sock, "inspect", "-f", "{{json .NetworkSettings.Networks}}", "api"))
    assert list(ep) == ["shop"]
    assert (ep["shop"]["IPAddress"], ep["shop"]["Gateway"], ep["shop"]["NetworkID"]) == (
        "172.18.0.3",
        "172.18.0.1",
        net["Id"],
    )
    assert ep["shop"]["Aliases"][0] == "backend"
    # the MAC inspect reports is the one the container has
    assert ok(sock, "exec", "client", "cat", "/sys/class/net/eth0/address").strip() == "02:42:ac:12:00:02"
    names = ok(sock, "network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").splitlines()
    assert sorted(names) == ["bridge bridge local", "host host local", "none null local", "shop bridge local"]
    assert ok(sock, "ps", "--filter", "network=shop", "--format", "{{.Names}}").split() == ["api", "client"]


def test_default_bridge_neither_resolves_nor_reaches_a_user_network(sock: Path) -> None:
    r = docker(sock, "run", "--rm", "busybox:1.35", *WGET_2S, "http://api/")
    assert r.returncode != 0 and "bad address" in r.stderr
    api_ip = ip_of(sock, "api", "shop")
    r = docker(sock, "run", "--rm", "busybox:1.35", *WGET_2S, f"http://{api_ip}/")
    assert r.returncode != 0 and NGINX_PAGE not in r.stdout
    # the same address from the shop network answers: it is the isolation, not the server
    assert NGINX_PAGE in fetch(sock, "shop", f"http://{api_ip}/")


def test_two_user_networks_are_isolated(sock: Path) -> None:
    ok(sock, "network", "create", "other")
    net = json.loads(ok(sock, "network", "inspect", "other"))[0]
    assert net["IPAM"]["Config"] == [{"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.1"}]
    r = docker(sock, "run", "--rm", "--network", "other", "busybox:1.35", *WGET_2S, "http://api/")
    assert r.returncode != 0 and "bad address" in r.stderr
    api_ip = ip_of(sock, "api", "shop")
    r = docker(sock, "run", "--rm", "--network", "other", "busybox:1.35", *WGET_2S, f"http://{api_ip}/")
    assert r.returncode != 0 and NGINX_PAGE not in r.stdout
    # and the other way round: shop's client cannot reach a server on "other"
    ok(
        sock,
        "run",
        "-d",
        "--network",
        "other",
        "--name",
        "web2",
        "busybox:1.35",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    )
    assert fetch(sock, "other", "http://web2/hostname").strip() == ok(sock, "inspect", "-f", "{{.Id}}", "web2")[:12]
    web2_ip = ip_of(sock, "web2", "other")
    assert web2_ip.startswith("172.19.0.")
    assert docker(sock, "exec", "client", "getent", "hosts", "web2").returncode == 2  # not found
    probe = f"timeout 2 bash -c 'echo > /dev/tcp/{web2_ip}/80' && echo connected"
    r = docker(sock, "exec", "client", "bash", "-c", probe)
    assert r.returncode != 0 and "connected" not in r.stdout
    ok(sock, "rm", "-f", "web2")


def test_a_stopped_container_leaves_the_others_hosts_files(sock: Path) -> None:
    ok(sock, "stop", "api")
    assert docker(sock, "exec", "client", "getent", "hosts", "api").returncode == 2
    ok(sock, "start", "api")
    assert ok(sock, "exec", "client", "getent", "hosts", "api").split()[0] == ip_of(sock, "api", "shop")
    assert NGINX_PAGE in fetch(sock, "shop", "http://backend/")


def test_published_port_on_a_user_network(sock: Path, sandbox: DockerSandbox) -> None:
    ok(sock, "run", "-d", "--network", "shop", "-p", "8081:80", "--name", "pub", "nginx:1.22")
    page = ""
    for _ in range(50):
        code, page, _err = sandbox.sh("wget -qO- http://127.0.0.1:8081/")
        if code == 0:
            break
        time.sleep(0.1)
    assert NGINX_PAGE in page
    # reachable through the sandbox's address from a container on another network as well
    assert NGINX_PAGE in fetch(sock, "other", f"http://{sandbox.ctx.ip}:8081/")
    # but not from an --internal network: nothing crosses its bridge
    ok(sock, "network", "create", "--internal", "priv")
    r = docker(sock, "run", "--rm", "--network", "priv", "busybox:1.35", *WGET_2S, f"http://{sandbox.ctx.ip}:8081/")
    assert r.returncode != 0 and NGINX_PAGE not in r.stdout


def test_connect_and_disconnect_a_second_network(sock: Path) -> None:
    ok(
        sock,
        "run",
        "-d",
        "--network",
        "other",
        "--name",
        "web3",
        "busybox:1.35",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    )
    web3_ip = ip_of(sock, "web3", "other")
    probe = f"timeout 2 bash -c 'echo > /dev/tcp/{web3_ip}/80' && echo connected"
    assert docker(sock, "exec", "client", "bash", "-c", probe).returncode != 0
    ok(sock, "network", "connect", "--alias", "c2", "other", "client")
    client_ip = ip_of(sock, "client", "other")
    assert client_ip.startswith("172.19.0.") and ip_of(sock, "client", "shop").startswith("172.18.0.")
    assert ok(sock, "exec", "client", "getent", "hosts", "web3").split()[0] == web3_ip
    assert ok(sock, "exec", "client", "bash", "-c", probe).strip() == "connected"
    assert f"PING c2 ({client_ip})" in ok(sock, "exec", "web3", "ping", "-c", "1", "c2")
    members = json.loads(ok(sock, "network", "inspect", "-f", "{{json .Containers}}", "other"))
    assert {v["Name"]: v["IPv4Address"] for v in members.values()}["client"] == f"{client_ip}/16"
    routes = [line.split() for line in ok(sock, "exec", "client", "cat", "/proc/net/route").splitlines()[1:]]
    assert [r[0] for r in routes if r[1] == "00000000"] == ["eth0"]  # the default route stays on eth0
    r = docker(sock, "network", "connect", "other", "client")
    assert r.returncode == 1 and "endpoint with name client already exists in network other" in r.stderr
    r = docker(sock, "network", "disconnect", "shop", "client")
    assert r.returncode == 1 and "the network it was created on, is not available in this lab" in r.stderr
    ok(sock, "network", "disconnect", "other", "client")
    assert docker(sock, "exec", "client", "getent", "hosts", "web3").returncode == 2
    assert docker(sock, "exec", "client", "test", "-e", "/sys/class/net/eth1").returncode == 1
    assert list(json.loads(ok(sock, "inspect", "-f", "{{json .NetworkSettings.Networks}}", "client"))) == ["shop"]
    # a created container connected before it starts gets both interfaces when it starts
    ok(sock, "create", "--network", "shop", "--name", "later", "busybox:1.35", "sleep", "600")
    ok(sock, "network", "connect", "other", "later")
    ok(sock, "start", "later")
    assert ok(sock, "exec", "later", "ping", "-c", "1", "web3").startswith(f"PING web3 ({web3_ip})")
    assert ok(sock, "exec", "later", "ping", "-c", "1", "api").startswith("PING api (172.18.0.")
    ok(sock, "rm", "-f", "later", "web3")


def test_rm_refused_while_attached_then_bridge_gone(sock: Path, sandbox: DockerSandbox) -> None:
    net_id = ok(sock, "network", "inspect", "-f", "{{.Id}}", "shop").strip()
    bridge = netns.bridge_name(net_id)
    assert bridge in netns.links(sandbox.ctx.pid)
    r = docker(sock, "network", "rm", "shop")
    assert r.returncode == 1
    assert f"error while removing network: network shop id {net_id} has active endpoints" in r.stderr
    ok(sock, "rm", "-f", "api", "pub", "client")
    assert ok(sock, "network", "rm", "shop").strip() == "shop"
    assert bridge not in netns.links(sandbox.ctx.pid)
    assert "shop" not in ok(sock, "network", "ls", "--format", "{{.Name}}").split()
    r = docker(sock, "network", "inspect", "shop")
    assert r.returncode == 1 and "No such network: shop" in r.stderr  # the CLI's wording for our 404
    r = docker(sock, "run", "--rm", "--network", "shop", "busybox:1.35", "true")
    assert r.returncode == 125 and "network shop not found" in r.stderr


def test_invalid_requests_get_dockers_messages(sock: Path) -> None:
    r = docker(sock, "network", "create", "other")
    assert r.returncode == 1 and "Error response from daemon: network with name other already exists" in r.stderr
    r = docker(sock, "network", "create", "bridge")
    assert r.returncode == 1 and "network with name bridge already exists" in r.stderr
    r = docker(sock, "network", "create", "--driver", "overlay", "ov")
    assert r.returncode == 1 and 'network driver "overlay" is not available in this lab' in r.stderr
    r = docker(sock, "network", "create", "--subnet", "172.17.5.0/24", "clash")
    assert r.returncode == 1 and "Pool overlaps with other one on this address space" in r.stderr
    r = docker(sock, "network", "create", "--subnet", "172.19.128.0/17", "clash")
    assert r.returncode == 1 and "Pool overlaps with other one on this address space" in r.stderr
    r = docker(sock, "network", "create", "--subnet", "10.9.0.0/16", "outside")
    assert r.returncode == 1 and "subnet 10.9.0.0/16 is not available in this lab" in r.stderr
    r = docker(sock, "network", "create", "--subnet", "192.168.60.0/24", "--gateway", "192.168.61.1", "gw")
    assert r.returncode == 1 and "no matching subnet for gateway 192.168.61.1" in r.stderr
    r = docker(sock, "network", "rm", "bridge")
    assert r.returncode == 1 and "bridge is a pre-defined network and cannot be removed" in r.stderr
    r = docker(sock, "network", "connect", "other", "nothing")
    assert r.returncode == 1 and "No such container: nothing" in r.stderr
    r = docker(sock, "network", "connect", "bridge", "nothing")
    assert r.returncode == 1 and "connecting containers to the bridge network is not available in this lab" in r.stderr
    r = docker(sock, "run", "--rm", "--network", "container:x", "busybox:1.35", "true")
    assert r.returncode == 125 and "--network=container:x is not available in this lab" in r.stderr
    assert "clash" not in ok(sock, "network", "ls", "--format", "{{.Name}}").split()


def test_subnet_and_gateway_honoured_and_kept_by_a_reopened_engine(
    sock: Path, sandbox: DockerSandbox, catalog: ImageStore
) -> None:
    ok(
        sock,
        "network",
        "create",
        "--subnet",
        "192.168.50.0/24",
        "--gateway",
        "192.168.50.254",
        "--label",
        "k=v",
        "kept",
    )
    ok(sock, "run", "-d", "--network", "kept", "--name", "k1", "busybox:1.35", "sleep", "600")
    assert ip_of(sock, "k1", "kept") == "192.168.50.1"  # the gateway is .254: .1 is the first free address
    assert ok(sock, "exec", "k1", "ip", "route").split()[:3] == ["default", "via", "192.168.50.254"]
    ok(sock, "rm", "-f", "k1")
    # a new Engine on the same sandbox (as after a runtimed restart) has the networks from the store
    again = Engine(sandbox.ctx, catalog)
    kept = again.network_inspect("kept")
    assert kept["IPAM"]["Config"] == [{"Subnet": "192.168.50.0/24", "Gateway": "192.168.50.254"}]
    assert kept["Labels"] == {"k": "v"}
    assert kept["Id"] == ok(sock, "network", "inspect", "-f", "{{.Id}}", "kept").strip()
    assert [n["Name"] for n in again.networks({"type": ["custom"]})] == ["other", "priv", "kept"]


def test_prune_removes_unused_networks(sock: Path) -> None:
    assert ok(sock, "network", "inspect", "-f", "{{.Internal}}", "priv").strip() == "true"
    ok(sock, "run", "-d", "--network", "other", "--name", "busy", "busybox:1.35", "sleep", "600")
    out = ok(sock, "network", "prune", "-f")
    assert "kept" in out and "priv" in out and "other" not in out
    assert sorted(ok(sock, "network", "ls", "--format", "{{.Name}}").split()) == ["bridge", "host", "none", "other"]
    ok(sock, "rm", "-f", "busy")
    assert "other" in ok(sock, "network", "prune", "-f")
