"""``nginx:1.22``: Debian bookworm's nginx 1.22 on ``debian:bookworm``, configured like Docker Hub's.

``debian:bookworm`` plus one layer: ``apt-get install --no-install-recommends nginx``
(Debian's package: the nginx binary with its core modules, ``/etc/nginx`` with
``sites-enabled/default`` serving ``/var/www/html`` on port 80), then what the official
image does to behave as a container: ``/var/log/nginx/access.log`` -> ``/dev/stdout`` and
``error.log`` -> ``/dev/stderr`` (so ``docker logs`` shows them), ``CMD ["nginx", "-g",
"daemon off;"]``, ``EXPOSE 80``, ``STOPSIGNAL SIGQUIT`` (a graceful shutdown).

Differences from Docker Hub's ``nginx:1.22``: Debian's build and layout (config in
``/etc/nginx/sites-enabled/default``, web root ``/var/www/html`` with Debian's welcome page,
workers run as ``www-data``), no ``/docker-entrypoint.sh`` templating.
"""

from __future__ import annotations

from pathlib import Path

from runtime.images.recipes import BuildContext, BuiltImage, Recipe, debian

PACKAGES = ("nginx",)


def _container_logs(root: Path) -> None:
    logs = root / "var/log/nginx"
    logs.mkdir(parents=True, exist_ok=True)
    for name, target in (("access.log", "/dev/stdout"), ("error.log", "/dev/stderr")):
        (logs / name).unlink(missing_ok=True)
        (logs / name).symlink_to(target)


def build(ctx: BuildContext) -> BuiltImage:
    base = ctx.image_layers("debian:bookworm")
    layer = debian.apt_layer(ctx, base, PACKAGES, finish=_container_logs)
    return BuiltImage(
        layers=[layer],
        env=[f"PATH={debian.PATH}"],
        cmd=["nginx", "-g", "daemon off;"],
        exposed_ports=("80/tcp",),
        stop_signal="SIGQUIT",
        comment="kubelab recipe nginx:1.22: apt-get install --no-install-recommends nginx",
        move=True,
    )


RECIPE = Recipe(
    name="nginx:1.22",
    version="1",
    description="debian:bookworm + Debian's nginx 1.22, logs to stdout/stderr, daemon off",
    build=build,
    base="debian:bookworm",
)
