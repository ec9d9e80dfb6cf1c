"""Pod Security Admission, and what this lab cluster's kubelet cannot honour.

Two validating admission steps for pods and for every object with a pod template
(Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob), run by apiserver/admission.py on
create and on update.

PodSecurity (kube-apiserver's built-in plugin, k8s.io/pod-security-admission)
-----------------------------------------------------------------------------
A namespace's labels ``pod-security.kubernetes.io/<mode>`` (``enforce``, ``audit``,
``warn``; levels ``privileged``, ``baseline``, ``restricted``) and ``<mode>-version``
(``latest`` or ``v1.<minor>``) give its policy; a missing label is ``privileged:latest``,
and ``warn`` follows an explicitly stricter ``enforce`` unless it is set itself. The checks
are the Pod Security Standards as the plugin's ``policy/check_*.go`` implement them, per
version (a check applies from its minimum version; a restricted check may override a
baseline one), run in the plugin's order (baseline check ids sorted, then restricted ones),
with the plugin's reasons and details byte for byte.

- Pods (create, and updates that change an image or add an ephemeral container): a
  violation of ``enforce`` is ``Forbidden``: ``pods "x" is forbidden: violates PodSecurity
  "restricted:latest": <reason> (<detail>), ...``; otherwise a violation of ``warn`` is a
  ``Warning`` header ``would violate PodSecurity "<level:version>": ...``.
- Objects with a pod template: only ``warn`` (and ``audit``), never ``enforce``, as upstream:
  their pods are checked when the controller creates them, and a refusal then is the
  controller's ``FailedCreate`` event. One difference: an update is judged only when it
  changes the template (upstream judges every update but those of subresources; here
  ``scale`` goes through the same update path, and a controller's own writes would warn
  nobody).
- Namespaces: invalid label values are ``Invalid`` (422) with the plugin's messages; a
  change that makes ``enforce`` stricter answers with warnings about the existing pods that
  would violate it (``existing pods in namespace "x" violate the new PodSecurity enforce
  level "restricted:latest"``, then ``<pod>: <reasons>`` per distinct set of reasons).
- ``audit``: there is no audit log in a lab cluster; the annotation the plugin would add to
  the audit event (``pod-security.kubernetes.io/audit-violations``) is logged by this
  module's logger at INFO level, which is all that is done with it.

No exemptions are configured (kube-apiserver's default configuration has none).

What cannot be honoured
-----------------------
A lab cluster's pods are containers of the sandbox's own Docker engine, inside the
student's sandbox (a user namespace). Some pod settings ask for powers that do not exist
there; accepting them and running the pod without them would lie to the student, so they
are refused, for pods and for pod templates alike (a template is refused when it is created
or changed, which is kinder than a controller failing to create its pods forever; a real
API server has no such refusal, so the message says what is different here):

- host namespaces (``hostNetwork``, ``hostPID``, ``hostIPC``), ``privileged``,
  ``windowsOptions.hostProcess``, ``hostPath`` volumes;
- ``capabilities.add`` beyond the engine's capability set (``engine.CAPS``: Docker's
  defaults without ``MKNOD``); those within it are granted (the kubelet passes
  ``capabilities.add``/``drop`` to the engine);
- ``allowPrivilegeEscalation: true`` set explicitly (every process of a sandbox runs with
  ``no_new_privs``), ``procMount: Unmasked`` (``/proc`` is always masked);
- ``seccompProfile`` ``Unconfined`` (the sandbox's filter always applies) or ``Localhost``
  (there are no profiles on the node), ``appArmorProfile`` ``Localhost`` (none loaded);
- ``sysctls`` outside ``net.*`` (the engine sets only those, in the pod's own network
  namespace).

Accepted as they are: ``seLinuxOptions`` (the node has no SELinux, as on most Debian and
Ubuntu nodes, where a kubelet ignores them too) and ``hostUsers: false`` (the pod's root is
never the host's root here). PodSecurity runs first, so a namespace's policy answers with
its own message before this one does.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runtime.dockerapi.engine import CAPS
from runtime.kube.machinery.apierrors import ApiError, FieldError, forbidden, invalid, invalid_error
from runtime.kube.meta import Obj
from runtime.kube.registry import strategies

if TYPE_CHECKING:
    from runtime.kube.apiserver.cluster import Cluster
    from runtime.kube.registry import ResourceDef

log = logging.getLogger(__name__)


PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LABEL_PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")
# the newest minimum version among the checks (the policy "latest" evaluates)
MAX_MINOR = 37


# -- policy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelVersion:
    level: str
    minor: int | None = None  # None: latest

    def __str__(self) -> str:
        return f"{self.level}:{'latest' if self.minor is None else f'v1.{self.minor}'}"


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion
    audit: LevelVersion
    warn: LevelVersion


_VERSION_RE = re.compile(r"^v1\.([0-9]|[1-9][0-9]*)$")


def _strictness(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else 0


def policy_of(labels: dict[str, Any] | None) -> tuple[Policy, list[FieldError]]:
    """api.PolicyToEvaluate: the namespace's policy, defaults privileged:latest, and the
    label errors (a bad enforce level counts as restricted; bad warn/audit levels fail open)."""
    labels = labels or {}
    levels = {m: PRIVILEGED for m in MODES}
    minors: dict[str, int | None] = {m: None for m in MODES}
    errs: list[FieldError] = []
    has_enforce = has_warn = has_warn_version = False
    for mode in MODES:
        key = LABEL_PREFIX + mode
        if key in labels:
            value = str(labels[key])
            if value in LEVELS:
                levels[mode] = value
                has_enforce = has_enforce or mode == "enforce"
            else:
                levels[mode] = RESTRICTED if mode == "enforce" else PRIVILEGED
                errs.append(
                    invalid(f"metadata.labels[{key}]", value, "must be one of privileged, baseline, restricted")
                )
            has_warn = has_warn or mode == "warn"
        vkey = key + "-version"
        if vkey in labels:
            value = str(labels[vkey])
            m = _VERSION_RE.match(value)
            if value != "latest" and m is None:
                errs.append(invalid(f"metadata.labels[{vkey}]", value, 'must be "latest" or "v1.x"'))
            minors[mode] = int(m.group(1)) if m else None
            has_warn_version = has_warn_version or mode == "warn"
    if not has_warn and has_enforce and _strictness(levels["enforce"]) > _strictness(levels["warn"]):
        levels["warn"] = levels["enforce"]
        if not has_warn_version:
            minors["warn"] = minors["enforce"]
    lv = {m: LevelVersion(levels[m], minors[m]) for m in MODES}
    return Policy(lv["enforce"], lv["audit"], lv["warn"]), errs


# -- checks (policy/check_*.go) --------------------------------------------------------

Result = tuple[str, str] | None  # (forbidden reason, forbidden detail) or allowed
CheckFn = Callable[[Obj, Obj], Result]


def _pl(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def _jq(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def _goq(s: str) -> str:
    """Go's %q for the strings that show up here."""
    return json.dumps(s, ensure_ascii=False)


def _d(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def _containers(spec: Obj) -> Iterator[Obj]:
    """visitContainers: init containers, containers, ephemeral containers."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                yield c


def _csc(c: Obj) -> Obj:
    return _d(c.get("securityContext"))


def _psc(spec: Obj) -> Obj:
    return _d(spec.get("securityContext"))


def _windows(spec: Obj) -> bool:
    return _d(spec.get("os")).get("name") == "windows"


def _userns(spec: Obj) -> bool:
    return spec.get("hostUsers") is False


def _named(what: str, names: list[str]) -> str:
    return f"{_pl(what, what + 's', len(names))} {_jq(names)}"


def _allow_privilege_escalation(meta: Obj, spec: Obj) -> Result:
    bad = [str(c.get("name", "")) for c in _containers(spec) if _csc(c).get("allowPrivilegeEscalation") is not False]
    if bad:
        return (
            "allowPrivilegeEscalation != false",
            f"{_named('container', bad)} must set securityContext.allowPrivilegeEscalation=false",
        )
    return None


def _allow_privilege_escalation_1_25(meta: Obj, spec: Obj) -> Result:
    return None if _windows(spec) else _allow_privilege_escalation(meta, spec)


def _apparmor(meta: Obj, spec: Obj) -> Result:
    setters: list[str] = []
    values: set[str] = set()
    pod_type = _d(_psc(spec).get("appArmorProfile")).get("type")
    if _psc(spec).get("appArmorProfile") is not None and pod_type not in ("RuntimeDefault", "Localhost"):
        setters.append("pod")
        values.add(str(pod_type or ""))
    bad: list[str] = []
    for c in _containers(spec):
        prof = _csc(c).get("appArmorProfile")
        if prof is not None and _d(prof).get("type") not in ("RuntimeDefault", "Localhost"):
            bad.append(str(c.get("name", "")))
            values.add(str(_d(prof).get("type") or ""))
    if bad:
        setters.append(_named("container", bad))
    annotations = sorted(
        f"{k}={_goq(str(v))}"
        for k, v in _d(meta.get("annotations")).items()
        if k.startswith("container.apparmor.security.beta.kubernetes.io/")
        and not (not v or v == "runtime/default" or str(v).startswith("localhost/"))
    )
    value_list = sorted(values) + annotations
    if annotations:
        setters.append(_pl("annotation", "annotations", len(annotations)))
    if setters:
        return (
            _pl("forbidden AppArmor profile", "forbidden AppArmor profiles", len(value_list)),
            f"{' and '.join(setters)} must not set AppArmor profile type to {_jq(value_list)}",
        )
    return None


BASELINE_CAPS = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}


def _caps(c: Obj, key: str) -> list[str]:
    return [str(x) for x in _d(_csc(c).get("capabilities")).get(key) or []]


def _capabilities_baseline(meta: Obj, spec: Obj) -> Result:
    bad: list[str] = []
    caps: set[str] = set()
    for c in _containers(spec):
        extra = [x for x in _caps(c, "add") if x not in BASELINE_CAPS]
        if extra:
            bad.append(str(c.get("name", "")))
            caps.update(extra)
    if bad:
        return (
            "non-default capabilities",
            f"{_named('container', bad)} must not include {_jq(sorted(caps))} in securityContext.capabilities.add",
        )
    return None


def _capabilities_restricted(meta: Obj, spec: Obj) -> Result:
    no_drop: list[str] = []
    adding: list[str] = []
    caps: set[str] = set()
    for c in _containers(spec):
        name = str(c.get("name", ""))
        if _csc(c).get("capabilities") is None:
            no_drop.append(name)
            continue
        if "ALL" not in _caps(c, "drop"):
            no_drop.append(name)
        extra = [x for x in _caps(c, "add") if x != "NET_BIND_SERVICE"]
        if extra:
            adding.append(name)
            caps.update(extra)
    details = []
    if no_drop:
        details.append(f'{_named("container", no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(
            f"{_named('container', adding)} must not include {_jq(sorted(caps))} in securityContext.capabilities.add"
        )
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def _capabilities_restricted_1_25(meta: Obj, spec: Obj) -> Result:
    return None if _windows(spec) else _capabilities_restricted(meta, spec)


def _host_namespaces(meta: Obj, spec: Obj) -> Result:
    found = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    return ("host namespaces", ", ".join(found)) if found else None


def _volumes(spec: Obj) -> list[Obj]:
    return [v for v in spec.get("volumes") or [] if isinstance(v, dict)]


def _host_path_volumes(meta: Obj, spec: Obj) -> Result:
    bad = [str(v.get("name", "")) for v in _volumes(spec) if v.get("hostPath") is not None]
    return ("hostPath volumes", _named("volume", bad)) if bad else None


def _host_ports(meta: Obj, spec: Obj) -> Result:
    bad: list[str] = []
    ports: set[str] = set()
    for c in _containers(spec):
        used = [str(p.get("hostPort")) for p in c.get("ports") or [] if isinstance(p, dict) and p.get("hostPort")]
        if used:
            bad.append(str(c.get("name", "")))
            ports.update(used)
    if bad:
        return (
            "hostPort",
            f"{_named('container', bad)} {_pl('uses', 'use', len(bad))} "
            f"{_pl('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}",
        )
    return None


def _probe_hosts(handler: Any) -> list[str]:
    h = _d(handler)
    return [
        str(_d(h.get(k)).get("host"))
        for k in ("httpGet", "tcpSocket")
        if h.get(k) is not None and _d(h.get(k)).get("host")
    ]


def _host_probes(meta: Obj, spec: Obj) -> Result:
    bad: set[str] = set()
    hosts: set[str] = set()
    for c in _containers(spec):
        found: list[str] = []
        for key in ("livenessProbe", "readinessProbe", "startupProbe"):
            found += _probe_hosts(c.get(key))
        for key in ("postStart", "preStop"):
            found += _probe_hosts(_d(c.get("lifecycle")).get(key))
        if found:
            bad.add(str(c.get("name", "")))
            hosts.update(found)
    if bad:
        return (
            "probe or lifecycle host",
            f"{_named('container', sorted(bad))} {_pl('uses', 'use', len(bad))} "
            f"{_pl('probe or lifecycle host', 'probe or lifecycle hosts', len(hosts))} {_jq(sorted(hosts))}",
        )
    return None


def _privileged(meta: Obj, spec: Obj) -> Result:
    bad = [str(c.get("name", "")) for c in _containers(spec) if _csc(c).get("privileged") is True]
    return ("privileged", f"{_named('container', bad)} must not set securityContext.privileged=true") if bad else None


def _proc_mount(meta: Obj, spec: Obj) -> Result:
    bad: list[str] = []
    kinds: set[str] = set()
    for c in _containers(spec):
        pm = _csc(c).get("procMount")
        if pm is not None and pm != "Default":
            bad.append(str(c.get("name", "")))
            kinds.add(str(pm))
    if bad:
        return "procMount", f"{_named('container', bad)} must not set securityContext.procMount to {_jq(sorted(kinds))}"
    return None


def _proc_mount_1_35(meta: Obj, spec: Obj) -> Result:
    return None if _userns(spec) else _proc_mount(meta, spec)


def _restricted_volumes(meta: Obj, spec: Obj) -> Result:
    allowed = (
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    )
    known = (
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "nfs",
        "iscsi",
        "glusterfs",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "fc",
        "azureFile",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
    )
    bad: list[str] = []
    types: set[str] = set()
    for v in _volumes(spec):
        if any(v.get(k) is not None for k in allowed):
            continue
        bad.append(str(v.get("name", "")))
        types.add(next((k for k in known if v.get(k) is not None), "unknown"))
    if bad:
        return (
            "restricted volume types",
            f"{_named('volume', bad)} {_pl('uses', 'use', len(bad))} "
            f"{_pl('restricted volume type', 'restricted volume types', len(types))} {_jq(sorted(types))}",
        )
    return None


def _run_as_non_root(meta: Obj, spec: Obj) -> Result:
    setters: list[str] = []
    pod_ok = False
    pod_v = _psc(spec).get("runAsNonRoot")
    if pod_v is not None:
        if not pod_v:
            setters.append("pod")
        else:
            pod_ok = True
    explicit: list[str] = []
    implicit: list[str] = []
    for c in _containers(spec):
        v = _csc(c).get("runAsNonRoot")
        if v is not None:
            if not v:
                explicit.append(str(c.get("name", "")))
        elif not pod_ok:
            implicit.append(str(c.get("name", "")))
    if explicit:
        setters.append(_named("container", explicit))
    if setters:
        return "runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false"
    if implicit:
        return (
            "runAsNonRoot != true",
            f"pod or {_named('container', implicit)} must set securityContext.runAsNonRoot=true",
        )
    return None


def _run_as_non_root_1_35(meta: Obj, spec: Obj) -> Result:
    return None if _userns(spec) else _run_as_non_root(meta, spec)


def _is_root(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v == 0


def _run_as_user(meta: Obj, spec: Obj) -> Result:
    setters = ["pod"] if _is_root(_psc(spec).get("runAsUser")) else []
    bad = [str(c.get("name", "")) for c in _containers(spec) if _is_root(_csc(c).get("runAsUser"))]
    if bad:
        setters.append(_named("container", bad))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _run_as_user_1_35(meta: Obj, spec: Obj) -> Result:
    return None if _userns(spec) else _run_as_user(meta, spec)


def _selinux(allowed_types: frozenset[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> Result:
        types: set[str] = set()
        flags = {"user": False, "role": False}

        def valid(opts: Obj) -> bool:
            ok = True
            if str(opts.get("type") or "") not in allowed_types:
                ok = False
                types.add(str(opts.get("type") or ""))
            for k in ("user", "role"):
                if opts.get(k):
                    ok = False
                    flags[k] = True
            return ok

        setters: list[str] = []
        if _psc(spec).get("seLinuxOptions") is not None and not valid(_d(_psc(spec).get("seLinuxOptions"))):
            setters.append("pod")
        bad = [
            str(c.get("name", ""))
            for c in _containers(spec)
            if _csc(c).get("seLinuxOptions") is not None and not valid(_d(_csc(c).get("seLinuxOptions")))
        ]
        if bad:
            setters.append(_named("container", bad))
        if not setters:
            return None
        data = []
        if types:
            data.append(f"{_pl('type', 'types', len(types))} {_jq(sorted(types))}")
        if flags["user"]:
            data.append("user may not be set")
        if flags["role"]:
            data.append("role may not be set")
        return (
            "seLinuxOptions",
            f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}",
        )

    return check


_SELINUX_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_SELINUX_1_31 = _SELINUX_1_0 | {"container_engine_t"}


def _seccomp_type(sc: Obj) -> Any:
    return _d(sc.get("seccompProfile")).get("type")


def _seccomp_baseline_1_0(meta: Obj, spec: Obj) -> Result:
    ann = _d(meta.get("annotations"))
    bad: set[str] = set()

    def ok(v: str) -> bool:
        return v in ("runtime/default", "docker/default") or v.startswith("localhost/")

    key = "seccomp.security.alpha.kubernetes.io/pod"
    if key in ann and not ok(str(ann[key])):
        bad.add(f"{key}={_goq(str(ann[key]))}")
    for c in _containers(spec):
        key = "container.seccomp.security.alpha.kubernetes.io/" + str(c.get("name", ""))
        if key in ann and not ok(str(ann[key])):
            bad.add(f"{key}={_goq(str(ann[key]))}")
    if bad:
        return "seccompProfile", f"forbidden {_pl('annotation', 'annotations', len(bad))} {', '.join(sorted(bad))}"
    return None


def _seccomp(meta: Obj, spec: Obj, *, restricted: bool) -> Result:
    good = ("RuntimeDefault", "Localhost")
    setters: list[str] = []
    values: set[str] = set()
    pod_set = False
    if _psc(spec).get("seccompProfile") is not None:
        t = _seccomp_type(_psc(spec))
        if t not in good:
            setters.append("pod")
            values.add(str(t or ""))
        else:
            pod_set = True
    explicit: list[str] = []
    implicit: list[str] = []
    for c in _containers(spec):
        if _csc(c).get("seccompProfile") is not None:
            t = _seccomp_type(_csc(c))
            if t not in good:
                explicit.append(str(c.get("name", "")))
                values.add(str(t or ""))
        elif not pod_set:
            implicit.append(str(c.get("name", "")))
    if explicit:
        setters.append(_named("container", explicit))
    if setters:
        return (
            "seccompProfile",
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to {_jq(sorted(values))}",
        )
    if restricted and implicit:
        return (
            "seccompProfile",
            f"pod or {_named('container', implicit)} must set securityContext.seccompProfile.type to "
            '"RuntimeDefault" or "Localhost"',
        )
    return None


def _seccomp_baseline_1_19(meta: Obj, spec: Obj) -> Result:
    return _seccomp(meta, spec, restricted=False)


def _seccomp_restricted_1_19(meta: Obj, spec: Obj) -> Result:
    return _seccomp(meta, spec, restricted=True)


def _seccomp_restricted_1_25(meta: Obj, spec: Obj) -> Result:
    return None if _windows(spec) else _seccomp(meta, spec, restricted=True)


_SYSCTLS_1_0 = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    }
)
_SYSCTLS_1_27 = _SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
_SYSCTLS_1_29 = _SYSCTLS_1_27 | {
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
_SYSCTLS_1_32 = _SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
_SYSCTLS_1_37 = _SYSCTLS_1_32 | {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}


def _sysctls(allowed: frozenset[str]) -> CheckFn:
    def check(meta: Obj, spec: Obj) -> Result:
        bad = [
            str(s.get("name", ""))
            for s in _psc(spec).get("sysctls") or []
            if isinstance(s, dict) and s.get("name") not in allowed
        ]
        return ("forbidden sysctls", ", ".join(bad)) if bad else None

    return check


def _host_process(meta: Obj, spec: Obj) -> Result:
    bad = [
        str(c.get("name", ""))
        for c in _containers(spec)
        if _d(_csc(c).get("windowsOptions")).get("hostProcess") is True
    ]
    setters = ["pod"] if _d(_psc(spec).get("windowsOptions")).get("hostProcess") is True else []
    if bad:
        setters.append(_named("container", bad))
    if setters:
        return "hostProcess", f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true"
    return None


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    # (minimum minor version, check, ids of baseline checks this one overrides)
    versions: tuple[tuple[int, CheckFn, tuple[str, ...]], ...]


CHECKS: tuple[Check, ...] = (
    Check(
        "allowPrivilegeEscalation",
        RESTRICTED,
        ((8, _allow_privilege_escalation, ()), (25, _allow_privilege_escalation_1_25, ())),
    ),
    Check("appArmorProfile", BASELINE, ((0, _apparmor, ()),)),
    Check("capabilities_baseline", BASELINE, ((0, _capabilities_baseline, ()),)),
    Check(
        "capabilities_restricted",
        RESTRICTED,
        (
            (22, _capabilities_restricted, ("capabilities_baseline",)),
            (25, _capabilities_restricted_1_25, ("capabilities_baseline",)),
        ),
    ),
    Check("hostNamespaces", BASELINE, ((0, _host_namespaces, ()),)),
    Check("hostPathVolumes", BASELINE, ((0, _host_path_volumes, ()),)),
    Check("hostPorts", BASELINE, ((0, _host_ports, ()),)),
    Check("hostProbesAndHostLifecycle", BASELINE, ((34, _host_probes, ()),)),
    Check("privileged", BASELINE, ((0, _privileged, ()),)),
    Check("procMount", BASELINE, ((0, _proc_mount, ()), (35, _proc_mount_1_35, ()))),
    Check("procMount_restricted", RESTRICTED, ((35, _proc_mount, ("procMount",)),)),
    Check("restrictedVolumes", RESTRICTED, ((0, _restricted_volumes, ("hostPathVolumes",)),)),
    Check("runAsNonRoot", RESTRICTED, ((0, _run_as_non_root, ()), (35, _run_as_non_root_1_35, ()))),
    Check("runAsUser", RESTRICTED, ((23, _run_as_user, ()), (35, _run_as_user_1_35, ()))),
    Check("seLinuxOptions", BASELINE, ((0, _selinux(_SELINUX_1_0), ()), (31, _selinux(_SELINUX_1_31), ()))),
    Check(
        "seccompProfile_baseline",
        BASELINE,
        ((0, _seccomp_baseline_1_0, ()), (19, _seccomp_baseline_1_19, ())),
    ),
    Check(
        "seccompProfile_restricted",
        RESTRICTED,
        (
            (19, _seccomp_restricted_1_19, ("seccompProfile_baseline",)),
            (25, _seccomp_restricted_1_25, ("seccompProfile_baseline",)),
        ),
    ),
    Check(
        "sysctls",
        BASELINE,
        (
            (0, _sysctls(_SYSCTLS_1_0), ()),
            (27, _sysctls(_SYSCTLS_1_27), ()),
            (29, _sysctls(_SYSCTLS_1_29), ()),
            (32, _sysctls(_SYSCTLS_1_32), ()),
            (37, _sysctls(_SYSCTLS_1_37), ()),
        ),
    ),
    Check("windowsHostProcess", BASELINE, ((0, _host_process, ()),)),
)

# checkRegistry's order: baseline ids sorted, then restricted ids sorted (bytewise, as Go sorts)
_ORDER = sorted(c.id for c in CHECKS if c.level == BASELINE) + sorted(c.id for c in CHECKS if c.level == RESTRICTED)
_BY_ID = {c.id: c for c in CHECKS}


def _at(check: Check, minor: int) -> tuple[CheckFn, tuple[str, ...]] | None:
    found = None
    for least, fn, overrides in check.versions:
        if least <= minor:
            found = (fn, overrides)
    return found


def checks_for(lv: LevelVersion) -> list[CheckFn]:
    """The checks a level and version run, in the plugin's order (none for privileged)."""
    if lv.level == PRIVILEGED:
        return []
    minor = MAX_MINOR if lv.minor is None else min(lv.minor, MAX_MINOR)
    chosen: dict[str, CheckFn] = {}
    overridden: set[str] = set()
    for check in CHECKS:
        got = _at(check, minor)
        if got is None or (check.level == RESTRICTED and lv.level != RESTRICTED):
            continue
        chosen[check.id] = got[0]
        if check.level == RESTRICTED:
            overridden.update(got[1])
    return [chosen[i] for i in _ORDER if i in chosen and i not in overridden]


@dataclass(frozen=True)
class Verdict:
    reasons: tuple[str, ...]
    details: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.reasons

    def forbidden_detail(self) -> str:
        """AggregateCheckResult.ForbiddenDetail: ``reason (detail), reason (detail)``."""
        return ", ".join(f"{r} ({d})" if d else r for r, d in zip(self.reasons, self.details, strict=True))

    def forbidden_reason(self) -> str:
        return ", ".join(self.reasons)


def evaluate(lv: LevelVersion, meta: Obj, spec: Obj) -> Verdict:
    results = [r for fn in checks_for(lv) if (r := fn(meta, spec)) is not None]
    return Verdict(
        tuple(r[0] or "unknown forbidden reason" for r in results),
        tuple(r[1] for r in results),
    )


# -- admission ------------------------------------------------------------------------


def _gr(rdef: ResourceDef) -> str:
    return f"{rdef.resource}.{rdef.group}" if rdef.group else rdef.resource


def _forbidden(rdef: ResourceDef, name: str, message: str) -> ApiError:
    return forbidden(rdef.resource, rdef.group, name, f'{_gr(rdef)} "{name}" is forbidden: {message}')


def pod_template(rdef: ResourceDef, obj: Obj) -> tuple[Obj, Obj] | None:
    """(metadata, spec) of the pod a pod or a pod template describes (where its strategy's
    ``pod_template_path`` says); None for resources that describe no pod."""
    path = strategies.for_resource(rdef).pod_template_path
    if path is None:
        return None
    cur: Any = obj
    for key in path:
        cur = _d(cur).get(key)
    if not isinstance(cur, dict):
        return None
    return _d(cur.get("metadata")), _d(cur.get("spec"))


def _significant_pod_update(new: Obj, old: Obj) -> bool:
    """isSignificantPodUpdate: a container's image changed or an ephemeral container was added."""
    ns, os_ = _d(new.get("spec")), _d(old.get("spec"))
    for key in ("containers", "initContainers"):
        a, b = ns.get(key) or [], os_.get(key) or []
        if len(a) != len(b) or any(_d(x).get("image") != _d(y).get("image") for x, y in zip(a, b, strict=True)):
            return True
    old_eph = {_d(c).get("name"): _d(c) for c in os_.get("ephemeralContainers") or []}
    for c in ns.get("ephemeralContainers") or []:
        prev = old_eph.get(_d(c).get("name"))
        if prev is None or prev.get("image") != _d(c).get("image"):
            return True
    return False


def _namespace_labels(c: Cluster, ns: str) -> dict[str, Any]:
    nso = c.store.get("namespaces", "", ns)
    return _d(_d((nso or {}).get("metadata")).get("labels"))


def _audit(rdef: ResourceDef, obj: Obj, message: str) -> None:
    meta = _d(obj.get("metadata"))
    log.info(
        "audit %s %s/%s: %saudit-violations=%s",
        _gr(rdef),
        meta.get("namespace", ""),
        meta.get("name", ""),
        LABEL_PREFIX,
        message,
    )


def _admit_pod(c: Cluster, rdef: ResourceDef, obj: Obj, *, enforce: bool) -> None:
    """EvaluatePod: enforce (pods only), audit, then warn if still allowed."""
    meta, spec = pod_template(rdef, obj) or ({}, {})
    policy, errs = policy_of(_namespace_labels(c, str(_d(obj.get("metadata")).get("namespace", ""))))
    if not errs and policy.enforce.level == policy.audit.level == policy.warn.level == PRIVILEGED:
        return
    cache: dict[LevelVersion, Verdict] = {}

    def verdict(lv: LevelVersion) -> Verdict:
        if lv not in cache:
            cache[lv] = evaluate(lv, meta, spec)
        return cache[lv]

    refusal: ApiError | None = None
    if enforce:
        v = verdict(policy.enforce)
        if not v.allowed:
            name = str(_d(obj.get("metadata")).get("name", ""))
            refusal = _forbidden(rdef, name, f'violates PodSecurity "{policy.enforce}": {v.forbidden_detail()}')
    a = verdict(policy.audit)
    if not a.allowed:
        _audit(rdef, obj, f'would violate PodSecurity "{policy.audit}": {a.forbidden_detail()}')
    if refusal is not None:
        raise refusal
    w = verdict(policy.warn)
    if not w.allowed:
        c.request_state.warnings.append(f'would violate PodSecurity "{policy.warn}": {w.forbidden_detail()}')


def _namespace_change(c: Cluster, new: Obj, old: Obj | None) -> None:
    """ValidateNamespace: label errors refuse; a stricter enforce warns about existing pods."""
    name = str(_d(new.get("metadata")).get("name", ""))
    policy, errs = policy_of(_d(_d(new.get("metadata")).get("labels")))
    old_policy, old_errs = policy_of(_d(_d((old or {}).get("metadata")).get("labels")))
    if errs and (old is None or not old_errs or errs != old_errs):
        raise invalid_error("Namespace", "", name, errs)
    if old is None or policy.enforce == old_policy.enforce or policy.enforce.level == PRIVILEGED:
        return
    if policy.enforce.minor == old_policy.enforce.minor and _strictness(policy.enforce.level) <= _strictness(
        old_policy.enforce.level
    ):
        return
    # prioritizePods: one pod per controller first (we check them all: a lab is small)
    seen: set[str] = set()
    first: list[Obj] = []
    rest: list[Obj] = []
    for pod in c.store.list("pods", name):
        owner = next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        if owner is None or owner.get("uid") not in seen:
            first.append(pod)
            if owner is not None:
                seen.add(str(owner.get("uid")))
        else:
            rest.append(pod)
    order: list[str] = []
    counts: dict[str, tuple[str, int]] = {}
    for pod in first + rest:
        v = evaluate(policy.enforce, _d(pod["metadata"]), _d(pod.get("spec")))
        if v.allowed:
            continue
        reason = v.forbidden_reason()
        pname = str(pod["metadata"]["name"])
        if reason not in counts:
            order.append(reason)
            counts[reason] = (pname, 1)
        else:
            prev, n = counts[reason]
            counts[reason] = (min(prev, pname), n + 1)
    if not order:
        return
    lines = []
    for reason in order:
        pname, n = counts[reason]
        if n == 1:
            lines.append(f"{pname}: {reason}")
        elif n == 2:
            lines.append(f"{pname} (and 1 other pod): {reason}")
        else:
            lines.append(f"{pname} (and {n - 1} other pods): {reason}")
    c.request_state.warnings.append(
        f'existing pods in namespace "{name}" violate the new PodSecurity enforce level "{policy.enforce}"'
    )
    c.request_state.warnings.extend(sorted(lines))


def admit(c: Cluster, rdef: ResourceDef, obj: Obj, old: Obj | None = None) -> None:
    """Validating admission of a create (``old`` None) or an update: PodSecurity, then what
    this lab cluster cannot honour."""
    if rdef.custom:
        return
    if rdef.gr == "namespaces":  # upstream: a.GetResource().GroupResource() == namespaces
        _namespace_change(c, obj, old)
        return
    tpl = pod_template(rdef, obj)
    if tpl is None:
        return
    path = strategies.for_resource(rdef).pod_template_path
    is_pod = path == ()
    changed = old is None or pod_template(rdef, old) != tpl
    if (is_pod and (old is None or _significant_pod_update(obj, old))) or (not is_pod and changed):
        _admit_pod(c, rdef, obj, enforce=is_pod)
    if not changed:
        return  # unchanged: what was stored before these checks existed stays manageable
    problems = unhonourable(tpl[1])
    if problems:
        name = str(_d(obj.get("metadata")).get("name", ""))
        whose = "them" if is_pod else f"the pods of {'.'.join(path or ())}"
        raise _forbidden(
            rdef,
            name,
            f"this lab cluster runs pods as containers inside your sandbox and cannot give {whose}: "
            + ", ".join(f"{r} ({d})" for r, d in problems),
        )


# -- what cannot be honoured ----------------------------------------------------------

# what the sandbox's engine grants (engine.CAPS, Docker's defaults without MKNOD), by the
# names Kubernetes uses
HONOURED_CAPS = tuple(sorted(x.removeprefix("CAP_") for x in CAPS))


def unhonourable(spec: Obj) -> list[tuple[str, str]]:
    """(reason, detail) for each setting of a pod spec this lab's kubelet cannot honour."""
    out: list[tuple[str, str]] = []
    host = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    if host:
        out.append(
            (
                "host namespaces",
                f"{', '.join(host)}: a pod always gets its own namespaces inside your sandbox, never the host's",
            )
        )
    # ephemeral containers are left out: the kubelet does not run them (node/kubelet.py), and
    # kubectl debug's default profile adds SYS_PTRACE to them
    ctrs = [c for key in ("initContainers", "containers") for c in spec.get(key) or [] if isinstance(c, dict)]

    def named(pred: Callable[[Obj], bool]) -> list[str]:
        return [str(c.get("name", "")) for c in ctrs if pred(c)]

    bad = named(lambda c: _csc(c).get("privileged") is True)
    if bad:
        out.append(
            (
                "privileged",
                f"{_named('container', bad)} must not set securityContext.privileged=true: containers here run in "
                "your sandbox's user namespace and cannot get the host's privileges",
            )
        )
    host_process = _host_process({}, spec)
    if host_process is not None:
        out.append(("hostProcess", f"{host_process[1]}: this node runs Linux"))
    extra: set[str] = set()
    bad = []
    for c in ctrs:
        more = [x for x in _caps(c, "add") if x.upper().removeprefix("CAP_") not in HONOURED_CAPS]
        if more:
            bad.append(str(c.get("name", "")))
            extra.update(more)
    if bad:
        out.append(
            (
                "capabilities",
                f"{_named('container', bad)} cannot add {_jq(sorted(extra))}: only these capabilities exist for "
                f"containers here: {', '.join(HONOURED_CAPS)}",
            )
        )
    bad = named(lambda c: _csc(c).get("allowPrivilegeEscalation") is True)
    if bad:
        out.append(
            (
                "allowPrivilegeEscalation",
                f"{_named('container', bad)} cannot set securityContext.allowPrivilegeEscalation=true: every "
                "process here runs with no_new_privs, so set-user-ID programs gain nothing (leave it unset or false)",
            )
        )
    bad = named(lambda c: _csc(c).get("procMount") not in (None, "Default"))
    if bad:
        out.append(
            ("procMount", f"{_named('container', bad)} cannot unmask /proc: it is always masked here (use Default)")
        )
    for field, what, why in (
        ("seccompProfile", "seccompProfile", {"Unconfined": "the sandbox's seccomp filter always applies"}),
        ("appArmorProfile", "AppArmor profile", {}),
    ):
        setters: list[str] = []
        types: set[str] = set()
        reasons = {"Localhost": "this node has no local profiles", **why}
        pod_t = _d(_psc(spec).get(field)).get("type")
        if pod_t in reasons:
            setters.append("pod")
            types.add(str(pod_t))
        bad = []
        for c in ctrs:
            t = _d(_csc(c).get(field)).get("type")
            if t in reasons:
                bad.append(str(c.get("name", "")))
                types.add(str(t))
        if bad:
            setters.append(_named("container", bad))
        if setters:
            out.append(
                (
                    what,
                    f"{' and '.join(setters)} cannot set type {_jq(sorted(types))}: "
                    + "; ".join(reasons[t] for t in sorted(types))
                    + " (use RuntimeDefault)",
                )
            )
    bad_vols = [str(v.get("name", "")) for v in _volumes(spec) if v.get("hostPath") is not None]
    if bad_vols:
        out.append(
            (
                "hostPath volumes",
                f"{_named('volume', bad_vols)} cannot mount the node's files (use emptyDir or a PersistentVolumeClaim)",
            )
        )
    sysctls = [
        str(s.get("name", ""))
        for s in _psc(spec).get("sysctls") or []
        if isinstance(s, dict) and not str(s.get("name", "")).startswith("net.")
    ]
    if sysctls:
        out.append(
            (
                "sysctls",
                f"{', '.join(sysctls)}: only net.* sysctls, which belong to the pod's own network namespace, "
                "can be set here",
            )
        )
    return out
