"""One in-process lab cluster for the whole compatibility suite, and a namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.kube.controllers.manager import Controllers
from tests.runtime.kube.apiserver.test_pod_io import HostPodIO, InProcessServer
from tests.runtime.kube.conftest import Kubectl


@pytest.fixture(scope="session")
def compat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    s = InProcessServer(tmp_path_factory.mktemp("compat"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def pod_io() -> HostPodIO:
    return HostPodIO()


@pytest.fixture(scope="session")
def kubectl(compat_server: InProcessServer, pod_io: HostPodIO) -> Kubectl:
    return compat_server.cluster_with("compat", pod_io)


@pytest.fixture(scope="session")
def api(kubectl: Kubectl) -> Iterator[Any]:
    """The official Python client's ApiClient, from the cluster's admin kubeconfig."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubectl.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace, deleted afterwards."""
    name = f"c-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false")


class Raw:
    """Requests through the official client's own transport (TLS, SNI, bearer token), with
    the response's status, headers and exact bytes: the oracle for byte-level shapes."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        params = self.api.param_serialize(
            method=method,
            resource_path=path,
            header_params=dict(headers or {}),
            body=body,
            auth_settings=["BearerToken"],
        )
        r = self.api.call_api(*params)
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders().items()}, r.data


@pytest.fixture(scope="session")
def raw(api: Any) -> Raw:
    return Raw(api)


@pytest.fixture(scope="session")
def small_api(compat_server: InProcessServer) -> Iterator[Any]:
    """A second cluster with small limits (one watch, 4 KiB request bodies, a watch cache of 8
    events), for 410, 413 and 429."""
    from kubernetes import config

    from runtime.kube.apiserver.provision import create_cluster

    path = compat_server.data / "compat-small.kubeconfig"
    path.write_text(
        create_cluster(
            compat_server.data,
            "compat-small",
            compat_server.url,
            {"max_watches": 1, "max_request_bytes": 4096, "watch_cache_events": 8},
            controllers=Controllers,
        )
    )
    client = config.new_client_from_config(config_file=str(path))
    yield client
    client.close()
