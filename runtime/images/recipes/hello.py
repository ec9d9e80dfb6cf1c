"""``kubelab/hello:1`` and ``kubelab/hello:2``: the platform's own small web app, for rollouts.

A rolling update needs two versions of one image that both work, and a broken third that
does not exist (``kubelab/hello:3`` is deliberately absent: the pull fails, the rollout
stalls, ``kubectl rollout undo`` recovers). These are not upstream images under a
borrowed name: the ``kubelab/`` repository is the platform's own (in the runtime's store
they are ``kubelab-hello:1`` and ``kubelab-hello:2``; the catalog maps the references).

Each is ``busybox:1.35`` plus one small layer: ``/srv/www`` with an ``index.html`` that says
which version answers and from which host (the pod's name, filled in at start), a
``version`` file and a ``healthz`` page; ``CMD`` starts busybox's ``httpd`` in the
foreground on port 8080, logging each request to stderr (``kubectl logs`` shows them).
"""

from __future__ import annotations

import os

from runtime.images import tarutil
from runtime.images.recipes import BuildContext, BuiltImage, Recipe, busybox
from runtime.kernel.clock import format_ts

PORT = 8080
MTIME = 1_767_225_600  # 2026-01-01T00:00:00Z: a fixed time, so the layer is reproducible

# The page is written at start, so that it can name the pod (its hostname) that answered.
START = f"""#!/bin/sh
# kubelab/hello: write the page for this host, then serve it
set -e
cat > /srv/www/index.html <<EOF
<!doctype html>
<title>hello</title>
<h1>Hello from version $HELLO_VERSION</h1>
<p>served by $(hostname)</p>
EOF
echo "hello $HELLO_VERSION: serving /srv/www on port {PORT}" >&2
exec httpd -f -v -p {PORT} -h /srv/www
"""


def _build(version: str, ctx: BuildContext) -> BuiltImage:
    rootfs = ctx.work_dir / "rootfs"
    www = rootfs / "srv/www"
    www.mkdir(parents=True)
    for rel in ("srv", "srv/www"):
        (rootfs / rel).chmod(0o755)
    (www / "version").write_text(f"{version}\n")
    (www / "healthz").write_text("ok\n")
    start = rootfs / "usr/local/bin/hello"
    start.parent.mkdir(parents=True)
    for rel in ("usr", "usr/local", "usr/local/bin"):
        (rootfs / rel).chmod(0o755)
    start.write_text(START)
    start.chmod(0o755)
    for path in (www / "version", www / "healthz"):
        path.chmod(0o644)
    for path in [rootfs, *rootfs.rglob("*")]:
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)
    layer = ctx.work_dir / "layer.tar"
    stats = tarutil.tar_directory(rootfs, layer, mtime_clamp=MTIME)
    ctx.say(f"layer {stats.diff_id} ({stats.entries} entries)")
    return BuiltImage(
        layers=[layer],
        env=[f"PATH={busybox.PATH}", f"HELLO_VERSION={version}"],
        cmd=["/usr/local/bin/hello"],
        working_dir="/srv/www",
        created=format_ts(MTIME),
        comment=f"kubelab recipe kubelab/hello:{version}: busybox httpd serving a page that names its version",
        exposed_ports=(f"{PORT}/tcp",),
        move=True,
    )


def _recipe(version: str) -> Recipe:
    return Recipe(
        name=f"kubelab-hello:{version}",
        version="1",
        description=f"busybox:1.35 + a page saying 'Hello from version {version}', httpd on port {PORT}",
        build=lambda ctx: _build(version, ctx),
        base="busybox",
    )


V1 = _recipe("1")
V2 = _recipe("2")
