"""A Service's fields cannot write the kube-proxy's nftables script (runtime/kube/node/proxy.py).

runtimed applies that script with ``nsenter --net=... nft -f -``: root, in the host's mount
namespace. A ``spec.clusterIP`` (or a hand-written EndpointSlice address) copied into the
script as text let a student add nft statements of their choice, ``include "/any/host/file"``
among them: nft then reads that host file as root (its first line lands in runtimed's log
with the syntax error) or, for ``/dev/zero``, grows without bound outside the sandbox's
cgroup. The API server refuses such a Service as kube-apiserver does, and the proxy writes
only addresses it parsed, whatever is already stored.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import ADMIN_USER, create_cluster
from runtime.kube.apiserver.server import Hub
from runtime.kube.controllers.manager import Controllers
from runtime.kube.meta import Reply, Request, User
from runtime.kube.node import proxy

ADMIN = User(ADMIN_USER, ("system:masters", "system:authenticated"))
INCLUDE = '10.96.3.3 tcp dport 1 drop\n    include "/etc/shadow"\n    ip daddr 10.96.3.3'
HOSTILE = [INCLUDE, "10.96.3.3; flush ruleset", "10.96.3.3 }", "not-an-ip", "10.96.3.300"]


def service(cluster_ip: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "evil", "namespace": "default"},
        "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]},
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    create_cluster(tmp_path, "victim", "https://127.0.0.1:1", controllers=Controllers)
    c = Hub(tmp_path, controllers=Controllers).get("victim")
    assert c is not None
    return c


@pytest.mark.parametrize("ip", HOSTILE)
def test_a_service_with_a_hostile_cluster_ip_is_invalid(cluster: Cluster, ip: str) -> None:
    req = Request.build(
        "POST",
        "/api/v1/namespaces/default/services",
        "",
        {"Content-Type": "application/json"},
        json.dumps(service(ip)).encode(),
    )
    req.user = ADMIN
    reply = cluster.handle(req)
    assert isinstance(reply, Reply)
    assert reply.status == 422, reply.body
    assert "spec.clusterIP" in json.dumps(reply.body)
    assert cluster.store.get("services", "default", "evil") is None


@pytest.mark.parametrize("ip", HOSTILE)
def test_a_stored_hostile_cluster_ip_never_reaches_the_script(ip: str) -> None:
    svc = service(ip)
    script = proxy.render([svc], [], [], None)
    assert "include" not in script and ip not in script
    assert "10.96.3.3" not in script  # the Service is left out, not half-written


def test_hand_written_endpoint_addresses_are_parsed_not_copied() -> None:
    svc = service("10.96.3.3")
    sl = {
        "metadata": {"namespace": "default", "name": "evil-1", "labels": {proxy.SLICE_SERVICE_NAME: "evil"}},
        "ports": [{"port": 80, "protocol": "TCP", "name": ""}],
        "endpoints": [
            {"addresses": ['10.244.0.9:80\n  }\n  include "/etc/shadow"\n'], "conditions": {"ready": True}},
            {"addresses": ["10.244.0.7"], "conditions": {"ready": True}},
        ],
    }
    script = proxy.render([svc], [sl], [], None)  # renders (no ValueError for the whole proxy)
    assert "include" not in script
    assert "dnat to 10.244.0.7:80" in script


def test_the_proxys_script_is_valid_nft_without_them() -> None:
    """The remaining script still loads (nft's own parser, in a throwaway netns)."""
    if subprocess.run(["which", "nft"], capture_output=True).returncode != 0:
        pytest.skip("nft is not installed")
    script = proxy.render([service(INCLUDE), service("10.96.3.4")], [], [], None)
    cp = subprocess.run(
        ["unshare", "-n", "nft", "-c", "-f", "-"], input=script.encode(), capture_output=True, timeout=30
    )
    if cp.returncode != 0 and b"Operation not permitted" in cp.stderr:
        pytest.skip("needs root for a network namespace")
    assert cp.returncode == 0, cp.stderr.decode()
