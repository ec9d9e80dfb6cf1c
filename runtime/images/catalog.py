"""The platform's image catalog: what a sandbox's Docker engine offers without a registry.

Each entry is an image of the runtime's shared store (``ImageStore``, built by a recipe
from this host's Debian packages) and the Docker references it answers to in every
student's engine. The first reference is the canonical one (``docker images`` shows
every reference; ``docker pull REF`` of a catalog reference succeeds at once, any other
pull is refused with the list below). Names are honest: the tag is the version Debian
ships, not the upstream image's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogImage:
    name: str  # the image's name in the runtime's store
    refs: tuple[str, ...]  # Docker references, "repo:tag", canonical first
    summary: str


CATALOG: tuple[CatalogImage, ...] = (
    CatalogImage("busybox", ("busybox:1.35", "busybox:latest"), "Debian's busybox-static 1.35 and tini"),
    CatalogImage(
        "debian:bookworm",
        ("debian:bookworm", "debian:12", "debian:latest"),
        "Debian 12 bookworm, debootstrap --variant=minbase",
    ),
    CatalogImage(
        "python:3.11-slim",
        ("python:3.11-slim", "python:3.11", "python:3-slim", "python:3.11-slim-bookworm"),
        "debian:bookworm + Debian's python3 3.11.2 and ca-certificates (no pip)",
    ),
    CatalogImage(
        "python:3.11-minimal",
        ("python:3.11-minimal",),
        "Debian's python3.11-minimal (core stdlib only) and its libraries, busybox; no apt",
    ),
    CatalogImage(
        "nginx:1.22",
        ("nginx:1.22", "nginx:1.22.1", "nginx:latest"),
        "debian:bookworm + Debian's nginx 1.22.1, logs to stdout/stderr",
    ),
    CatalogImage(
        "kubelab-hello:1",
        ("kubelab/hello:1",),
        "the platform's own teaching app: busybox httpd on 8080 saying 'Hello from version 1'",
    ),
    CatalogImage(
        "kubelab-hello:2",
        ("kubelab/hello:2",),
        "the same app, version 2 (rolling updates go from 1 to 2; there is no version 3)",
    ),
)


def normalize(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; ``docker.io/library/busybox:1.35`` -> ``busybox:1.35``."""
    ref = ref.strip()
    for prefix in ("docker.io/library/", "index.docker.io/library/", "library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    if "@" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else ref + ":latest"


def lookup(ref: str) -> CatalogImage | None:
    want = normalize(ref)
    for image in CATALOG:
        if want in image.refs:
            return image
    return None


def available() -> str:
    """The catalog as one line for error messages: ``busybox:1.35, debian:bookworm, ...``."""
    return ", ".join(image.refs[0] for image in CATALOG)
