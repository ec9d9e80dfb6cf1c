"""A small two-node topology (tests/scaleout/topology.py) and a KubernetesBackend on it, for
the security tests of the scale-out walls: each module that imports these gets its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.placement import KubernetesBackend
from tests.runtime.conftest_daemon import real_sandboxes_available
from tests.scaleout.topology import Topology, topology


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    with topology(cpu="4", memory="8Gi") as t:
        yield t


@pytest.fixture(scope="module")
def backend(topo: Topology) -> Iterator[KubernetesBackend]:
    b = KubernetesBackend(topo.kubeconfig, ca=str(topo.ca), port=topo.port, token=topo.admin_token, wait_timeout=60)
    yield b
    b.close()
