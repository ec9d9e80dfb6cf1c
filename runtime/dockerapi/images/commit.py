"""``--change``: Dockerfile instructions applied to an image config by ``docker commit`` and
``docker import`` (moby ``builder/dockerfile.BuildFromConfig``, ``daemon/commit.go``).

Only the instructions dockerd accepts there are applied (``validCommitCommands``): CMD,
ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, USER, VOLUME, WORKDIR. Any other is
refused with dockerd's message (``run is not a valid change command``), never dropped.
Words are expanded against the config's own ENV, as the builder does.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Sequence
from typing import Any

from runtime import errors
from runtime.dockerapi.build import dockerfile as dfparse

VALID = ("cmd", "entrypoint", "env", "expose", "healthcheck", "label", "onbuild", "user", "volume", "workdir")
DEFAULT_SHELL = ["/bin/sh", "-c"]


def _ports(specs: list[str]) -> list[str]:
    out: list[str] = []
    for spec in specs:
        port, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        start_s, _, end_s = port.partition("-")
        if proto not in ("tcp", "udp", "sctp") or not start_s.isdigit() or (end_s and not end_s.isdigit()):
            raise errors.BadRequest(f"invalid containerPort: {spec}")
        start, end = int(start_s), int(end_s or start_s)
        if end < start or end > 65535:
            raise errors.BadRequest(f"invalid containerPort: {spec}")
        out += [f"{p}/{proto}" for p in range(start, end + 1)]
    return out


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """``config`` (a container config: Cmd, Env, ...) with ``changes`` applied, as a new dict."""
    cfg = copy.deepcopy(config)
    for line in changes:
        if not line.strip():
            continue
        ins = dfparse.parse_line(line.strip())
        if ins.cmd not in VALID:
            raise errors.BadRequest(f"{ins.cmd} is not a valid change command")
        env = list(cfg.get("Env") or [])
        shell = list(cfg.get("Shell") or DEFAULT_SHELL)

        def word(w: str, env: list[str] = env) -> str:
            return dfparse.process(w, env)

        if ins.cmd in ("cmd", "entrypoint"):
            argv = list(ins.args) if ins.json else [*shell, ins.args[0] if ins.args else ""]
            if ins.cmd == "cmd":
                cfg["Cmd"] = argv
            else:
                cfg["Entrypoint"] = argv
        elif ins.cmd == "env":
            for raw_key, raw_value in ins.pairs():
                key, value = word(raw_key), word(raw_value)
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif ins.cmd == "label":
            labels = dict(cfg.get("Labels") or {})
            for raw_key, raw_value in ins.pairs():
                labels[word(raw_key)] = word(raw_value)
            cfg["Labels"] = labels
        elif ins.cmd == "expose":
            specs: list[str] = []
            for w in ins.args:
                specs += dfparse.process_words(w, env)
            exposed = dict(cfg.get("ExposedPorts") or {})
            exposed.update({p: {} for p in _ports(specs)})
            cfg["ExposedPorts"] = exposed
        elif ins.cmd == "user":
            cfg["User"] = word(ins.args[0])
        elif ins.cmd == "volume":
            volumes = dict(cfg.get("Volumes") or {})
            for v in ins.args:
                path = word(v)
                if not path.strip():
                    raise errors.BadRequest("VOLUME specified can not be an empty string")
                volumes[path] = {}
            cfg["Volumes"] = volumes
        elif ins.cmd == "workdir":
            requested = word(ins.args[0])
            current = str(cfg.get("WorkingDir") or "/")
            cfg["WorkingDir"] = posixpath.normpath(posixpath.join(current, requested))
        elif ins.cmd == "onbuild":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), ins.expression.strip()]
        elif ins.cmd == "healthcheck":
            assert ins.health is not None
            cfg["Healthcheck"] = {k: v for k, v in dict(ins.health).items() if k == "Test" or v}
    return cfg
