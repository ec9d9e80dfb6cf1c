"""Server-side printing: the ``meta.k8s.io/v1 Table`` kubectl renders for ``kubectl get``.

Columns, their order, priorities (1 = only in ``-o wide``) and cell values follow
kubernetes/pkg/printers/internalversion/printers.go for each kind served. Each printer is
found through its resource's strategy (``Strategy.printer``, rest.py), as upstream's REST
storage carries its TableConvertor; custom resources print their CRD's columns.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any, NamedTuple

from runtime.kernel.clock import parse_time
from runtime.kube.machinery.selectors import selector_string
from runtime.kube.meta import Obj
from runtime.kube.registry import ResourceDef
from runtime.kube.registry.crd import jsonpath

Col = tuple[str, str, str, int]  # name, type, format, priority


class Printer(NamedTuple):
    """One resource's ``kubectl get`` columns and the cells of one object's row (upstream's
    TableGenerator handler for the kind). Each strategy (rest.py) names its printer."""

    columns: list[Col]
    cells: Callable[[Obj], list[Any]]


NAME: Col = ("Name", "string", "name", 0)
AGE: Col = ("Age", "string", "", 0)

_DESC = {
    "Name": "Name must be unique within a namespace. Is required when creating resources, "
    "although some resources may allow a client to request the generation of an appropriate "
    "name automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
}


def human_duration(seconds_f: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    seconds = int(seconds_f)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        y = hours // 24 // 365
        return f"{y}y" if dy == 0 else f"{y}y{dy}d"
    return f"{hours // 24 // 365}y"


def age(ts: str | None) -> str:
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.UTC) - t).total_seconds())


def _age(o: Obj) -> str:
    return age(o.get("metadata", {}).get("creationTimestamp"))


def _name(o: Obj) -> str:
    return str(o["metadata"]["name"])


def _containers(spec: Obj) -> tuple[str, str]:
    cs = spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


# -- per kind -------------------------------------------------------------------------


def _pod(o: Obj) -> list[Any]:
    """kubectl's STATUS, READY and RESTARTS of a pod (printers.go ``printPod``): init
    containers first (``Init:1/2``, ``Init:CrashLoopBackOff``, ``Init:Error``), then the
    containers from the last to the first, so the first container's state wins;
    ``Completed`` with a container still running reads ``Running`` (or ``NotReady``)."""
    spec, st = o.get("spec") or {}, o.get("status") or {}
    total = len(spec.get("containers") or [])
    reason = st.get("reason") or st.get("phase") or "Unknown"
    restarts, ready, last_restart = 0, 0, ""

    def last_end(c: Obj) -> str:
        return str(((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt") or "")

    def terminated_reason(term: Obj, prefix: str) -> str:
        if term.get("reason"):
            return prefix + str(term["reason"])
        if term.get("signal"):
            return f"{prefix}Signal:{term['signal']}"
        return f"{prefix}ExitCode:{term.get('exitCode', 0)}"

    inits = st.get("initContainerStatuses") or []
    initializing = False
    for i, c in enumerate(inits):
        restarts += int(c.get("restartCount", 0))
        last_restart = max(last_restart, last_end(c))
        state = c.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting") or {}
        if term is not None and int(term.get("exitCode", 0)) == 0:
            continue
        if term is not None:
            reason = terminated_reason(term, "Init:")
        elif wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + str(wait["reason"])
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True" for c in st.get("conditions") or [])
    if not initializing or initialized:
        restarts, last_restart = 0, ""
        has_running = False
        for c in reversed(st.get("containerStatuses") or []):
            restarts += int(c.get("restartCount", 0))
            last_restart = max(last_restart, last_end(c))
            state = c.get("state") or {}
            term, wait = state.get("terminated"), state.get("waiting") or {}
            if wait.get("reason"):
                reason = str(wait["reason"])
            elif term is not None:
                reason = terminated_reason(term, "")
            elif c.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
            reason = "Running" if ready_cond else "NotReady"
    if o["metadata"].get("deletionTimestamp") and st.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    restarts_s = str(restarts)
    if restarts and last_restart:
        restarts_s = f"{restarts} ({age(last_restart)} ago)"
    ip = st.get("podIP") or "<none>"
    node = spec.get("nodeName") or "<none>"
    nominated = st.get("nominatedNodeName") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_s = "<none>" if not gates else f"0/{len(gates)}"
    return [_name(o), f"{ready}/{total}", reason, restarts_s, _age(o), ip, node, nominated, gates_s]


_POD_COLS: list[Col] = [
    NAME,
    ("Ready", "string", "", 0),
    ("Status", "string", "", 0),
    ("Restarts", "string", "", 0),
    AGE,
    ("IP", "string", "", 1),
    ("Node", "string", "", 1),
    ("Nominated Node", "string", "", 1),
    ("Readiness Gates", "string", "", 1),
]


def _namespace(o: Obj) -> list[Any]:
    return [_name(o), (o.get("status") or {}).get("phase", ""), _age(o)]


def _configmap(o: Obj) -> list[Any]:
    n = len(o.get("data") or {}) + len(o.get("binaryData") or {})
    return [_name(o), n, _age(o)]


def _secret(o: Obj) -> list[Any]:
    return [_name(o), o.get("type", ""), len(o.get("data") or {}), _age(o)]


def _sa(o: Obj) -> list[Any]:
    return [_name(o), len(o.get("secrets") or []), _age(o)]


def _service_ports(spec: Obj) -> str:
    out = []
    for p in spec.get("ports") or []:
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) if out else "<none>"


def _service(o: Obj) -> list[Any]:
    spec = o.get("spec") or {}
    typ = spec.get("type", "ClusterIP")
    cip = spec.get("clusterIP") or "<none>"
    ext = "<none>"
    if typ == "ExternalName":
        ext = spec.get("externalName", "<none>")
    elif typ == "LoadBalancer":
        ing = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips = [i.get("ip") or i.get("hostname") for i in ing]
        ext = ",".join(x for x in ips if x) or "<pending>"
    if spec.get("externalIPs"):
        ext = ",".join(spec["externalIPs"])
    sel = spec.get("selector")
    sel_s = ",".join(f"{k}={v}" for k, v in sorted(sel.items())) if sel else "<none>"
    return [_name(o), typ, cip, ext, _service_ports(spec), _age(o), sel_s]


def _deployment(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    desired = spec.get("replicas", 0)
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [
        _name(o),
        f"{st.get('readyReplicas', 0)}/{desired}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        _age(o),
        names,
        images,
        selector_string(spec.get("selector")),
    ]


def _replicaset(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [
        _name(o),
        spec.get("replicas", 0),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        _age(o),
        names,
        images,
        selector_string(spec.get("selector")),
    ]


def _replicationcontroller(o: Obj) -> list[Any]:
    """An RC's selector is a plain map (labels.SelectorFromSet), not a LabelSelector."""
    row = _replicaset(o)
    sel = (o.get("spec") or {}).get("selector") or {}
    row[-1] = ",".join(f"{k}={v}" for k, v in sorted(sel.items())) if sel else "<none>"
    return row


def _apiservice(o: Obj) -> list[Any]:
    """kube-aggregator's table: Service is ``Local`` or ``NAMESPACE/NAME``; Available is the
    condition's status, with its reason when it is not True."""
    svc = (o.get("spec") or {}).get("service")
    service = f"{svc.get('namespace', '')}/{svc.get('name', '')}" if svc else "Local"
    cond = next((c for c in (o.get("status") or {}).get("conditions") or [] if c.get("type") == "Available"), None)
    if cond is None:
        avail = "Unknown"
    elif cond.get("status") == "True":
        avail = "True"
    else:
        avail = f"{cond.get('status')} ({cond.get('reason', '')})"
    return [_name(o), service, avail, _age(o)]


def _node(o: Obj) -> list[Any]:
    st = o.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = "Ready" if conds.get("Ready") == "True" else "NotReady"
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(
        k.split("/", 1)[1]
        for k in (o["metadata"].get("labels") or {})
        if k.startswith("node-role.kubernetes.io/") and "/" in k
    )
    info = st.get("nodeInfo") or {}
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    return [
        _name(o),
        status,
        ",".join(roles) or "<none>",
        _age(o),
        info.get("kubeletVersion", ""),
        addrs.get("InternalIP", "<none>"),
        addrs.get("ExternalIP", "<none>"),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


def _event(o: Obj) -> list[Any]:
    inv = o.get("involvedObject") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp")
    first = o.get("firstTimestamp") or o.get("eventTime") or last
    src = o.get("source") or {}
    source = src.get("component", "")
    if src.get("host"):
        source += ", " + src["host"]
    obj = f"{(inv.get('kind') or '').lower()}/{inv.get('name', '')}"
    return [
        age(last),
        o.get("type", ""),
        o.get("reason", ""),
        obj,
        inv.get("fieldPath", ""),
        source,
        (o.get("message") or "").strip(),
        age(first),
        o.get("count", 1),
        _name(o),
    ]


def _role(o: Obj) -> list[Any]:
    return [_name(o), o["metadata"].get("creationTimestamp", "")]


def _binding(o: Obj) -> list[Any]:
    ref = o.get("roleRef") or {}
    users, groups, sas = [], [], []
    for s in o.get("subjects") or []:
        if s.get("kind") == "User":
            users.append(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.append(s.get("name", ""))
        elif s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}:{s.get('name', '')}")
    return [
        _name(o),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _age(o),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(sas),
    ]


_BINDING_COLS: list[Col] = [
    NAME,
    ("Role", "string", "", 0),
    AGE,
    ("Users", "string", "", 1),
    ("Groups", "string", "", 1),
    ("ServiceAccounts", "string", "", 1),
]

_WORKLOAD_WIDE: list[Col] = [
    ("Containers", "string", "", 1),
    ("Images", "string", "", 1),
    ("Selector", "string", "", 1),
]


def _endpoints(o: Obj) -> list[Any]:
    addrs = []
    for s in o.get("subsets") or []:
        ports = s.get("ports") or []
        for a in s.get("addresses") or []:
            if ports:
                addrs += [f"{a.get('ip')}:{p.get('port')}" for p in ports]
            else:
                addrs.append(str(a.get("ip")))
    shown = ",".join(addrs[:3])
    if len(addrs) > 3:
        shown += f" + {len(addrs) - 3} more..."
    return [_name(o), shown or "<none>", _age(o)]


def _more(items: list[str], limit: int = 3) -> str:
    """listWithMoreString: the first three, then "+ N more...", or <unset>."""
    shown = ",".join(items[:limit])
    if len(items) > limit:
        return f"{shown} + {len(items) - limit} more..."
    return shown or "<unset>"


def _endpointslice(o: Obj) -> list[Any]:
    ports = []
    for p in o.get("ports") or []:
        if p.get("port") is not None:
            ports.append(str(p["port"]))
        elif p.get("name") is not None:
            ports.append(str(p["name"]))
        else:
            ports.append("*")
    addrs = [str(a) for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_name(o), o.get("addressType", ""), _more(ports), _more(addrs), _age(o)]


def _controllerrevision(o: Obj) -> list[Any]:
    ctrl = next((r for r in o["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
    owner = "<none>"
    if ctrl is not None:
        group = ctrl.get("apiVersion", "").split("/")[0] if "/" in ctrl.get("apiVersion", "") else ""
        owner = f"{ctrl.get('kind', '').lower()}{'.' + group if group else ''}/{ctrl.get('name', '')}"
    return [_name(o), owner, o.get("revision", 0), _age(o)]


def _quota(o: Obj) -> list[Any]:
    hard = (o.get("status") or {}).get("hard") or (o.get("spec") or {}).get("hard") or {}
    used = (o.get("status") or {}).get("used") or {}
    req = [f"{k}: {used.get(k, '0')}/{v}" for k, v in sorted(hard.items()) if not k.startswith("limits.")]
    lim = [f"{k}: {used.get(k, '0')}/{v}" for k, v in sorted(hard.items()) if k.startswith("limits.")]
    return [_name(o), _age(o), ", ".join(req), ", ".join(lim)]


def _lease(o: Obj) -> list[Any]:
    return [_name(o), (o.get("spec") or {}).get("holderIdentity") or "<none>", _age(o)]


def _job(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = "Running"
    if conds.get("Complete") == "True":
        status = "Complete"
    elif conds.get("Failed") == "True":
        status = "Failed"
    elif spec.get("suspend"):
        status = "Suspended"
    completions = spec.get("completions")
    done = st.get("succeeded", 0)
    comp = f"{done}/{completions}" if completions is not None else f"{done}/1 of {spec.get('parallelism', 1)}"
    start = parse_time(st.get("startTime"))
    end = parse_time(st.get("completionTime"))
    duration = ""
    if start is not None:
        stop = end or datetime.datetime.now(datetime.UTC)
        duration = human_duration((stop - start).total_seconds())
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [_name(o), status, comp, duration, _age(o), names, images, selector_string(spec.get("selector"))]


def _cronjob(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    jspec = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    names, images = _containers(jspec.get("spec") or {})
    last = st.get("lastScheduleTime")
    return [
        _name(o),
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "True" if spec.get("suspend") else "False",
        len(st.get("active") or []),
        age(last) if last else "<none>",
        _age(o),
        names,
        images,
        selector_string(((spec.get("jobTemplate") or {}).get("spec") or {}).get("selector")),
    ]


def _statefulset(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [_name(o), f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", _age(o), names, images]


def _daemonset(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    tspec = (spec.get("template") or {}).get("spec") or {}
    ns = tspec.get("nodeSelector") or {}
    names, images = _containers(tspec)
    return [
        _name(o),
        st.get("desiredNumberScheduled", 0),
        st.get("currentNumberScheduled", 0),
        st.get("numberReady", 0),
        st.get("updatedNumberScheduled", 0),
        st.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sorted(ns.items())) or "<none>",
        _age(o),
        names,
        images,
        selector_string(spec.get("selector")),
    ]


_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def _modes(ms: list[str] | None) -> str:
    return ",".join(_MODES.get(m, m) for m in ms or [])


def _pv(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace')}/{ref.get('name')}" if ref else ""
    status = st.get("phase", "")
    if o["metadata"].get("deletionTimestamp"):
        status = "Terminating"
    return [
        _name(o),
        (spec.get("capacity") or {}).get("storage", ""),
        _modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        status,
        claim,
        spec.get("storageClassName", ""),
        spec.get("volumeAttributesClassName") or "<unset>",
        st.get("reason", ""),
        _age(o),
        spec.get("volumeMode", "Filesystem"),
    ]


def _pvc(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    status = st.get("phase", "")
    if o["metadata"].get("deletionTimestamp"):
        status = "Terminating"
    bound = status == "Bound"
    return [
        _name(o),
        status,
        spec.get("volumeName", ""),
        (st.get("capacity") or {}).get("storage", "") if bound else "",
        _modes(st.get("accessModes")) if bound else "",
        spec.get("storageClassName", "<unset>") if spec.get("storageClassName") is not None else "<unset>",
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(o),
        spec.get("volumeMode", "Filesystem"),
    ]


def _sc(o: Obj) -> list[Any]:
    name = _name(o)
    if (o["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [
        name,
        o.get("provisioner", ""),
        o.get("reclaimPolicy", "Delete"),
        o.get("volumeBindingMode", "Immediate"),
        "true" if o.get("allowVolumeExpansion") else "false",
        _age(o),
    ]


def _ingress(o: Obj) -> list[Any]:
    spec = o.get("spec") or {}
    hosts = [r.get("host") for r in spec.get("rules") or [] if r.get("host")]
    ing = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addr = ",".join(x.get("ip") or x.get("hostname") or "" for x in ing)
    return [
        _name(o),
        spec.get("ingressClassName") or "<none>",
        ",".join(hosts) or "*",
        addr,
        "80, 443" if spec.get("tls") else "80",
        _age(o),
    ]


def _ingressclass(o: Obj) -> list[Any]:
    spec = o.get("spec") or {}
    params = spec.get("parameters")
    p = "<none>"
    if params:
        p = f"{params.get('kind', '')}/{params.get('name', '')}"
    return [_name(o), spec.get("controller", ""), p, _age(o)]


def _netpol(o: Obj) -> list[Any]:
    sel = (o.get("spec") or {}).get("podSelector") or {}
    s = selector_string(sel)
    return [_name(o), "<none>" if s == "<none>" else s, _age(o)]


def _hpa(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    targets = []
    current = {(m.get("resource") or {}).get("name"): m for m in st.get("currentMetrics") or []}
    for m in spec.get("metrics") or []:
        if m.get("type") == "Resource":
            res = m.get("resource") or {}
            t = res.get("target") or {}
            cur = "<unknown>"
            cm = (current.get(res.get("name")) or {}).get("resource", {}).get("current") or {}
            if t.get("type") == "Utilization":
                if "averageUtilization" in cm:
                    cur = f"{cm['averageUtilization']}%"
                targets.append(f"{res.get('name')}: {cur}/{t.get('averageUtilization')}%")
            else:
                want = t.get("averageValue") or t.get("value")
                targets.append(f"{res.get('name')}: {cm.get('averageValue', '<unknown>')}/{want}")
    return [
        _name(o),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        ", ".join(targets) or "<none>",
        spec.get("minReplicas", 1),
        spec.get("maxReplicas", 0),
        st.get("currentReplicas", 0),
        _age(o),
    ]


def _pdb(o: Obj) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [
        _name(o),
        spec.get("minAvailable", "N/A"),
        spec.get("maxUnavailable", "N/A"),
        st.get("disruptionsAllowed", 0),
        _age(o),
    ]


def _priorityclass(o: Obj) -> list[Any]:
    return [
        _name(o),
        o.get("value", 0),
        bool(o.get("globalDefault", False)),
        _age(o),
        o.get("preemptionPolicy", "PreemptLowerPriority"),
    ]


POD = Printer(_POD_COLS, _pod)
NAMESPACE = Printer([NAME, ("Status", "string", "", 0), AGE], _namespace)
CONFIG_MAP = Printer([NAME, ("Data", "integer", "", 0), AGE], _configmap)
SECRET = Printer([NAME, ("Type", "string", "", 0), ("Data", "string", "", 0), AGE], _secret)
SERVICE_ACCOUNT = Printer([NAME, ("Secrets", "string", "", 0), AGE], _sa)
SERVICE = Printer(
    [
        NAME,
        ("Type", "string", "", 0),
        ("Cluster-IP", "string", "", 0),
        ("External-IP", "string", "", 0),
        ("Port(s)", "string", "", 0),
        AGE,
        ("Selector", "string", "", 1),
    ],
    _service,
)
DEPLOYMENT = Printer(
    [
        NAME,
        ("Ready", "string", "", 0),
        ("Up-to-date", "string", "", 0),
        ("Available", "string", "", 0),
        AGE,
        *_WORKLOAD_WIDE,
    ],
    _deployment,
)
REPLICA_SET = Printer(
    [
        NAME,
        ("Desired", "integer", "", 0),
        ("Current", "integer", "", 0),
        ("Ready", "integer", "", 0),
        AGE,
        *_WORKLOAD_WIDE,
    ],
    _replicaset,
)
APISERVICE = Printer(
    [NAME, ("Service", "string", "", 0), ("Available", "string", "", 0), AGE],
    _apiservice,
)
REPLICATION_CONTROLLER = Printer(
    [
        NAME,
        ("Desired", "integer", "", 0),
        ("Current", "integer", "", 0),
        ("Ready", "integer", "", 0),
        AGE,
        *_WORKLOAD_WIDE,
    ],
    _replicationcontroller,
)
NODE = Printer(
    [
        NAME,
        ("Status", "string", "", 0),
        ("Roles", "string", "", 0),
        AGE,
        ("Version", "string", "", 0),
        ("Internal-IP", "string", "", 1),
        ("External-IP", "string", "", 1),
        ("OS-Image", "string", "", 1),
        ("Kernel-Version", "string", "", 1),
        ("Container-Runtime", "string", "", 1),
    ],
    _node,
)
EVENT = Printer(
    [
        ("Last Seen", "string", "", 0),
        ("Type", "string", "", 0),
        ("Reason", "string", "", 0),
        ("Object", "string", "", 0),
        ("Subobject", "string", "", 1),
        ("Source", "string", "", 1),
        ("Message", "string", "", 0),
        ("First Seen", "string", "", 1),
        ("Count", "string", "", 1),
        ("Name", "string", "", 1),
    ],
    _event,
)
ROLE = Printer([NAME, ("Created At", "date", "", 0)], _role)
STATEFUL_SET = Printer(
    [NAME, ("Ready", "string", "", 0), AGE, ("Containers", "string", "", 1), ("Images", "string", "", 1)],
    _statefulset,
)
DAEMON_SET = Printer(
    [
        NAME,
        ("Desired", "integer", "", 0),
        ("Current", "integer", "", 0),
        ("Ready", "integer", "", 0),
        ("Up-to-date", "integer", "", 0),
        ("Available", "integer", "", 0),
        ("Node Selector", "string", "", 0),
        AGE,
        *_WORKLOAD_WIDE,
    ],
    _daemonset,
)
PERSISTENT_VOLUME = Printer(
    [
        NAME,
        ("Capacity", "string", "", 0),
        ("Access Modes", "string", "", 0),
        ("Reclaim Policy", "string", "", 0),
        ("Status", "string", "", 0),
        ("Claim", "string", "", 0),
        ("StorageClass", "string", "", 0),
        ("VolumeAttributesClass", "string", "", 0),
        ("Reason", "string", "", 0),
        AGE,
        ("VolumeMode", "string", "", 1),
    ],
    _pv,
)
PERSISTENT_VOLUME_CLAIM = Printer(
    [
        NAME,
        ("Status", "string", "", 0),
        ("Volume", "string", "", 0),
        ("Capacity", "string", "", 0),
        ("Access Modes", "string", "", 0),
        ("StorageClass", "string", "", 0),
        ("VolumeAttributesClass", "string", "", 0),
        AGE,
        ("VolumeMode", "string", "", 1),
    ],
    _pvc,
)
STORAGE_CLASS = Printer(
    [
        NAME,
        ("Provisioner", "string", "", 0),
        ("ReclaimPolicy", "string", "", 0),
        ("VolumeBindingMode", "string", "", 0),
        ("AllowVolumeExpansion", "string", "", 0),
        AGE,
    ],
    _sc,
)
INGRESS = Printer(
    [
        NAME,
        ("Class", "string", "", 0),
        ("Hosts", "string", "", 0),
        ("Address", "string", "", 0),
        ("Ports", "string", "", 0),
        AGE,
    ],
    _ingress,
)
INGRESS_CLASS = Printer(
    [NAME, ("Controller", "string", "", 0), ("Parameters", "string", "", 0), AGE],
    _ingressclass,
)
NETWORK_POLICY = Printer([NAME, ("Pod-Selector", "string", "", 0), AGE], _netpol)
HORIZONTAL_POD_AUTOSCALER = Printer(
    [
        NAME,
        ("Reference", "string", "", 0),
        ("Targets", "string", "", 0),
        ("MinPods", "string", "", 0),
        ("MaxPods", "string", "", 0),
        ("Replicas", "string", "", 0),
        AGE,
    ],
    _hpa,
)
POD_DISRUPTION_BUDGET = Printer(
    [
        NAME,
        ("Min Available", "string", "", 0),
        ("Max Unavailable", "string", "", 0),
        ("Allowed Disruptions", "integer", "", 0),
        AGE,
    ],
    _pdb,
)
PRIORITY_CLASS = Printer(
    [
        NAME,
        ("Value", "integer", "", 0),
        ("Global-Default", "boolean", "", 0),
        AGE,
        ("PreemptionPolicy", "string", "", 0),
    ],
    _priorityclass,
)
JOB = Printer(
    [
        NAME,
        ("Status", "string", "", 0),
        ("Completions", "string", "", 0),
        ("Duration", "string", "", 0),
        AGE,
        *_WORKLOAD_WIDE,
    ],
    _job,
)
CRON_JOB = Printer(
    [
        NAME,
        ("Schedule", "string", "", 0),
        ("Timezone", "string", "", 0),
        ("Suspend", "boolean", "", 0),
        ("Active", "integer", "", 0),
        ("Last Schedule", "string", "", 0),
        AGE,
        *_WORKLOAD_WIDE,
    ],
    _cronjob,
)
ENDPOINTS = Printer([NAME, ("Endpoints", "string", "", 0), AGE], _endpoints)
ENDPOINT_SLICE = Printer(
    [
        NAME,
        ("AddressType", "string", "", 0),
        ("Ports", "string", "", 0),
        ("Endpoints", "string", "", 0),
        AGE,
    ],
    _endpointslice,
)
CONTROLLER_REVISION = Printer(
    [NAME, ("Controller", "string", "", 0), ("Revision", "integer", "", 0), AGE],
    _controllerrevision,
)
RESOURCE_QUOTA = Printer(
    [NAME, AGE, ("Request", "string", "", 0), ("Limit", "string", "", 0)],
    _quota,
)
LEASE = Printer([NAME, ("Holder", "string", "", 0), AGE], _lease)
ROLE_BINDING = Printer(_BINDING_COLS, _binding)


DEFAULT = Printer([NAME, ("Created At", "date", "", 0)], _role)
"""What a built-in resource without columns of its own prints (upstream's default table)."""


def columns(printer: Printer) -> list[dict[str, Any]]:
    return [
        {"name": n, "type": t, "format": f, "description": _DESC.get(n, n), "priority": p}
        for n, t, f, p in printer.columns
    ]


def _row(cells: list[Any], obj: Obj, include_object: str) -> dict[str, Any]:
    r: dict[str, Any] = {"cells": cells}
    if include_object == "Object":
        r["object"] = obj
    elif include_object != "None":
        meta = obj.get("metadata", {})
        r["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
        }
    return r


def row(printer: Printer, obj: Obj, include_object: str) -> dict[str, Any]:
    return _row(printer.cells(obj), obj, include_object)


def custom_table(rdef: ResourceDef, objs: list[Obj], include_object: str, meta: dict[str, Any]) -> Obj:
    """The Table for a custom resource: its CRD's additionalPrinterColumns (Age by default)."""
    cols = list(rdef.printer_columns) or [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    defs = [{"name": "Name", "type": "string", "format": "name", "description": _DESC["Name"], "priority": 0}]
    defs += [
        {
            "name": c.get("name", ""),
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": int(c.get("priority", 0)),
        }
        for c in cols
    ]
    rows = []
    for o in objs:
        cells: list[Any] = [_name(o)]
        for c in cols:
            v = jsonpath(o, str(c.get("jsonPath", "")))
            if c.get("type") == "date":
                cells.append(age(v) if isinstance(v, str) else "<unknown>")
            elif v is None:
                cells.append(None)
            elif isinstance(v, dict | list):
                cells.append(json.dumps(v, separators=(",", ":")))
            else:
                cells.append(v)
        rows.append(_row(cells, o, include_object))
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows}


def table(printer: Printer, objs: list[Obj], include_object: str, meta: dict[str, Any]) -> Obj:
    """The Table of a built-in resource, with the columns its strategy's printer names."""
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns(printer),
        "rows": [row(printer, o, include_object) for o in objs],
    }
