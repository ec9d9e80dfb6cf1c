"""Named and anonymous volumes (moby's ``volume/``, ``daemon/volumes.go``): directories under
``R/volumes``, their records, ``docker volume ls/create/inspect/rm/prune``."""

from __future__ import annotations

import builtins
import json
import os
import re
import secrets
from typing import Any

from runtime import errors
from runtime.dockerapi.engine.core import EngineBase, _du
from runtime.dockerapi.images.store import Forbidden, NotFound
from runtime.dockerapi.limits import quota_message
from runtime.images.store import safe_rmtree
from runtime.kernel.clock import micro_ts


class Volumes(EngineBase):
    def _volume_path(self, name: str) -> str:
        return str(self.volumes_dir / name / "_data")

    def _volume_meta(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.volumes_dir / name / "meta.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _ensure_volume(self, name: str, *, anonymous: bool = False, labels: dict[str, str] | None = None) -> str:
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name):
            raise errors.BadRequest(
                f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
            )
        d = self.volumes_dir / name
        if not (d / "_data").is_dir():
            if sum(1 for _ in self.volumes_dir.iterdir()) >= self.limits.volumes:
                raise Forbidden(quota_message("volumes", self.limits.volumes, "docker volume rm, docker volume prune"))
            d.mkdir(mode=0o711, exist_ok=True)
            (d / "meta.json").write_text(
                json.dumps({"CreatedAt": micro_ts(), "Labels": labels or {}, "anonymous": anonymous})
            )
            (d / "_data").mkdir(mode=0o755)
            os.chown(d / "_data", self.ctx.uid_base, self.ctx.uid_base)
        return name

    def _volume_json(self, name: str) -> dict[str, Any]:
        meta = self._volume_meta(name)
        return {
            "CreatedAt": meta.get("CreatedAt", ""),
            "Driver": "local",
            "Labels": meta.get("Labels") or None,
            "Mountpoint": f"/var/lib/docker/volumes/{name}/_data",
            "Name": name,
            "Options": None,
            "Scope": "local",
        }

    def _volume_users(self, name: str) -> builtins.list[str]:
        with self._lock:
            return [c.id for c in self._containers.values() if any(m.get("Name") == name for m in c.mounts)]

    def volumes(self) -> builtins.list[dict[str, Any]]:
        return [self._volume_json(d.name) for d in sorted(self.volumes_dir.iterdir()) if (d / "_data").is_dir()]

    def volume_create(self, body: dict[str, Any]) -> dict[str, Any]:
        driver = body.get("Driver") or "local"
        if driver != "local":
            raise errors.NotAvailable(f"volume driver {driver!r} is not available in this lab (only local)")
        name = str(body.get("Name") or "") or secrets.token_hex(32)
        with self._lock:
            self._ensure_volume(name, labels=body.get("Labels") or {})
        return self._volume_json(name)

    def volume_inspect(self, name: str) -> dict[str, Any]:
        if (
            not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name or "")
            or not (self.volumes_dir / name / "_data").is_dir()
        ):
            raise NotFound(f"get {name}: no such volume")
        return self._volume_json(name)

    def volume_remove(self, name: str, *, force: bool = False) -> None:
        self.volume_inspect(name)
        users = self._volume_users(name)
        if users:
            raise errors.Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        safe_rmtree(self.volumes_dir / name)

    def volume_prune(self) -> dict[str, Any]:
        deleted: builtins.list[str] = []
        reclaimed = 0
        for v in self.volumes():
            name = v["Name"]
            if self._volume_users(name):
                continue
            reclaimed += _du(self.volumes_dir / name / "_data")
            safe_rmtree(self.volumes_dir / name)
            deleted.append(name)
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}
