"""The ``docker`` sandbox service: a private Docker Engine API per sandbox, served by runtimed.

A sandbox created with ``services: ["docker"]`` (CLI ``--service docker``) has
``/var/run/docker.sock`` (a symlink to ``/run/kubelab-docker/docker.sock``, a read-only
bind mount of a host directory that holds only that socket) and ``DOCKER_BUILDKIT=0`` in
its environment, so the real docker CLI (Debian's docker.io, API 1.41) and the ``docker``
Python SDK talk to runtimed, which answers for that sandbox only. No dockerd, no nesting
of privileges: a student's containers are runc containers started by runtimed *inside*
the sandbox's user namespace, cgroup, network namespace and disk quota.

Layout (as moby's tree: ``api/server``, ``daemon``, ``image``/``layer``, ``builder``)
------
``service.py``
    ``DockerService`` (a ``SandboxManager`` service hook): one ``Engine`` per sandbox,
    the socket listener, lifecycle (start, stop, remove, re-adoption after a runtimed
    restart) and the host-side access graders use (``GET/POST
    /v1/sandboxes/{id}/docker/{path}`` on runtimed's own socket is forwarded to the
    same API).
``http/``
    The Docker Engine API. ``server.py``: a small HTTP/1.1 server of our own (aiohttp's
    cannot hijack a connection for attach/exec nor keep it writable after the client's
    half-close), chunked and multiplexed ``stdcopy`` streams, the threads blocking calls
    run on. ``api.py``: ``DockerAPI`` (serving, routing, ``/v1.NN`` version negotiation,
    bounds on calls in flight). One module per route group, as moby's
    ``api/server/router/<group>``: ``system``, ``events``, ``images``, ``distribution``,
    ``build``, ``containers`` (with ``docker cp``, ``diff``, ``export``), ``exec``,
    ``volumes``, ``networks``; ``base.py`` holds what they share. Errors are
    ``{"message": ...}`` with Docker's status codes.
``engine/``
    ``Engine`` (``engine/__init__.py``), a façade over one module per concern, as moby's
    ``daemon/``: ``core`` (state, shared vocabulary, the design notes), ``streams`` and
    ``io`` (output logs, attach, pumps), ``policy`` (refusals of unsafe requests),
    ``spec`` (runc's config.json), ``containers`` (lifecycle, restart policies, pause,
    update, the builder's ``run_step``), ``exec``, ``probes`` (health checks run;
    ``health.py``: their rules), ``networks``, ``volumes``, ``inspect`` (inspect, ps,
    top, stats, df, info), ``rootfs`` (diff, commit, export and the processes of
    ``docker cp``, whose tar side is ``archive.py``: run INSIDE the container, so runtimed
    never reads or extracts a student's tree as host root). ``events.py``: ``docker
    events`` (a bounded ring and subscribers); ``watch.py``: the engine's watcher, exit
    worker and timers (restart back-offs, probe intervals).
``images/``
    ``store.py``: ``EngineStore``, the sandbox's images (Docker image configs,
    content-addressed ids), tags, layers built by the student, the platform catalog
    (read-only, shared), the classic builder's cache (parent/child images), layers from
    outside (load, import, commit), prune, df, and the user-defined networks' records
    (they survive a runtimed restart). ``tarexport.py``: ``docker save``, ``docker load``
    (docker-archive and OCI layout, read in place as a tar index) and ``docker import``;
    ``distribution.py``: ``/distribution`` of catalog images; ``commit.py``: the ``--change
    instructions of commit and import; ``changes.py``: ``docker diff``, the container's
    upper dir walked against the image's layers (descriptor-relative, never following a
    symlink). Every layer a student sends or commits is decompressed, hashed and unpacked
    by the engine helper (``_enginehelper.py``, ``ingest`` op) in the sandbox's cgroup,
    not in runtimed (#12): no path leaves the layer, no link followed, no device, uids
    clamped to the sandbox's range, stopped at the disk's free space.
``build/``
    The classic builder: ``dockerfile.py`` (parser: escape directive, continuations, JSON
    and shell forms, ARG/ENV substitution), ``ignore.py`` (.dockerignore), ``builder.py``
    (stages, ``--target``, ``COPY --from``, ADD of local tarballs, layer cache reported as
    "Using cache"; RUN steps through ``Engine.run_step``).
``netns.py``
    The network, all inside the sandbox's netns: ``docker0`` (172.17.0.0/16) and one
    bridge ``br-<id12>`` per user-defined network (172.18.0.0/16, 172.19.0.0/16, ...), a
    veth per container, one nft table (published ports, masquerade, isolation between
    networks). Names resolve on user-defined networks only, through each container's
    ``/etc/hosts``, which the engine rewrites in place as the network's containers start
    and stop (no DNS server); ``network connect`` adds an ``eth<n>`` on another network.
``fsutil.py``
    Docker's ``--user`` resolution against the image's ``/etc/passwd`` and ``/etc/group``,
    read through runtime/kernel/safewrite.py (``openat2(RESOLVE_IN_ROOT)``), which the
    engine, the builder and the cluster's DNS also import directly to open paths beneath
    a root.

Which way imports go: ``service`` -> ``http`` -> ``build`` -> ``engine`` -> ``images``.
Nothing below ``http/`` imports it; the engine imports neither the builder nor http;
images import only leaves. Leaves, importable from any layer because they import no other
module of the package: this module (constants only, and it imports nothing: the engine
helper ``_enginehelper`` is started as ``python -m`` below it, runtime/kernel/children.py;
``SandboxContext`` is runtime/sandbox/spec.py's, imported from there), ``limits``
(``EngineLimits``, ``quota_message``), ``fsutil``, ``netns`` and the builder's parsers (``build/dockerfile.py``, used by
``images/commit.py`` for ``--change``; ``build/ignore.py``). No module imports a private
name from another subpackage. tests/runtime/dockerapi/test_layering.py checks all of this,
and that every module imports alone in a fresh interpreter.

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

NAME = "docker"
SOCKET_DIR = "svc-docker"  # under the sandbox dir, bind-mounted read-only into the sandbox
SANDBOX_SOCKET_DIR = "/run/kubelab-docker"
SANDBOX_SOCKET = SANDBOX_SOCKET_DIR + "/docker.sock"
API_VERSION = "1.41"  # what Debian bookworm's docker.io (20.10) speaks
MIN_API_VERSION = "1.24"
ENGINE_VERSION = "20.10.24-kubelab"
