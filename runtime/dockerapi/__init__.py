"""The ``docker`` sandbox service: a private Docker Engine API per sandbox, served by runtimed.

A sandbox created with ``services: ["docker"]`` (CLI ``--service docker``) has
``/var/run/docker.sock`` (a symlink to ``/run/kubelab-docker/docker.sock``, a read-only
bind mount of a host directory that holds only that socket) and ``DOCKER_BUILDKIT=0`` in
its environment, so the real docker CLI (Debian's docker.io, API 1.41) and the ``docker``
Python SDK talk to runtimed, which answers for that sandbox only. No dockerd, no nesting
of privileges: a student's containers are runc containers started by runtimed *inside*
the sandbox's user namespace, cgroup, network namespace and disk quota.

Layout
------
``service.py``
    ``DockerService`` (a ``SandboxManager`` service hook): one ``Engine`` per sandbox,
    the socket listener, lifecycle (start, stop, remove, re-adoption after a runtimed
    restart) and the host-side access graders use (``GET/POST
    /v1/sandboxes/{id}/docker/{path}`` on runtimed's own socket is forwarded to the
    same API).
``api.py``
    The Docker Engine API (aiohttp): version negotiation (``/_ping``, ``/version``, any
    ``/v1.NN`` prefix), images, build, containers, exec, attach (hijacked connections,
    raw stream for TTY, multiplexed ``stdcopy`` frames otherwise), logs, volumes,
    ``/system/df``, errors as ``{"message": ...}`` with Docker's status codes.
``engine.py``
    ``Engine``: containers (runc, nested), exec, logs, attach, wait, volumes, published
    ports, user-defined networks (``docker network create/ls/inspect/rm/prune``), refusals
    of unsafe requests, ``run_step`` for the builder.
``netns.py``
    The network, all inside the sandbox's netns: ``docker0`` (172.17.0.0/16) and one
    bridge ``br-<id12>`` per user-defined network (172.18.0.0/16, 172.19.0.0/16, ...), a
    veth per container, one nft table (published ports, masquerade, isolation between
    networks). Names resolve on user-defined networks only, through each container's
    ``/etc/hosts``, which the engine rewrites in place as the network's containers start
    and stop (no DNS server); ``network connect`` adds an ``eth<n>`` on another network.
``health.py`` / ``events.py``
    Health checks as dockerd runs them (probes are execs in the container, waiting is a
    timer, at most ``MAX_RUNNING`` probes of a sandbox at once) and ``docker events`` (a
    bounded ring and subscribers). Restart policies, pause/unpause and ``docker update``
    are in ``engine.py``; their timers (back-offs, probe intervals) in ``watch.Timers``.
``changes.py``
    ``docker diff``: the container's overlay upper dir walked against the image's layers
    (descriptor-relative, never following a symlink), as Docker's overlay driver reports it.
``archive.py``
    ``docker cp``: ``tar`` run INSIDE the running container (``runc exec``, its namespaces
    and limits), or for a stopped one in a one-off runc container on its filesystem, so
    runtimed never reads or extracts a student's tree as host root.
``tarexport.py`` / ``commit.py``
    ``docker load`` (docker-archive and OCI layout, read in place as a tar index) and
    ``docker import``; the ``--change`` instructions of commit and import. Every layer a
    student sends or commits is unpacked by ``EngineStore.ingest_layer`` (tarutil's
    extractor: no path leaves the layer, no link followed, no device, uids clamped to the
    sandbox's range, stopped at the disk's free space), decompressed, hashed and unpacked
    by the engine helper (``ingest`` op) in the sandbox's cgroup, not in runtimed (#12).
``store.py``
    ``EngineStore``: the sandbox's images (Docker image configs, content-addressed ids),
    tags, layers built by the student, the platform catalog (read-only, shared), the
    classic builder's cache (parent/child images), ``docker save`` export, layers from
    outside (load, import, commit), ``/distribution`` of catalog images, prune, df,
    and the user-defined networks' records (they survive a runtimed restart).
``dockerfile.py`` / ``ignore.py`` / ``build.py``
    The classic builder: Dockerfile parser (escape directive, continuations, JSON and
    shell forms, ARG/ENV substitution), .dockerignore, the executor (stages, ``--target``,
    ``COPY --from``, ADD of local tarballs, layer cache reported as "Using cache").

Where things live (sandbox dir ``D = ROOT/sandboxes/<id>``)
-----------------------------------------------------------
* ``D/disk`` stays mounted for sandboxes with this service (the sandbox's quota'd ext4);
  ``D/disk/engine/`` (root, 0700) holds the engine: ``images/``, ``layers/``,
  ``containers/``, ``volumes/``, ``networks/``, ``runc/`` (runc ``--root``). The student's own overlay
  upper is ``D/disk/upper``: the engine is invisible from inside yet counts against the
  sandbox's disk quota.
* ``D/svc-docker/docker.sock``: the socket (owned by the sandbox's mapped root, 0660).

Ownership: every layer the engine stores is in the sandbox's *host* uid space (host uid
= ``uid_base`` + container uid), as files a sandbox process writes are. Catalog layers
(host uid 0 based, shared by all sandboxes) are shown to containers through idmapped
mounts, or through the catalog store's shifted copies when the kernel refuses those
(``SandboxContext.idmap``). ``docker save`` and layer digests use container uids.
"""

from __future__ import annotations

from dataclasses import dataclass

# what an Engine knows of its sandbox is the sandbox's to say (runtime/sandbox/spec.py); named
# here too for the code that has always imported it from this package
from runtime.sandbox.spec import SandboxContext as SandboxContext

NAME = "docker"
SOCKET_DIR = "svc-docker"  # under the sandbox dir, bind-mounted read-only into the sandbox
SANDBOX_SOCKET_DIR = "/run/kubelab-docker"
SANDBOX_SOCKET = SANDBOX_SOCKET_DIR + "/docker.sock"
API_VERSION = "1.41"  # what Debian bookworm's docker.io (20.10) speaks
MIN_API_VERSION = "1.24"
ENGINE_VERSION = "20.10.24-kubelab"


@dataclass(frozen=True)
class EngineLimits:
    """How many objects one sandbox's engine keeps (``docker create`` past ``containers``
    is refused, 403, with the count and what to remove), whatever their size: each costs
    runtimed memory, a file rewrite per change and, while running, descriptors. Bytes are
    the sandbox's disk quota's business: everything the engine stores is on that disk.

    ``images`` counts the student's image configs (intermediate build images too; the
    catalog's are not counted) and, separately, their tags."""

    containers: int = 100
    images: int = 500
    volumes: int = 100
    networks: int = 16  # user-defined; Docker's default pools give 30 at most anyway
    execs: int = 256  # exec instances kept (finished ones are forgotten first, oldest first)


def quota_message(kind: str, limit: int, remedy: str) -> str:
    return (
        f"this lab's Docker engine keeps at most {limit} {kind} per sandbox and that limit is reached: "
        f"remove some first ({remedy})"
    )
