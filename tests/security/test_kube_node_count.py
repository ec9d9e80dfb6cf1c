"""A lab cluster's node count is bounded wherever it can be asked for.

Nodes are views of one sandbox (they add no memory), but each is a Node object, a scheduling
domain and a share of the scheduler's work on every write: a caller of runtimed's API, a
course file or ``new-cluster`` asking for a thousand nodes gets a clear refusal naming the
field, never a cluster. runtimed's own refusal over its socket is proved in
tests/runtime/kube/test_multinode_live.py (it needs a real runtimed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime import errors
from runtime.kube.apiserver.provision import create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.machinery.apierrors import ApiError
from runtime.sandbox.spec import SandboxSpec


@pytest.mark.parametrize("count", [0, -1, 6, 10**6, "3", True, 2.0, None])
def test_the_sandbox_spec_refuses_a_node_count_out_of_bounds(count: Any) -> None:
    with pytest.raises(errors.BadRequest) as caught:
        SandboxSpec.from_json({"services": ["kubernetes"], "kube_nodes": count})
    assert "sandbox spec: kube_nodes: must be an integer in [1, 5]" in str(caught.value)


def test_nodes_without_a_lab_cluster_are_refused() -> None:
    with pytest.raises(errors.BadRequest) as caught:
        SandboxSpec.from_json({"services": ["docker"], "kube_nodes": 3})
    assert "kube_nodes: nodes of a lab cluster need the kubernetes service" in str(caught.value)
    assert SandboxSpec.from_json({"services": ["kubernetes"], "kube_nodes": 5}).kube_nodes == 5


@pytest.mark.parametrize("count", [0, 6, 10**6, True])
def test_create_cluster_refuses_a_node_count_out_of_bounds_and_leaves_nothing(tmp_path: Path, count: Any) -> None:
    with pytest.raises(ApiError) as caught:
        create_cluster(tmp_path, "many", "https://127.0.0.1:1", nodes=count, controllers=Controllers)
    assert caught.value.status == 422 and "must be 1 to 5" in caught.value.message
    assert not (tmp_path / "clusters" / "many").exists()
