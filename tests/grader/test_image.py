"""``image`` checks through the docker SDK against a real (private) dockerd."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from grader.checks import Target, run_checks


def _context(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.fixture(scope="module")
def images(dockerd: str) -> Iterator[str]:
    """``web:good`` (small, tidy) and ``web:wasteful`` (a big file overwritten in a later layer),
    built with COPY only: no RUN, so no container ever starts."""
    client = docker.DockerClient(base_url=dockerd, timeout=60)
    good = (
        b"FROM busybox:latest\n"
        b"LABEL org.example.team=platform\n"
        b"COPY index.html /srv/index.html\n"
        b"ENV MODE=production\n"
        b"EXPOSE 8080\n"
        b"USER nobody\n"
        b"WORKDIR /srv\n"
        b'CMD ["httpd", "-f", "-p", "8080"]\n'
    )
    wasteful = b"FROM busybox:latest\nCOPY big /srv/data\nCOPY small /srv/data\nCOPY index.html /srv/index.html\n"
    files = {"index.html": b"<h1>hi</h1>\n", "big": b"x" * 2_000_000, "small": b"y"}
    for tag, dockerfile in (("web:good", good), ("web:wasteful", wasteful)):
        context = _context({"Dockerfile": dockerfile, **files})
        client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True)
    client.close()
    yield dockerd


def _run(url: str, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(run_checks(Target(docker_url=url), checks)["tests"])


def test_image_properties(images: str) -> None:
    base = {"type": "image", "image": "web:good"}
    tests = _run(
        images,
        [
            {
                **base,
                "user": "nobody",
                "workdir": "/srv",
                "exposed_ports": [8080],
                "cmd": ["httpd", "-f", "-p", "8080"],
            },
            {**base, "labels": {"org.example.team": "platform"}, "env_contains": ["MODE=production", "PATH"]},
            {**base, "base": "busybox:latest", "max_layers": 2, "max_size_mb": 10, "history_contains": "COPY"},
            {**base, "has_file": ["/srv/index.html", "/bin/busybox"], "lacks_file": "/srv/data"},
            {**base, "user": "root"},
            {"type": "image", "image": "web:missing"},
            {"type": "image", "image": "web:missing", "exists": False},
            {**base, "exposed_ports": ["80/tcp"]},
        ],
    )
    assert [t["status"] for t in tests] == [
        "passed",
        "passed",
        "passed",
        "passed",
        "failed",
        "failed",
        "passed",
        "failed",
    ]
    assert "user is 'nobody', expected 'root'" in tests[4]["output"]
    assert "port 80/tcp is not exposed" in tests[7]["output"]


def test_efficiency_like_dive(images: str) -> None:
    tests = _run(
        images,
        [
            {"type": "image", "image": "web:good", "min_efficiency": 0.99},
            {"type": "image", "image": "web:wasteful", "min_efficiency": 0.9},
            {"type": "image", "image": "web:wasteful", "max_wasted_mb": 1},
            {"type": "image", "image": "web:wasteful", "max_layers": 2},
        ],
    )
    assert [t["status"] for t in tests] == ["passed", "failed", "failed", "failed"]
    assert "2000000 bytes written then removed or overwritten" in tests[1]["output"]


def test_an_unreachable_engine_is_an_error(tmp_path: Any) -> None:
    (test,) = _run(f"unix://{tmp_path}/nothing.sock", [{"type": "image", "image": "web:good"}])
    assert test["status"] == "error" and "not reachable" in test["output"]
