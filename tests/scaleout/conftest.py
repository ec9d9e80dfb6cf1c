"""A fresh multi-node topology per test module (tests/scaleout/topology.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runtime.conftest_daemon import real_sandboxes_available
from tests.scaleout.topology import Topology, topology


@pytest.fixture(scope="module")
def topo(request: pytest.FixtureRequest) -> Iterator[Topology]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    cpu = getattr(request.module, "NODE_CPU", "10")
    images = getattr(request.module, "NODE_IMAGES", None)  # a module needing more than busybox
    with topology(cpu=cpu, memory="32Gi", images=images) as t:
        yield t
