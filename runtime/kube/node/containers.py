"""The kubelet's container runtime part (kubelet's kuberuntime): the pod's infra container
(its network namespace, hostPorts, sysctls) and starting its init and app containers in the
engine (image, env and ``$(VAR)`` expansion, command, security context, DNS, Service
variables, restarts with back-off). ``ContainerRuntime`` is a part of ``Kubelet``, which mixes
it in.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from runtime import errors
from runtime.dockerapi import netns
from runtime.images import catalog
from runtime.kernel.clock import parse_epoch
from runtime.kernel.netns import run as netns_run
from runtime.kube.machinery.quantity import Quantity, QuantityError
from runtime.kube.meta import Obj
from runtime.kube.node.podstate import (
    CONTAINER_NAME,
    INFRA,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    RESTART_COUNT,
    Backoff,
    ConfigError,
    Instance,
    PodRuntime,
)

if TYPE_CHECKING:
    from runtime.dockerapi.engine import Engine
    from runtime.kube.node.kubelet import ClusterHost

log = logging.getLogger("runtime.kube.node.kubelet")  # the kubelet's log

INFRA_IMAGE = "busybox:1.35"
BACKOFF_RESET = 600.0  # a container that ran this long restarts with the initial back-off
VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for the back-off messages: ``10s``, ``1m20s``, ``500ms``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"


def _pod_network_config(pod: Obj) -> Obj:
    """What the infra container (the pod's network namespace) gets from the pod: its
    containers' ``hostPort``s published on the node's (the sandbox's) address, and the
    pod's sysctls (admission lets through ``net.*`` only: they belong to this namespace)."""
    spec = pod.get("spec") or {}
    hc: Obj = {}
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                key = f"{p.get('containerPort')}/{str(p.get('protocol') or 'TCP').lower()}"
                bind = {"HostIp": str(p.get("hostIP") or ""), "HostPort": str(p["hostPort"])}
                hc.setdefault("PortBindings", {}).setdefault(key, []).append(bind)
    sysctls = {
        str(s.get("name")): str(s.get("value", "")) for s in (spec.get("securityContext") or {}).get("sysctls") or []
    }
    if sysctls:
        hc["Sysctls"] = sysctls
    return hc


def _verify_run_as_non_root(pod: Obj, c: Obj, sc: Obj, image_user: str) -> None:
    """kubelet's verifyRunAsNonRoot, with its messages (``sc``: the effective context)."""
    if not sc.get("runAsNonRoot"):
        return
    meta = pod["metadata"]
    who = f'(pod: "{meta["name"]}_{meta["namespace"]}({meta["uid"]})", container: {c["name"]})'
    if sc.get("runAsUser") is not None:
        if int(sc["runAsUser"]) == 0:
            raise ConfigError(f"container's runAsUser breaks non-root policy {who}")
        return
    user = image_user.partition(":")[0]
    if not user or user == "0":
        raise ConfigError(f"container has runAsNonRoot and image will run as root {who}")
    if not user.isdigit():
        raise ConfigError(
            f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {who}"
        )


class ContainerRuntime:
    """The infra container and starting containers; a part of ``Kubelet``."""

    engine: Engine
    host: ClusterHost
    node: str
    network: str
    cluster_dns: str | None
    backoff_initial: float
    backoff_max: float
    retry_period: float

    if TYPE_CHECKING:  # Kubelet's and VolumeManager's

        def _ensure_network(self) -> None: ...
        def _instances(self, cs: list[dict[str, Any]], name: str) -> list[Instance]: ...
        def _once(self, rt: PodRuntime, pod: Obj, typ: str, reason: str, message: str) -> None: ...
        def _wake_in(self, seconds: float) -> None: ...
        def _volume_name(self, pod: Obj, vol: Obj) -> str: ...

    # -- infra container -------------------------------------------------------------------------

    def _labels(self, pod: Obj, cname: str, restarts: int) -> dict[str, str]:
        meta = pod["metadata"]
        return {
            POD_NAME: meta["name"],
            POD_NAMESPACE: meta["namespace"],
            POD_UID: meta["uid"],
            CONTAINER_NAME: cname,
            RESTART_COUNT: str(restarts),
        }

    def _cname(self, pod: Obj, cname: str, restarts: int) -> str:
        meta = pod["metadata"]
        return f"k8s_{cname}_{meta['name']}_{meta['namespace']}_{meta['uid']}_{restarts}"

    def _ensure_infra(self, pod: Obj, rt: PodRuntime, cs: list[dict[str, Any]]) -> str | None:
        inst = self._instances(cs, INFRA)
        if inst and inst[-1].running:
            for old in inst[:-1]:
                with contextlib.suppress(errors.RuntimeError):
                    self.engine.remove(old.id, force=True)
            return inst[-1].id
        for old in inst:
            with contextlib.suppress(errors.RuntimeError):
                self.engine.remove(old.id, force=True)
        attempt = (inst[-1].restarts + 1) if inst else 0
        try:
            self._ensure_network()
            cid, _ = self.engine.create(
                {
                    "Image": INFRA_IMAGE,
                    "Cmd": ["sleep", "infinity"],
                    "Hostname": pod["metadata"]["name"][:63],
                    "Labels": self._labels(pod, INFRA, attempt),
                    "HostConfig": {"NetworkMode": self.network, **_pod_network_config(pod)},
                },
                name=self._cname(pod, INFRA, attempt),
                internal=True,
            )
            self.engine.start(cid)
            self._hairpin(cid)
        except errors.RuntimeError as exc:
            msg = f"Failed to create pod sandbox: {exc}"
            self._once(rt, pod, "Warning", "FailedCreatePodSandBox", msg)
            self._wake_in(self.retry_period)
            return None
        return cid

    def _hairpin(self, infra: str) -> None:
        """kubelet's ``--hairpin-mode=hairpin-veth``: bridged pod traffic passes netfilter
        (kube-proxy's DNAT, NetworkPolicies), so a pod's connection to its own Service is sent
        back out of the bridge port it came in by, which a port only does in hairpin mode."""
        try:
            argv = ["bridge", "link", "set", "dev", netns.veth_name(infra), "hairpin", "on"]
            netns_run(self.engine.ctx.pid, argv, place=self.engine.place)
        except errors.RuntimeError as exc:  # the pod runs; only reaching itself by its Service fails
            log.warning("kubelet of node %s: no hairpin mode for %s: %s", self.node, infra[:12], exc)

    # -- starting containers ----------------------------------------------------------------------

    def _maybe_start(
        self, pod: Obj, rt: PodRuntime, c: Obj, inst: list[Instance], infra: str, pod_ip: str, *, init: bool
    ) -> None:
        """Start (a new instance of) container ``c`` unless its back-off holds it."""
        cur = inst[-1] if inst else None
        name = c["name"]
        meta = pod["metadata"]
        if cur is not None:
            b = rt.backoff.get(name)
            if b is None or b.seen != cur.finished:
                ran = parse_epoch(cur.finished) - parse_epoch(cur.started)
                if b is None or ran >= BACKOFF_RESET:
                    b = Backoff(cur.finished, parse_epoch(cur.finished), 0.0, self.backoff_initial)
                else:
                    b = Backoff(
                        cur.finished, parse_epoch(cur.finished) + b.next, b.next, min(b.next * 2, self.backoff_max)
                    )
                rt.backoff[name] = b
                if b.shown:
                    self.host.event(
                        pod,
                        "Warning",
                        "BackOff",
                        f"Back-off restarting failed container {name} in pod {meta['name']}_{meta['namespace']}"
                        f"({meta['uid']})",
                    )
            if time.time() < b.until:
                self._wake_in(b.until - time.time())  # the back-off's end: start it then
                rt.waiting[name] = (
                    "CrashLoopBackOff",
                    f"back-off {go_duration(b.shown)} restarting failed container={name} "
                    f"pod={meta['name']}_{meta['namespace']}({meta['uid']})",
                )
                return
        image = str(c.get("image") or "")
        pull_key = "pull:" + name
        try:
            self.engine.store.resolve(image)
        except errors.RuntimeError:
            pb = rt.backoff.get(pull_key)
            if pb is not None and time.time() < pb.until:
                self._wake_in(pb.until - time.time())
                rt.waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
                self._once(rt, pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
                return
            delay = self.backoff_initial if pb is None else min(pb.next * 2, self.backoff_max)
            rt.backoff[pull_key] = Backoff("", time.time() + delay, delay, delay)
            self._wake_in(delay)  # pull again then (the student may have built it meanwhile)
            msg = (
                f'Failed to pull image "{image}": this lab has no registry and the image is neither in the '
                f"catalog nor built in your sandbox (the images this lab has: {catalog.available()}; or "
                "docker build -t NAME:TAG .)"
            )
            rt.waiting[name] = ("ErrImagePull", msg)
            self.host.event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
            self.host.event(pod, "Warning", "Failed", msg)
            self.host.event(pod, "Warning", "Failed", "Error: ErrImagePull")
            return
        rt.backoff.pop(pull_key, None)
        restarts = cur.restarts + 1 if cur is not None else 0
        try:
            body = self._container_body(pod, c, infra, pod_ip, restarts)
        except ConfigError as exc:
            rt.waiting[name] = ("CreateContainerConfigError", str(exc))
            self._once(rt, pod, "Warning", "Failed", f"Error: {exc}")
            return
        self.host.event(pod, "Normal", "Pulled", f'Container image "{image}" already present on machine')
        try:
            cid, _ = self.engine.create(body, name=self._cname(pod, name, restarts), internal=True)
        except errors.RuntimeError as exc:
            rt.waiting[name] = ("CreateContainerError", str(exc))
            self._once(rt, pod, "Warning", "Failed", f"Error: {exc}")
            self._wake_in(self.retry_period)
            return
        self.host.event(pod, "Normal", "Created", f"Created container: {name}")
        for old in inst[:-1]:  # keep only the previous instance (logs --previous)
            with contextlib.suppress(errors.RuntimeError):
                self.engine.remove(old.id, force=True)
        try:
            self.engine.start(cid)
        except errors.RuntimeError as exc:
            self.host.event(pod, "Warning", "Failed", f"Error: failed to start container {name!r}: {exc}")
            self._wake_in(self.retry_period)
            return
        self.host.event(pod, "Normal", "Started", f"Started container {name}")
        self._wake_in(0.0)  # look at it again at once: its probes' clocks start when it is seen running

    def _container_body(self, pod: Obj, c: Obj, infra: str, pod_ip: str, restarts: int) -> Obj:
        spec = pod.get("spec") or {}
        env = self._env(pod, c, pod_ip)
        envmap = dict(env)

        def expand(s: str) -> str:
            return VAR_REF.sub(lambda m: "$" if m.group(0) == "$$" else envmap.get(m.group(1), m.group(0)), s)

        hc: Obj = {"NetworkMode": f"container:{infra}", "Mounts": []}
        vols = {v["name"]: v for v in spec.get("volumes") or []}
        for m in c.get("volumeMounts") or []:
            if m.get("subPath") or m.get("subPathExpr"):
                raise ConfigError(f'subPath mounts are not available in this lab (volume "{m.get("name")}")')
            vol = vols.get(m.get("name", ""))
            if vol is None:
                raise ConfigError(f'cannot find volume "{m.get("name")}" to mount into container "{c["name"]}"')
            ro = bool(m.get("readOnly")) or any(k in vol for k in ("configMap", "secret", "projected", "downwardAPI"))
            hc["Mounts"].append(
                {"Type": "volume", "Source": self._volume_name(pod, vol), "Target": m["mountPath"], "ReadOnly": ro}
            )
        limits = (c.get("resources") or {}).get("limits") or {}
        try:
            if "memory" in limits:
                hc["Memory"] = int(Quantity.parse(limits["memory"]).value)
            if "cpu" in limits:
                hc["NanoCpus"] = int(Quantity.parse(limits["cpu"]).value * 10**9)
        except QuantityError as exc:
            raise ConfigError(str(exc)) from None
        hc.update(self._dns(pod))
        sc = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
        body: Obj = {
            "Image": c["image"],
            "Hostname": pod["metadata"]["name"][:63],
            "Env": [f"{k}={v}" for k, v in env],
            "Labels": self._labels(pod, c["name"], restarts),
            "Tty": bool(c.get("tty")),
            "OpenStdin": bool(c.get("stdin")),
            "StdinOnce": bool(c.get("stdinOnce")),
            "HostConfig": hc,
        }
        if c.get("command") is not None:
            body["Entrypoint"] = [expand(str(x)) for x in c["command"]] or [""]
        if c.get("args") is not None:
            body["Cmd"] = [expand(str(x)) for x in c["args"]]
        if c.get("workingDir"):
            body["WorkingDir"] = c["workingDir"]
        image_user = str((self.engine.store.resolve(c["image"]).config.get("config") or {}).get("User") or "")
        _verify_run_as_non_root(pod, c, sc, image_user)
        if sc.get("runAsUser") is not None or sc.get("runAsGroup") is not None:
            user = str(sc["runAsUser"]) if sc.get("runAsUser") is not None else image_user.partition(":")[0]
            body["User"] = user + (f":{sc['runAsGroup']}" if sc.get("runAsGroup") is not None else "")
        # admission (apiserver/podsecurity.py) refused what the engine cannot give
        caps = (c.get("securityContext") or {}).get("capabilities") or {}
        if caps.get("add"):
            hc["CapAdd"] = [str(x) for x in caps["add"]]
        if caps.get("drop"):
            hc["CapDrop"] = [str(x) for x in caps["drop"]]
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
            hc["ReadonlyRootfs"] = True
        psc = spec.get("securityContext") or {}
        groups = [str(g) for g in psc.get("supplementalGroups") or []]
        if psc.get("fsGroup") is not None:
            groups.append(str(psc["fsGroup"]))
        if groups:
            hc["GroupAdd"] = groups
        return body

    def _dns(self, pod: Obj) -> Obj:
        """The engine's ``Dns``/``DnsSearch``/``DnsOptions`` for the pod's ``dnsPolicy`` and
        ``dnsConfig``, merged as kubelet does (``Default``: the sandbox's own resolv.conf)."""
        spec = pod.get("spec") or {}
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        cfg = spec.get("dnsConfig") or {}
        servers: list[str] = []
        search: list[str] = []
        options: list[str] = []
        if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and self.cluster_dns:
            ns = pod["metadata"]["namespace"]
            servers = [self.cluster_dns]
            search = [f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
            options = ["ndots:5"]
        elif policy != "None" and not cfg:
            return {}
        servers += [str(x) for x in cfg.get("nameservers") or [] if str(x) not in servers]
        search += [str(x) for x in cfg.get("searches") or [] if str(x) not in search]
        for o in cfg.get("options") or []:
            name = str(o.get("name", ""))
            options = [x for x in options if x.split(":", 1)[0] != name]
            options.append(f"{name}:{o['value']}" if o.get("value") is not None else name)
        out: Obj = {}
        if servers:
            out["Dns"] = servers[:3]
        if search:
            out["DnsSearch"] = search[:32]
        if options:
            out["DnsOptions"] = options
        return out

    def _service_env(self, pod: Obj) -> dict[str, str]:
        """Docker-link style variables of the Services of the pod's namespace that exist now
        (``enableServiceLinks``, default true) and always of ``default/kubernetes``."""
        ns = pod["metadata"]["namespace"]
        links = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
        out: dict[str, str] = {}
        for svc in sorted(self.host.list_all("services"), key=lambda s: str(s["metadata"]["name"])):
            meta, spec = svc["metadata"], svc.get("spec") or {}
            master = meta["namespace"] == "default" and meta["name"] == "kubernetes"
            ip = str(spec.get("clusterIP") or "")
            if not (master or (links and meta["namespace"] == ns)) or ip in ("", "None"):
                continue
            ports = spec.get("ports") or []
            if not ports:
                continue
            name = str(meta["name"]).upper().replace("-", "_")
            out[f"{name}_SERVICE_HOST"] = ip
            out[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
            for p in ports:
                if p.get("name"):
                    out[f"{name}_SERVICE_PORT_{str(p['name']).upper().replace('-', '_')}"] = str(p["port"])
            first = ports[0]
            out[f"{name}_PORT"] = f"{str(first.get('protocol', 'TCP')).lower()}://{ip}:{first['port']}"
            for p in ports:
                proto = str(p.get("protocol", "TCP"))
                key = f"{name}_PORT_{p['port']}_{proto}"
                out[key] = f"{proto.lower()}://{ip}:{p['port']}"
                out[f"{key}_PROTO"] = proto.lower()
                out[f"{key}_PORT"] = str(p["port"])
                out[f"{key}_ADDR"] = ip
        return out

    def _field_ref(self, pod: Obj, path: str, pod_ip: str) -> str:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        values = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.podIP": pod_ip,
            "status.podIPs": pod_ip,
            "status.hostIP": self.engine.ctx.ip,
            "status.hostIPs": self.engine.ctx.ip,
        }
        if path not in values:
            raise ConfigError(f"unsupported fieldPath: {path}")
        return str(values[path])

    def _env(self, pod: Obj, c: Obj, pod_ip: str) -> list[tuple[str, str]]:
        """The container's environment, in kubelet's order and with its error messages."""
        ns = pod["metadata"]["namespace"]
        out: dict[str, str] = self._service_env(pod)

        def source(kind: str, name: str, optional: bool) -> dict[str, str] | None:
            gr, label = ("configmaps", "configmap") if kind == "ConfigMap" else ("secrets", "secret")
            obj = self.host.get(gr, ns, name)
            if obj is None:
                if optional:
                    return None
                raise ConfigError(f'{label} "{name}" not found')
            if kind == "ConfigMap":
                return {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
            return {str(k): base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}

        for ef in c.get("envFrom") or []:
            kind, ref = ("ConfigMap", ef["configMapRef"]) if "configMapRef" in ef else ("Secret", ef.get("secretRef"))
            if not ref:
                continue
            data = source(kind, str(ref.get("name", "")), bool(ref.get("optional")))
            for k, v in (data or {}).items():
                out[str(ef.get("prefix") or "") + k] = v

        def expand(s: str) -> str:
            return VAR_REF.sub(lambda m: "$" if m.group(0) == "$$" else out.get(m.group(1), m.group(0)), s)

        for e in c.get("env") or []:
            name = str(e.get("name", ""))
            vf = e.get("valueFrom")
            if not vf:
                out[name] = expand(str(e.get("value", "")))
                continue
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if key in vf:
                    ref = vf[key]
                    data = source(kind, str(ref.get("name", "")), bool(ref.get("optional")))
                    if data is None:
                        break
                    if ref.get("key") not in data:
                        if ref.get("optional"):
                            break
                        raise ConfigError(f"couldn't find key {ref.get('key')} in {kind} {ns}/{ref.get('name')}")
                    out[name] = data[ref["key"]]
                    break
            else:
                if "fieldRef" in vf:
                    out[name] = self._field_ref(pod, str(vf["fieldRef"].get("fieldPath", "")), pod_ip)
                else:
                    raise ConfigError(f"env {name}: resourceFieldRef is not supported in this lab")
        return list(out.items())
