"""List replies are encoded in slices with the loop free between them (server.encode_yielding),
and the bytes are exactly what go_json writes for the whole reply (compact for kubectl,
indented for curl), so no client sees a difference."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime.kube.apiserver.server import ENCODE_SLICE, encode_yielding
from runtime.kube.machinery.apierrors import go_json


def _cm(i: int, text: str = "v") -> dict[str, Any]:
    return {
        "metadata": {"name": f"cm-{i}", "namespace": "default", "labels": {"app": "x<&>"}},
        "data": {"k": text, "empty": "", "nested": "é \u2028 \ud800"},
        "list": [1, 2.5, None, True, [], {}],
    }


BODIES: dict[str, dict[str, Any]] = {
    "list": {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": []},
    "table": {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "7"},
        "columnDefinitions": [{"name": "Name", "type": "string"}],
        "rows": [],
    },
}


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("what", sorted(BODIES))
@pytest.mark.parametrize("count", [0, 1, 17, 400])
async def test_the_bytes_are_go_json_of_the_whole_reply(pretty: bool, what: str, count: int) -> None:
    body = dict(BODIES[what])
    key = "items" if what == "list" else "rows"
    body[key] = [_cm(i) if key == "items" else {"cells": [f"cm-{i}"], "object": _cm(i)} for i in range(count)]
    assert await encode_yielding(body, pretty) == go_json(body, pretty)


async def test_other_requests_run_while_a_big_list_is_encoded() -> None:
    body = dict(BODIES["list"])
    body["items"] = [_cm(i, "x" * 4096) for i in range(2000)]  # about 8 MiB: many slices
    assert len(go_json(body)) > 8 * ENCODE_SLICE
    done = False
    turns = 0

    async def other_request() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_request())
    await asyncio.sleep(0)
    turns = 0  # from here on: turns taken while the list is being encoded
    out = await encode_yielding(body, False)
    done = True
    await other
    assert out == go_json(body)
    assert turns >= 8  # ordering: the other request ran between slices, not once after
