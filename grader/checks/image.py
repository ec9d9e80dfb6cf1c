"""``image``: properties of an image in a Docker Engine, through the ``docker`` SDK.

Fields (``image`` is required, ``name:tag`` in the student's engine):
``exists`` (default true), ``max_layers``, ``max_size_mb`` (10^6 bytes),
``user``, ``workdir``, ``exposed_ports`` (["80/tcp"] or [80]), ``labels``
(mapping that must be present), ``cmd`` / ``entrypoint`` (lists), ``env_contains``
("KEY=VALUE" or "KEY", string or list), ``history_contains``, ``base`` (the
FROM image: its recorded ``org.opencontainers.image.base.name`` label, or an
image of that name in the engine whose layers are a prefix of this one's),
``has_file`` / ``lacks_file`` (paths in the final filesystem), and efficiency
the way ``dive`` computes it: ``min_efficiency`` (0 to 1) and ``max_wasted_mb``,
where wasted bytes are file contents written in one layer and removed or
overwritten in a later one, and efficiency = 1 - wasted / all bytes written.

The engine URL comes from the target: for a lab with ``services: [docker]`` it is the
student's own engine in runtimed (``runtime.dockerapi``; the backend's ``docker_url``),
else ``GRADER_DOCKER_URL`` if an operator points every lab at one engine.
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from grader.checks.base import CheckError, Outcome, Target, TargetUnavailable, as_list, register, shorten

SAVE_LIMIT = 4 * 1024**3  # an image bigger than this is not analysed file by file
BASE_LABEL = "org.opencontainers.image.base.name"


@dataclass
class FsReport:
    files: set[str] = field(default_factory=set)
    total_bytes: int = 0
    wasted_bytes: int = 0

    @property
    def efficiency(self) -> float:
        return 1.0 if self.total_bytes == 0 else 1.0 - self.wasted_bytes / self.total_bytes


def _norm(name: str) -> str:
    return "/" + posixpath.normpath(name.lstrip("./").lstrip("/")) if name.strip("./") else "/"


def analyse_layers(layers: list[IO[bytes]]) -> FsReport:
    """Replay layer tars in order: the final set of paths, and the bytes wasted
    (written in one layer, then deleted or overwritten by a later one)."""
    report = FsReport()
    live: dict[str, int] = {}  # path -> size of its current version
    for fileobj in layers:
        with tarfile.open(fileobj=fileobj, mode="r|*") as layer:
            for member in layer:
                path = _norm(member.name)
                base = posixpath.basename(path)
                parent = posixpath.dirname(path)
                if base == ".wh..wh..opq":
                    prefix = parent.rstrip("/") + "/"
                    for gone in [p for p in live if p.startswith(prefix)]:
                        report.wasted_bytes += live.pop(gone)
                    continue
                if base.startswith(".wh."):
                    victim = posixpath.join(parent, base[4:])
                    for gone in [p for p in live if p == victim or p.startswith(victim + "/")]:
                        report.wasted_bytes += live.pop(gone)
                    continue
                size = member.size if member.isfile() else 0
                report.total_bytes += size
                if path in live:
                    report.wasted_bytes += live[path]
                live[path] = size
    report.files = set(live)
    return report


def _save_and_analyse(image: Any) -> FsReport:
    with tempfile.TemporaryFile() as spool:
        written = 0
        for chunk in image.save(named=False):
            written += len(chunk)
            if written > SAVE_LIMIT:
                raise CheckError("the image is too big to inspect its files")
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:") as outer:
            manifest_member = outer.extractfile("manifest.json")
            if manifest_member is None:
                raise CheckError("the engine's image export has no manifest.json")
            manifest = json.load(manifest_member)
            names = manifest[0]["Layers"]
            layers: list[IO[bytes]] = []
            for name in names:
                member = outer.extractfile(name)
                if member is None:
                    raise CheckError(f"the engine's image export lacks the layer {name}")
                layers.append(member)
            return analyse_layers(layers)


def _port(value: Any) -> str:
    text = str(value)
    return text if "/" in text else f"{text}/tcp"


@register(
    "image",
    required={"image"},
    optional={
        "exists",
        "max_layers",
        "max_size_mb",
        "user",
        "exposed_ports",
        "labels",
        "cmd",
        "entrypoint",
        "env_contains",
        "history_contains",
        "base",
        "has_file",
        "lacks_file",
    },
    service="docker",
)
def check_image(spec: Mapping[str, Any], target: Target, timeout: float) -> Outcome:
    import docker
    from docker import errors as docker_errors

    name = spec.get("image")
    if not isinstance(name, str) or not name:
        raise CheckError("an image check needs an `image` (name:tag)")
    if not target.docker_url:
        raise TargetUnavailable("This check needs the lab's Docker engine, and this lab has none running.")
    want_exists = bool(spec.get("exists", True))
    tls_dir = tempfile.TemporaryDirectory(prefix="kl-docker-ca-")
    try:
        client = docker.DockerClient(
            base_url=target.docker_url, timeout=max(1, int(timeout)), **_relay_options(target, tls_dir.name)
        )
        # the host side of the sandbox's engine wants the sandbox's credential (runtime.auth);
        # None: the runtime client's own default, $RUNTIME_TOKEN (tests, operators)
        token = target.docker_token if target.docker_token is not None else os.environ.get("RUNTIME_TOKEN")
        if token:
            client.api.headers["Authorization"] = f"Bearer {token}"
        if target.docker_url.startswith("https://"):
            # requests lets $REQUESTS_CA_BUNDLE override the CA given (and $HTTPS_PROXY route):
            # the relay is trusted by the runtimed CA alone and reached directly
            client.api.trust_env = False
    except docker_errors.DockerException as exc:
        tls_dir.cleanup()
        raise TargetUnavailable(f"The Docker engine is not reachable: {exc}") from exc
    try:
        try:
            image = client.images.get(name)
        except docker_errors.ImageNotFound:
            return Outcome(not want_exists, f"There is no image {name} in your engine.")
        if not want_exists:
            return Outcome(False, f"The image {name} exists but should not.")
        return _inspect(spec, client, image, name)
    except docker_errors.ImageNotFound as exc:
        return Outcome(False, shorten(f"An image this check needs is missing: {exc}", 500))
    except docker_errors.APIError as exc:
        return Outcome(False, shorten(f"The engine refused: {exc.explanation or exc}", 500))
    except (docker_errors.DockerException, OSError) as exc:
        # requests' ConnectionError and ReadTimeout are OSErrors.
        if "timed out" in str(exc).lower():
            return Outcome(False, f"The engine did not answer within {timeout:g} s.", timed_out=True)
        raise TargetUnavailable(f"The Docker engine is not reachable: {exc}") from exc
    finally:
        client.close()
        tls_dir.cleanup()


# runtime.dockerapi.API_VERSION: said up front for the relay, whose every route wants the token
# the SDK would only attach after its version negotiation
RELAY_API_VERSION = "1.41"


def _relay_options(target: Target, tmp: str) -> dict[str, Any]:
    """For an engine reached through a lab node's runtimed (``https://``: SANDBOX_BACKEND=kubernetes,
    runtime.relay): TLS checked against the runtimed CA only, and the API version given."""
    from docker.tls import TLSConfig

    if not target.docker_url or not target.docker_url.startswith("https://"):
        return {}
    if not target.runtime_ca:
        raise TargetUnavailable("The lab node's Docker engine needs the runtimed CA (RUNTIME_CA), and none is set.")
    ca = target.runtime_ca
    if "-----BEGIN" in ca:
        path = Path(tmp) / "ca.crt"
        path.write_text(ca, encoding="ascii")
        ca = str(path)
    return {"tls": TLSConfig(ca_cert=ca, verify=ca), "version": RELAY_API_VERSION}


def _inspect(spec: Mapping[str, Any], client: Any, image: Any, name: str) -> Outcome:
    attrs = image.attrs
    config = attrs.get("Config") or {}
    layers = list((attrs.get("RootFS") or {}).get("Layers") or [])
    problems: list[str] = []
    if "max_layers" in spec and len(layers) > int(spec["max_layers"]):
        problems.append(f"{name} has {len(layers)} layers, at most {int(spec['max_layers'])} allowed")
    if "max_size_mb" in spec:
        size_mb = int(attrs.get("Size") or 0) / 1_000_000
        if size_mb > float(spec["max_size_mb"]):
            problems.append(f"{name} is {size_mb:.1f} MB, at most {spec['max_size_mb']} MB allowed")
    for key, field_name in (("user", "User"), ("workdir", "WorkingDir")):
        if key in spec and str(config.get(field_name) or "") != str(spec[key]):
            problems.append(f"{key} is {shorten(config.get(field_name) or '(not set)')!r}, expected {spec[key]!r}")
    if "exposed_ports" in spec:
        exposed = set((config.get("ExposedPorts") or {}).keys())
        for port in as_list(spec["exposed_ports"]):
            if _port(port) not in exposed:
                problems.append(f"port {_port(port)} is not exposed (exposed: {', '.join(sorted(exposed)) or 'none'})")
    if "labels" in spec:
        if not isinstance(spec["labels"], Mapping):
            raise CheckError("`labels` must be a mapping")
        labels = config.get("Labels") or {}
        for key, value in spec["labels"].items():
            if str(labels.get(key)) != str(value):
                problems.append(f"label {key} is {shorten(labels.get(key))!r}, expected {shorten(value)!r}")
    for key, field_name in (("cmd", "Cmd"), ("entrypoint", "Entrypoint")):
        if key in spec:
            want = [str(v) for v in as_list(spec[key])]
            got = [str(v) for v in (config.get(field_name) or [])]
            if got != want:
                problems.append(f"{key.upper()} is {shorten(got)}, expected {shorten(want)}")
    env = [str(e) for e in config.get("Env") or []]
    for item in as_list(spec.get("env_contains")):
        item = str(item)
        if not any(e == item or (("=" not in item) and e.split("=", 1)[0] == item) for e in env):
            problems.append(f"the environment does not set {shorten(item)!r}")
    if "history_contains" in spec:
        history = " ".join(str(h.get("CreatedBy", "")) for h in image.history())
        for needle in as_list(spec["history_contains"]):
            if str(needle) not in history:
                problems.append(f"no build step contains {shorten(needle)!r}")
    if "base" in spec:
        problems.extend(_base_problems(client, config, layers, str(spec["base"])))
    file_keys = ("has_file", "lacks_file", "min_efficiency", "max_wasted_mb")
    if any(k in spec for k in file_keys):
        report = _save_and_analyse(image)
        for path in as_list(spec.get("has_file")):
            if _norm(str(path)) not in report.files:
                problems.append(f"{path} is not in the image")
        for path in as_list(spec.get("lacks_file")):
            if _norm(str(path)) in report.files:
                problems.append(f"{path} is in the image but should not be")
        if "min_efficiency" in spec and report.efficiency < float(spec["min_efficiency"]):
            problems.append(
                f"efficiency is {report.efficiency:.0%} ({report.wasted_bytes} bytes written then removed or "
                f"overwritten in a later layer), at least {float(spec['min_efficiency']):.0%} expected"
            )
        if "max_wasted_mb" in spec and report.wasted_bytes / 1_000_000 > float(spec["max_wasted_mb"]):
            problems.append(
                f"{report.wasted_bytes / 1_000_000:.1f} MB are wasted in layers, at most {spec['max_wasted_mb']} MB"
            )
    if problems:
        return Outcome(False, "\n".join(problems))
    return Outcome(True, f"{name} is as expected ({len(layers)} layers).")


def _base_problems(client: Any, config: Mapping[str, Any], layers: list[str], base: str) -> list[str]:
    from docker import errors as docker_errors

    recorded = (config.get("Labels") or {}).get(BASE_LABEL)
    if recorded:
        return [] if recorded == base else [f"the image is built FROM {shorten(recorded)!r}, expected {base!r}"]
    try:
        base_layers = list((client.images.get(base).attrs.get("RootFS") or {}).get("Layers") or [])
    except docker_errors.ImageNotFound:
        return [f"the base image {base} is not in your engine, so the base cannot be confirmed"]
    if base_layers and layers[: len(base_layers)] == base_layers:
        return []
    return [f"the image is not built FROM {base}"]
