"""The kubelet's volume manager: a pod's volumes, made once before its containers start
(``emptyDir``, ``configMap``/``secret``/``projected`` files written into a fresh engine
volume, ``persistentVolumeClaim``), and the removal of orphans. ``VolumeManager`` is a part
of ``Kubelet``, which mixes it in.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from runtime import errors
from runtime.kube.meta import Obj
from runtime.kube.node.podstate import POD_UID, PVC_NAME, PVC_NAMESPACE, VOLUME_NAME, ConfigError

if TYPE_CHECKING:
    from runtime.dockerapi.engine import Engine
    from runtime.kube.node.kubelet import ClusterHost


class VolumeManager:
    """Pod volumes; a part of ``Kubelet``."""

    engine: Engine
    host: ClusterHost

    if TYPE_CHECKING:  # ContainerRuntime's

        def _field_ref(self, pod: Obj, path: str, pod_ip: str) -> str: ...

    def _volume_dir(self, name: str) -> Path:
        return self.engine.volumes_dir / name / "_data"

    def _volume_name(self, pod: Obj, vol: Obj) -> str:
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            return f"k8s-pvc_{pod['metadata']['namespace']}_{claim}"
        return f"k8s_{pod['metadata']['uid']}_{vol['name']}"

    def _prepare_volumes(self, pod: Obj) -> None:
        """Every volume of the pod made (files written) before any of its containers start."""
        meta = pod["metadata"]
        ns = meta["namespace"]
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = self._volume_name(pod, vol)
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"].get("claimName", "")
                pvc = self.host.get("persistentvolumeclaims", ns, claim)
                if pvc is None:
                    raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
                if not self._volume_dir(name).is_dir():
                    self.engine.volume_create({"Name": name, "Labels": {PVC_NAMESPACE: ns, PVC_NAME: claim}})
                continue
            if self._volume_dir(name).is_dir():
                continue  # made already (by this kubelet before a restart): never rewritten
            if "hostPath" in vol:
                raise ConfigError(
                    f'MountVolume.SetUp failed for volume "{vol["name"]}" : hostPath volumes are not available '
                    "in this lab: pods run inside your sandbox and cannot mount the node's files (use emptyDir "
                    "or a PersistentVolumeClaim)"
                )
            files: dict[str, tuple[bytes, int]] = {}
            if "configMap" in vol or "secret" in vol:
                kind = "configMap" if "configMap" in vol else "secret"
                files = self._source_files(ns, vol, vol[kind] or {}, kind)
            elif "projected" in vol:
                proj = vol["projected"]
                mode = int(proj.get("defaultMode", 0o644))
                for src in proj.get("sources") or []:
                    files.update(self._projected_files(pod, vol, src, mode))
            elif "downwardAPI" in vol:
                dapi = vol["downwardAPI"]
                files = self._projected_files(pod, vol, {"downwardAPI": dapi}, int(dapi.get("defaultMode", 0o644)))
            elif "emptyDir" not in vol:
                kind = next((k for k in vol if k != "name"), "unknown")
                raise ConfigError(
                    f'MountVolume.SetUp failed for volume "{vol["name"]}" : {kind} volumes are not available in '
                    "this lab (emptyDir, configMap, secret, projected, downwardAPI and persistentVolumeClaim are)"
                )
            self._write_volume(pod, vol["name"], name, files)
            if "emptyDir" in vol:
                self._empty_dir_mode(name, (pod.get("spec") or {}).get("securityContext") or {})

    def _empty_dir_mode(self, name: str, psc: Obj) -> None:
        """An emptyDir is world-writable (0777), as kubelet makes it; with ``fsGroup`` it
        belongs to that group and is setgid, so what is made in it does too."""
        fd = os.open(self._volume_dir(name), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            mode = 0o777
            if psc.get("fsGroup") is not None:
                os.fchown(fd, -1, self.engine.ctx.uid_base + int(psc["fsGroup"]))
                mode |= 0o2000
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def _source_files(self, ns: str, vol: Obj, src: Obj, kind: str) -> dict[str, tuple[bytes, int]]:
        """Files of a configMap/secret volume or projection: keys, or ``items`` paths."""
        ref = src.get("name") if kind == "configMap" else (src.get("secretName") or src.get("name"))
        gr, label = ("configmaps", "configmap") if kind == "configMap" else ("secrets", "secret")
        obj = self.host.get(gr, ns, str(ref or ""))
        if obj is None:
            if src.get("optional"):
                return {}
            raise ConfigError(f'MountVolume.SetUp failed for volume "{vol["name"]}" : {label} "{ref}" not found')
        data: dict[str, bytes] = {}
        if kind == "configMap":
            data.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        else:
            data.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
            data.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
        mode = int(src.get("defaultMode", 0o644))
        items = src.get("items")
        if not items:
            return {k: (v, mode) for k, v in data.items()}
        out: dict[str, tuple[bytes, int]] = {}
        for it in items:
            key = it.get("key", "")
            if key not in data:
                if src.get("optional"):
                    continue
                raise ConfigError(
                    f'MountVolume.SetUp failed for volume "{vol["name"]}" : configmap references non-existent '
                    f"config key: {key}"
                    if kind == "configMap"
                    else f'MountVolume.SetUp failed for volume "{vol["name"]}" : references non-existent secret '
                    f"key: {key}"
                )
            out[str(it.get("path") or key)] = (data[key], int(it.get("mode", mode)))
        return out

    def _projected_files(self, pod: Obj, vol: Obj, src: Obj, mode: int) -> dict[str, tuple[bytes, int]]:
        ns = pod["metadata"]["namespace"]
        if "configMap" in src:
            return self._source_files(ns, vol, {"defaultMode": mode, **src["configMap"]}, "configMap")
        if "secret" in src:
            return self._source_files(ns, vol, {"defaultMode": mode, **src["secret"]}, "secret")
        if "serviceAccountToken" in src:
            tok = src["serviceAccountToken"]
            sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
            token = self.host.service_account_token(ns, sa, float(tok.get("expirationSeconds", 3607)))
            return {str(tok.get("path") or "token"): (token.encode(), mode)}
        if "downwardAPI" in src:
            out: dict[str, tuple[bytes, int]] = {}
            for it in src["downwardAPI"].get("items") or []:
                if "fieldRef" not in it:
                    raise ConfigError(
                        f'MountVolume.SetUp failed for volume "{vol["name"]}" : only fieldRef items of '
                        "downwardAPI volumes are supported in this lab"
                    )
                value = self._field_ref(pod, str(it["fieldRef"].get("fieldPath", "")), "")
                out[str(it["path"])] = (value.encode(), int(it.get("mode", mode)))
            return out
        return {}

    def _write_volume(self, pod: Obj, vname: str, name: str, files: dict[str, tuple[bytes, int]]) -> None:
        """Create the engine volume and write ``files`` into it: it is new, no container has
        had it yet, so nothing in it belongs to the student (paths are checked anyway)."""
        self.engine.volume_create({"Name": name, "Labels": {POD_UID: pod["metadata"]["uid"], VOLUME_NAME: vname}})
        try:
            self._write_files(vname, self._volume_dir(name), files)
        except BaseException:
            with contextlib.suppress(errors.RuntimeError):
                self.engine.volume_remove(name)
            raise

    def _write_files(self, vname: str, root: Path, files: dict[str, tuple[bytes, int]]) -> None:
        """Write ``files`` under ``root`` as host root, by descriptor: every directory is
        opened relative to its parent with O_NOFOLLOW, so even a volume a student got hold
        of first (the engine is theirs too) cannot lead a write out of it through a link."""
        uid = self.engine.ctx.uid_base
        dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        for rel, (data, mode) in files.items():
            parts = [p for p in rel.split("/") if p]
            if not parts or rel.startswith("/") or ".." in parts or "." in parts:
                raise ConfigError(f'MountVolume.SetUp failed for volume "{vname}" : invalid path {rel!r}')
            try:
                dfd = os.open(root, dir_flags)
                try:
                    for p in parts[:-1]:
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(p, 0o755, dir_fd=dfd)
                            os.chown(p, uid, uid, dir_fd=dfd, follow_symlinks=False)
                        nfd = os.open(p, dir_flags, dir_fd=dfd)
                        os.close(dfd)
                        dfd = nfd
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                    fd = os.open(parts[-1], flags, mode & 0o777, dir_fd=dfd)
                finally:
                    os.close(dfd)
            except OSError as e:
                raise ConfigError(
                    f'MountVolume.SetUp failed for volume "{vname}" : cannot write {rel!r}: {e.strerror}'
                ) from None
            try:
                os.write(fd, data)
                os.fchown(fd, uid, uid)
                os.fchmod(fd, mode & 0o777)
            finally:
                os.close(fd)

    def _remove_orphan_volumes(self, live: set[str]) -> bool:
        """Remove the volumes of pods that are gone; False if one could not go yet (in use)."""
        done = True
        for v in self.engine.volumes():
            uid = (v.get("Labels") or {}).get(POD_UID)
            if uid and uid not in live:
                try:
                    self.engine.volume_remove(v["Name"])
                except errors.RuntimeError:
                    done = False
        return done
