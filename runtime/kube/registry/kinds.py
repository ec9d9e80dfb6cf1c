"""Defaulting and validation of the built-in kinds, as kube-apiserver does them.

Only the fields the course touches are checked, but each check uses the real
field path and the real message (k8s.io/apimachinery validation wording), so
``kubectl`` prints what a student would see on a real cluster.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import re
from typing import Any

from runtime.kube.machinery.apierrors import (
    FieldError,
    GoLiteral,
    forbidden_field,
    invalid,
    not_supported,
    required,
)
from runtime.kube.machinery.cron import CronError, Schedule
from runtime.kube.machinery.quantity import canonical_list
from runtime.kube.machinery.selectors import selector_from_match
from runtime.kube.meta import Obj

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + r")*"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{_LABEL}')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    f"regex used for validation is '{_SUBDOMAIN}')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    f"'abc-123', regex used for validation is '{_DNS1035}')"
)


def is_label(s: str) -> list[str]:
    errs = []
    if len(s) > 63:
        errs.append("must be no more than 63 characters")
    if not re.fullmatch(_LABEL, s):
        errs.append(DNS1123_LABEL_MSG)
    return errs


def is_subdomain(s: str) -> list[str]:
    errs = []
    if len(s) > 253:
        errs.append("must be no more than 253 characters")
    if not re.fullmatch(_SUBDOMAIN, s):
        errs.append(DNS1123_SUBDOMAIN_MSG)
    return errs


def is_dns1035(s: str) -> list[str]:
    errs = []
    if len(s) > 63:
        errs.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1035, s):
        errs.append(DNS1035_MSG)
    return errs


def is_path_segment(s: str) -> list[str]:
    if s in (".", ".."):
        return [f"may not be '{s}'"]
    for bad in ("/", "%"):
        if bad in s:
            return [f"may not contain '{bad}'"]
    return []


NAME_RULE: dict[str, Any] = {
    "Namespace": is_label,
    "Service": is_dns1035,
    "Role": is_path_segment,
    "ClusterRole": is_path_segment,
    "RoleBinding": is_path_segment,
    "ClusterRoleBinding": is_path_segment,
    "Event": lambda s: [],
    "APIService": is_path_segment,
}

_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"


def _qualified_name_errors(key: str) -> list[str]:
    parts = key.split("/")
    name = parts[-1]
    errs: list[str] = []
    if len(parts) > 2:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            f"'123-abc', regex used for validation is '{_QUALIFIED_NAME}') with an optional DNS "
            "subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if len(parts) == 2:
        if not parts[0]:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + e for e in is_subdomain(parts[0])]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not re.fullmatch(_QUALIFIED_NAME, name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            f"'123-abc', regex used for validation is '{_QUALIFIED_NAME}')"
        )
    return errs


def validate_meta(kind: str, obj: Obj, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    else:
        rule = NAME_RULE.get(kind, is_subdomain)
        for msg in rule(name):
            errs.append(invalid("metadata.name", name, msg))
    if namespaced and not meta.get("namespace"):
        errs.append(required("metadata.namespace"))
    for k, v in (meta.get("labels") or {}).items():
        for msg in _qualified_name_errors(k):
            errs.append(invalid("metadata.labels", k, msg))
        if not isinstance(v, str):
            continue
        if len(v) > 63:
            errs.append(invalid("metadata.labels", v, "must be no more than 63 characters"))
        elif not re.fullmatch(_LABEL_VALUE, v):
            errs.append(
                invalid(
                    "metadata.labels",
                    v,
                    "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                    f"validation is '{_LABEL_VALUE}')",
                )
            )
    for k in meta.get("annotations") or {}:
        for msg in _qualified_name_errors(k):
            errs.append(invalid("metadata.annotations", k, msg))
    return errs


# -- pods -----------------------------------------------------------------------


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_container(c: Obj) -> None:
    if "image" in c:
        c.setdefault("imagePullPolicy", _image_pull_policy(str(c["image"])))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    res = c.setdefault("resources", {})
    if isinstance(res, dict):
        canonical_list(res.get("requests"))
        canonical_list(res.get("limits"))
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for e in c.get("env") or []:
        vf = e.get("valueFrom")
        if isinstance(vf, dict) and isinstance(vf.get("fieldRef"), dict):
            vf["fieldRef"].setdefault("apiVersion", "v1")


def default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(c, dict):
            default_container(c)
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            for src in ("configMap", "secret"):
                if isinstance(v.get(src), dict):
                    v[src].setdefault("defaultMode", 420)
            if not any(k != "name" for k in v):
                v["emptyDir"] = {}


def default_pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    default_pod_spec(spec)
    # SetDefaults_Pod (pods only, not templates): requests default to the limits
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") if isinstance(c, dict) else None
        if isinstance(res, dict) and isinstance(res.get("limits"), dict) and res["limits"]:
            reqs = res.setdefault("requests", {})
            for k, v in res["limits"].items():
                reqs.setdefault(k, v)
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = sa
    spec["serviceAccount"] = sa
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault(
        "tolerations",
        [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
    )


def qos_class(spec: Obj) -> str:
    reqs_any = False
    guaranteed = True
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            reqs_any = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not reqs_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def validate_pod_spec(spec: Any, path: str, template: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return [required(path)]
    containers = spec.get("containers")
    if not containers:
        errs.append(required(f"{path}.containers"))
    names: set[str] = set()
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            cp = f"{path}.{kind}[{i}]"
            name = c.get("name", "")
            if not name:
                errs.append(required(f"{cp}.name"))
            else:
                for msg in is_label(name):
                    errs.append(invalid(f"{cp}.name", name, msg))
                if name in names:
                    errs.append(FieldError("FieldValueDuplicate", f"{cp}.name", "", name))
                names.add(name)
            if not c.get("image"):
                errs.append(required(f"{cp}.image"))
            ipp = c.get("imagePullPolicy")
            if ipp not in (None, "Always", "IfNotPresent", "Never"):
                errs.append(not_supported(f"{cp}.imagePullPolicy", ipp, ["Always", "IfNotPresent", "Never"]))
            for j, p in enumerate(c.get("ports") or []):
                cport = p.get("containerPort")
                if not isinstance(cport, int) or not 1 <= cport <= 65535:
                    errs.append(
                        invalid(
                            f"{cp}.ports[{j}].containerPort",
                            cport,
                            "must be between 1 and 65535, inclusive",
                        )
                    )
                proto = p.get("protocol", "TCP")
                if proto not in ("TCP", "UDP", "SCTP"):
                    errs.append(not_supported(f"{cp}.ports[{j}].protocol", proto, ["SCTP", "TCP", "UDP"]))
    rp = spec.get("restartPolicy")
    allowed = ["Always"] if template else ["Always", "OnFailure", "Never"]
    if rp is not None and rp not in allowed:
        errs.append(not_supported(f"{path}.restartPolicy", rp, allowed))
    errs += _topology_spread(spec.get("topologySpreadConstraints"), f"{path}.topologySpreadConstraints")
    return errs


def _topology_spread(constraints: Any, path: str) -> list[FieldError]:
    """kube-apiserver's validateTopologySpreadConstraints: the scheduler reads maxSkew,
    minDomains, topologyKey and whenUnsatisfiable, so a value it cannot honour is refused
    here rather than leaving the pod Pending for a reason no one is told."""
    errs: list[FieldError] = []
    if not isinstance(constraints, list):
        return errs
    for i, c in enumerate(constraints):
        if not isinstance(c, dict):
            continue
        cp = f"{path}[{i}]"
        skew = c.get("maxSkew", 0)
        if isinstance(skew, int) and skew <= 0:
            errs.append(invalid(f"{cp}.maxSkew", skew, "must be greater than zero"))
        if not c.get("topologyKey"):
            errs.append(required(f"{cp}.topologyKey", "can not be empty"))
        action = c.get("whenUnsatisfiable", "")
        if action not in ("DoNotSchedule", "ScheduleAnyway"):
            errs.append(not_supported(f"{cp}.whenUnsatisfiable", action, ["DoNotSchedule", "ScheduleAnyway"]))
        for rest in constraints[i + 1 :]:
            if isinstance(rest, dict) and (rest.get("topologyKey"), rest.get("whenUnsatisfiable")) == (
                c.get("topologyKey"),
                action,
            ):
                errs.append(
                    FieldError(
                        "FieldValueDuplicate",
                        f"{cp}.{{topologyKey, whenUnsatisfiable}}",
                        "",
                        f"{{{c.get('topologyKey')}, {action}}}",
                    )
                )
                break
        domains = c.get("minDomains")
        if isinstance(domains, int):
            if domains <= 0:
                errs.append(invalid(f"{cp}.minDomains", domains, "must be greater than zero"))
            if action != "DoNotSchedule":
                errs.append(
                    invalid(
                        f"{cp}.minDomains",
                        domains,
                        f"can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}",
                    )
                )
    return errs


_POD_MUTABLE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def validate_pod_update(new: Obj, old: Obj) -> list[FieldError]:
    a = copy.deepcopy(new.get("spec") or {})
    b = copy.deepcopy(old.get("spec") or {})
    for s in (a, b):
        for kind in ("containers", "initContainers"):
            for c in s.get(kind) or []:
                c.pop("image", None)
                c.pop("resources", None)  # changed only through the resize subresource
        s.pop("activeDeadlineSeconds", None)
        s.pop("tolerations", None)
        s.pop("ephemeralContainers", None)  # changed only through its subresource
    if a != b:
        return [forbidden_field("spec", _POD_MUTABLE_MSG)]
    return []


# -- workloads ----------------------------------------------------------------------


def default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strat = spec.setdefault("strategy", {})
    strat.setdefault("type", "RollingUpdate")
    if strat["type"] == "RollingUpdate":
        ru = strat.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(spec)


def _default_template(spec: Obj) -> None:
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {})
        tmpl["metadata"].setdefault("creationTimestamp", None)
        if isinstance(tmpl.get("spec"), dict):
            default_pod_spec(tmpl["spec"])


def default_replicaset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _default_template(spec)


def default_statefulset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    us = spec.setdefault("updateStrategy", {})
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    _default_template(spec)


def default_daemonset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    us = spec.setdefault("updateStrategy", {})
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        ru = us.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(spec)


def default_replicationcontroller(obj: Obj) -> None:
    """SetDefaults_ReplicationController: the selector and the object's labels default to
    the template's labels; replicas to 1."""
    spec = obj.setdefault("spec", {})
    tmpl = spec.get("template")
    labels = ((tmpl.get("metadata") or {}).get("labels") if isinstance(tmpl, dict) else None) or None
    if labels is not None:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = obj.setdefault("metadata", {})
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    spec.setdefault("replicas", 1)
    _default_template(spec)


def validate_replicationcontroller(obj: Obj) -> list[FieldError]:
    """ValidateReplicationControllerSpec: a non-empty selector (a plain map) that the
    template's labels match, replicas and minReadySeconds not negative, restartPolicy Always."""
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not sel:
        errs.append(required("spec.selector"))
        sel = {}
    for fld in ("replicas", "minReadySeconds"):
        v = spec.get(fld)
        if isinstance(v, int) and v < 0:
            errs.append(invalid(f"spec.{fld}", v, "must be greater than or equal to 0"))
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        errs.append(required("spec.template"))
        return errs
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if sel and any(labels.get(k) != v for k, v in sel.items()):
        e = invalid("spec.template.metadata.labels", None, "`selector` does not match template `labels`")
        e.value = GoLiteral(_go_map(labels))
        errs.append(e)
    errs += validate_pod_spec(tmpl.get("spec"), "spec.template.spec", template=True)
    return errs


def validate_apiservice(obj: Obj) -> list[FieldError]:
    """kube-aggregator's ValidateAPIService (the name is VERSION.GROUP, priorities in range)."""
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    group, version = str(spec.get("group") or ""), str(spec.get("version") or "")
    name = (obj.get("metadata") or {}).get("name", "")
    want = f"{version}.{group}"
    if name and not is_path_segment(name) and name != want:
        errs.append(invalid("metadata.name", name, f'must be `spec.version+"."+spec.group`: {json_q(want)}'))
    if not group and version != "v1":
        errs.append(required("spec.group", "only v1 may have an empty group and it better be legacy kube"))
    if not version:
        errs.append(required("spec.version"))
    gpm, vp = spec.get("groupPriorityMinimum", 0), spec.get("versionPriority", 0)
    if not isinstance(gpm, int) or not 0 < gpm <= 20000:
        errs.append(invalid("spec.groupPriorityMinimum", gpm, "must be positive and less than 20000"))
    if not isinstance(vp, int) or not 0 < vp <= 1000:
        errs.append(invalid("spec.versionPriority", vp, "must be positive and less than 1000"))
    if not spec.get("service"):
        if spec.get("caBundle"):
            errs.append(forbidden_field("spec.caBundle", "local APIservices may not have a caBundle"))
        if spec.get("insecureSkipTLSVerify"):
            errs.append(
                forbidden_field("spec.insecureSkipTLSVerify", "local APIservices may not have insecureSkipTLSVerify")
            )
    return errs


def json_q(s: str) -> str:
    import json

    return json.dumps(s)


def _go_map(d: dict[str, str]) -> str:
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(d.items()))
    return "map[string]string{" + inner + "}"


def validate_workload(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errs.append(required("spec.selector"))
        if sel is not None:
            errs.append(invalid("spec.selector", sel, "empty selector is invalid for deployment"))
    replicas = spec.get("replicas", 1)
    if isinstance(replicas, int) and replicas < 0:
        errs.append(invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        errs.append(required("spec.template"))
        return errs
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if sel and sel.get("matchLabels") is not None and not selector_from_match(sel)({"metadata": {"labels": labels}}):
        errs.append(
            invalid(
                "spec.template.metadata.labels",
                None,
                "`selector` does not match template `labels`",
            )
        )
        errs[-1].value = GoLiteral(_go_map(labels))
    errs += validate_pod_spec(tmpl.get("spec"), "spec.template.spec", template=True)
    return errs


def validate_selector_immutable(new: Obj, old: Obj) -> list[FieldError]:
    a = (new.get("spec") or {}).get("selector")
    b = (old.get("spec") or {}).get("selector")
    if a != b:
        e = invalid("spec.selector", None, "field is immutable")
        e.value = GoLiteral(_label_selector_go(a))
        return [e]
    return []


def _label_selector_go(sel: Any) -> str:
    ml = (sel or {}).get("matchLabels") or {}
    return "v1.LabelSelector{MatchLabels:" + _go_map(ml) + ", MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"


# -- batch ----------------------------------------------------------------------------


def _default_job_spec(spec: Obj) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", None)
    if spec.get("manualSelector") is None:
        spec.pop("manualSelector")
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {})
        tmpl["metadata"].setdefault("creationTimestamp", None)
        ps = tmpl.get("spec")
        if isinstance(ps, dict):
            rp = ps.get("restartPolicy")
            default_pod_spec(ps)
            if rp is None:  # a Job's restartPolicy is required, never defaulted
                ps.pop("restartPolicy", None)


def default_job(obj: Obj) -> None:
    _default_job_spec(obj.setdefault("spec", {}))


def default_cronjob(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    jt = spec.setdefault("jobTemplate", {})
    jt.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    jspec = jt.setdefault("spec", {})
    tmpl = jspec.get("template")
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        ps = tmpl.get("spec")
        if isinstance(ps, dict):
            rp = ps.get("restartPolicy")
            default_pod_spec(ps)
            if rp is None:
                ps.pop("restartPolicy", None)


def _validate_job_template(tmpl: Any, path: str) -> list[FieldError]:
    if not isinstance(tmpl, dict):
        return [required(path)]
    ps = tmpl.get("spec")
    errs = validate_pod_spec(ps, f"{path}.spec", template=False)
    errs = [e for e in errs if not e.field.endswith(".restartPolicy")]
    rp = (ps or {}).get("restartPolicy") if isinstance(ps, dict) else None
    if rp is None:
        errs.append(required(f"{path}.spec.restartPolicy", 'valid values: "OnFailure", "Never"'))
    elif rp not in ("OnFailure", "Never"):
        errs.append(not_supported(f"{path}.spec.restartPolicy", rp, ["OnFailure", "Never"]))
    return errs


def validate_job(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs = _validate_job_template(spec.get("template"), "spec.template")
    for fld in ("parallelism", "completions", "backoffLimit"):
        v = spec.get(fld)
        if isinstance(v, int) and v < 0:
            errs.append(invalid(f"spec.{fld}", v, "must be greater than or equal to 0"))
    return errs


def validate_cronjob(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    sched = spec.get("schedule")
    if not sched:
        errs.append(required("spec.schedule"))
    else:
        try:
            Schedule(str(sched))
        except CronError as e:
            errs.append(invalid("spec.schedule", sched, str(e)))
    tz = spec.get("timeZone")
    if tz:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(str(tz))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            errs.append(invalid("spec.timeZone", tz, "unknown time zone " + str(tz)))
    policy = spec.get("concurrencyPolicy", "Allow")
    if policy not in ("Allow", "Forbid", "Replace"):
        errs.append(not_supported("spec.concurrencyPolicy", policy, ["Allow", "Forbid", "Replace"]))
    jt = spec.get("jobTemplate") or {}
    errs += _validate_job_template((jt.get("spec") or {}).get("template"), "spec.jobTemplate.spec.template")
    return errs


def validate_job_update(new: Obj, old: Obj) -> list[FieldError]:
    a = (new.get("spec") or {}).get("template")
    b = (old.get("spec") or {}).get("template")
    if a != b:
        return [invalid("spec.template", GoLiteral("core.PodTemplateSpec{...}"), "field is immutable")]
    return validate_selector_immutable(new, old)


# -- storage and networking -----------------------------------------------------------------

_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def default_pvc(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")


def default_pv(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")


def validate_pvc(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    modes = spec.get("accessModes") or []
    if not modes:
        errs.append(required("spec.accessModes"))
    for m in modes:
        if m not in _ACCESS_MODES:
            errs.append(not_supported("spec.accessModes", m, _ACCESS_MODES))
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        errs.append(required("spec.resources[storage]"))
    return errs


def validate_pv(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    if not spec.get("accessModes"):
        errs.append(required("spec.accessModes"))
    if not (spec.get("capacity") or {}).get("storage"):
        errs.append(required("spec.capacity"))
    return errs


def validate_pvc_update(new: Obj, old: Obj) -> list[FieldError]:
    a = dict(new.get("spec") or {})
    b = dict(old.get("spec") or {})
    for s in (a, b):
        s.pop("resources", None)
    if not b.get("volumeName"):  # volumeName may be set once (binding), as upstream allows
        a.pop("volumeName", None)
        b.pop("volumeName", None)
    if a != b:
        return [
            forbidden_field(
                "spec",
                "spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
            )
        ]
    return []


def default_storageclass(obj: Obj) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def validate_storageclass(obj: Obj) -> list[FieldError]:
    return [] if obj.get("provisioner") else [required("provisioner")]


def default_ingress(obj: Obj) -> None:
    for r in (obj.get("spec") or {}).get("rules") or []:
        for p in ((r.get("http") or {}).get("paths")) or []:
            p.setdefault("pathType", "ImplementationSpecific")
    obj.setdefault("status", {"loadBalancer": {}})


def default_netpol(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if "egress" in spec:
            types.append("Egress")
        spec["policyTypes"] = types
    for rules in (spec.get("ingress") or [], spec.get("egress") or []):
        for r in rules:
            for p in r.get("ports") or []:
                p.setdefault("protocol", "TCP")


_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")


def _port_num(fld: str, value: Any) -> list[FieldError]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return [invalid(fld, value, "must be between 1 and 65535, inclusive")]
    return []


def _port_name(fld: str, name: str) -> list[FieldError]:
    """validation.IsValidPortName (an IANA service name)."""
    msgs = []
    if len(name) > 15:
        msgs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.match(name):
        msgs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", name):
        msgs.append("must contain at least one letter (a-z)")
    if "--" in name:
        msgs.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        msgs.append("must not begin or end with a hyphen")
    return [invalid(fld, name, m) for m in msgs]


def _netpol_port(port: Any, path: str) -> list[FieldError]:
    """ValidateNetworkPolicyPort: what the enforcing agent (runtime/kube/node/netpol.py) can act on."""
    if not isinstance(port, dict):
        return [invalid(path, port, "must be an object")]
    errs: list[FieldError] = []
    proto = port.get("protocol")
    if proto is not None and proto not in ("TCP", "UDP", "SCTP"):
        errs.append(not_supported(f"{path}.protocol", proto, ["TCP", "UDP", "SCTP"]))
    num, end = port.get("port"), port.get("endPort")
    if num is None:
        if end is not None:
            errs.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified"))
    elif isinstance(num, int) and not isinstance(num, bool):
        errs += _port_num(f"{path}.port", num)
        if end is not None:
            if isinstance(end, int) and not isinstance(end, bool) and end < num:
                errs.append(invalid(f"{path}.endPort", num, "must be greater than or equal to `port`"))
            errs += _port_num(f"{path}.endPort", end)
    elif isinstance(num, str):
        if end is not None:
            errs.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric"))
        errs += _port_name(f"{path}.port", num)
    else:
        errs.append(invalid(f"{path}.port", num, "must be an integer or a port name"))
    return errs


def _cidr(value: Any) -> Any:
    import ipaddress

    try:
        return ipaddress.ip_network(str(value), strict=False) if isinstance(value, str) and "/" in value else None
    except ValueError:
        return None


_CIDR_DETAIL = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def _netpol_peer(peer: Any, path: str) -> list[FieldError]:
    """ValidateNetworkPolicyPeer and ValidateIPBlock."""
    if not isinstance(peer, dict):
        return [invalid(path, peer, "must be an object")]
    errs: list[FieldError] = []
    kinds = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(k) is not None]
    block = peer.get("ipBlock")
    if block is not None:
        cidr = block.get("cidr") if isinstance(block, dict) else None
        if not cidr:
            errs.append(required(f"{path}.ipBlock.cidr"))
        else:
            net = _cidr(cidr)
            if net is None:
                errs.append(invalid(f"{path}.ipBlock.cidr", cidr, _CIDR_DETAIL))
            for i, ex in enumerate(block.get("except") or []):
                ex_path = f"{path}.ipBlock.except[{i}]"
                sub = _cidr(ex)
                if sub is None:
                    errs.append(invalid(ex_path, ex, _CIDR_DETAIL))
                elif net is not None and (
                    sub.version != net.version or not sub.subnet_of(net) or sub.prefixlen <= net.prefixlen
                ):
                    errs.append(invalid(ex_path, ex, "must be a strict subset of `cidr`"))
    if not kinds:
        errs.append(required(path, "must specify a peer"))
    elif len(kinds) > 1 and block is not None:
        errs.append(forbidden_field(path, "may not specify both ipBlock and another peer"))
    return errs


def validate_netpol(obj: Obj) -> list[FieldError]:
    """ValidateNetworkPolicySpec: what the real API server refuses is refused here too, so
    nothing a student writes is stored and then silently left out of the enforced rules."""
    spec = obj.get("spec") or {}
    if "podSelector" not in spec:
        return [required("spec.podSelector")]
    errs: list[FieldError] = []
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            path = f"spec.{direction}[{i}]"
            if not isinstance(rule, dict):
                errs.append(invalid(path, rule, "must be an object"))
                continue
            for j, port in enumerate(rule.get("ports") or []):
                errs += _netpol_port(port, f"{path}.ports[{j}]")
            for j, peer in enumerate(rule.get(peers) or []):
                errs += _netpol_peer(peer, f"{path}.{peers}[{j}]")
    types = spec.get("policyTypes") or []
    if len(types) > 2:
        errs.append(invalid("spec.policyTypes", types, "may not specify more than two policyTypes"))
        return errs
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            errs.append(not_supported(f"spec.policyTypes[{i}]", t, ["Ingress", "Egress"]))
    return errs


_WILDCARD = r"\*\." + _SUBDOMAIN
WILDCARD_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which "
    "must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric "
    f"character (e.g. '*.example.com', regex used for validation is '{_WILDCARD}')"
)
_INGRESS_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INGRESS_PATH_SUFFIXES = ("/..", "/.")


def _ingress_host(fld: str, host: Any) -> list[FieldError]:
    """A rule's or a TLS entry's host: a DNS subdomain, or a wildcard one (``*.example.com``)."""
    if not isinstance(host, str):
        return [invalid(fld, host, "must be a string")]
    if "*" in host:
        msgs = []
        if len(host) > 253:
            msgs.append("must be no more than 253 characters")
        if not re.fullmatch(_WILDCARD, host):
            msgs.append(WILDCARD_MSG)
        return [invalid(fld, host, m) for m in msgs]
    return [invalid(fld, host, m) for m in is_subdomain(host)]


def _ingress_backend(fld: str, b: Any) -> list[FieldError]:
    if not isinstance(b, dict):
        return [invalid(fld, "", "resource or service backend is required")]
    if b.get("resource") is not None and b.get("service") is not None:
        return [invalid(fld, "", "cannot set both resource and service backends")]
    if b.get("resource") is not None:
        return []
    svc = b.get("service")
    if not isinstance(svc, dict):
        return [invalid(fld, "", "resource or service backend is required")]
    errs: list[FieldError] = []
    name = svc.get("name")
    if not name:
        errs.append(required(f"{fld}.service.name", ""))
    else:
        errs += [invalid(f"{fld}.service.name", name, m) for m in is_dns1035(str(name))]
    port: Obj = svc["port"] if isinstance(svc.get("port"), dict) else {}
    pname, pnum = port.get("name") or "", port.get("number") or 0
    if pname and pnum:
        errs.append(invalid(fld, "", "cannot set both port name & port number"))
    elif pname:
        errs += _port_name(f"{fld}.service.port.name", str(pname))
    elif pnum:
        if isinstance(pnum, bool) or not isinstance(pnum, int) or not 1 <= pnum <= 65535:
            errs.append(invalid(f"{fld}.service.port.number", pnum, "must be between 1 and 65535, inclusive"))
    else:
        errs.append(required(fld, "port name or number is required"))
    return errs


def validate_ingress(obj: Obj) -> list[FieldError]:
    """ValidateIngressSpec (pkg/apis/networking/validation): hosts, paths and backends as the
    real API server checks them, so a malformed Ingress is refused before any controller sees it."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = {}
    errs: list[FieldError] = []
    rules = spec.get("rules") or []
    if not rules and spec.get("defaultBackend") is None:
        errs.append(
            invalid(
                "spec",
                GoLiteral("[]networking.IngressRule(nil)"),
                "either `defaultBackend` or `rules` must be specified",
            )
        )
    if spec.get("defaultBackend") is not None:
        errs += _ingress_backend("spec.defaultBackend", spec["defaultBackend"])
    for i, r in enumerate(rules if isinstance(rules, list) else []):
        fld = f"spec.rules[{i}]"
        if not isinstance(r, dict):
            errs.append(invalid(fld, r, "must be an object"))
            continue
        host = r.get("host")
        if host:
            try:
                ipaddress.ip_address(str(host))
                errs.append(invalid(f"{fld}.host", host, "must be a DNS name, not an IP address"))
            except ValueError:
                errs += _ingress_host(f"{fld}.host", host)
        http = r.get("http")
        if http is None:
            continue
        paths = (http or {}).get("paths") if isinstance(http, dict) else None
        if not paths:
            errs.append(required(f"{fld}.http.paths", ""))
            continue
        for j, p in enumerate(paths):
            pf = f"{fld}.http.paths[{j}]"
            if not isinstance(p, dict):
                errs.append(invalid(pf, p, "must be an object"))
                continue
            path, kind = p.get("path") or "", p.get("pathType")
            if not isinstance(path, str):
                errs.append(invalid(f"{pf}.path", path, "must be a string"))
                continue
            if kind is None:
                errs.append(required(f"{pf}.pathType", "pathType must be specified"))
            elif kind in ("Exact", "Prefix"):
                if not path.startswith("/"):
                    errs.append(invalid(f"{pf}.path", path, "must be an absolute path"))
                for seq in _INGRESS_PATH_SEQUENCES:
                    if seq in path:
                        errs.append(invalid(f"{pf}.path", path, f"must not contain '{seq}'"))
                for suffix in _INGRESS_PATH_SUFFIXES:
                    if path.endswith(suffix):
                        errs.append(invalid(f"{pf}.path", path, f"cannot end with '{suffix}'"))
            elif kind == "ImplementationSpecific":
                if path and not path.startswith("/"):
                    errs.append(invalid(f"{pf}.path", path, "must be an absolute path"))
            else:
                errs.append(not_supported(f"{pf}.pathType", kind, ["Exact", "ImplementationSpecific", "Prefix"]))
            errs += _ingress_backend(f"{pf}.backend", p.get("backend"))
    for i, t in enumerate(spec.get("tls") or []):
        if not isinstance(t, dict):
            errs.append(invalid(f"spec.tls[{i}]", t, "must be an object"))
            continue
        for j, h in enumerate(t.get("hosts") or []):
            errs += _ingress_host(f"spec.tls[{i}].hosts[{j}]", h)
        secret = t.get("secretName")
        if secret:
            errs += [invalid(f"spec.tls[{i}].secretName", secret, m) for m in is_subdomain(str(secret))]
    return errs


# -- autoscaling, policy, scheduling -------------------------------------------------------


def default_hpa(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    b = spec.setdefault("behavior", {})
    b.setdefault(
        "scaleUp",
        {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        },
    )
    b.setdefault(
        "scaleDown",
        {
            "stabilizationWindowSeconds": 300,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    )


def validate_hpa(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind"):
        errs.append(required("spec.scaleTargetRef.kind"))
    if not ref.get("name"):
        errs.append(required("spec.scaleTargetRef.name"))
    mx, mn = spec.get("maxReplicas"), spec.get("minReplicas", 1)
    if not isinstance(mx, int) or mx < 1:
        errs.append(invalid("spec.maxReplicas", mx, "must be greater than or equal to 1"))
    elif isinstance(mn, int) and mn > mx:
        errs.append(invalid("spec.maxReplicas", mx, "must be greater than or equal to `minReplicas`"))
    return errs


def validate_pdb(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    if "minAvailable" in spec and "maxUnavailable" in spec:
        return [invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set")]
    return []


# -- services -----------------------------------------------------------------------


def default_service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for p in spec.get("ports") or []:
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p.get("port"))
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    obj.setdefault("status", {"loadBalancer": {}})


def validate_service(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    typ = spec.get("type", "ClusterIP")
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if typ not in types:
        errs.append(not_supported("spec.type", typ, types))
    ports = spec.get("ports") or []
    if not ports and typ != "ExternalName" and spec.get("clusterIP") != "None":
        errs.append(required("spec.ports"))
    names: set[str] = set()
    for i, p in enumerate(ports):
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            errs.append(invalid(f"spec.ports[{i}].port", port, "must be between 1 and 65535, inclusive"))
        if len(ports) > 1 and not p.get("name"):
            errs.append(required(f"spec.ports[{i}].name"))
        if p.get("name"):
            if p["name"] in names:
                errs.append(FieldError("FieldValueDuplicate", f"spec.ports[{i}].name", "", p["name"]))
            names.add(p["name"])
    if typ == "ExternalName" and not spec.get("externalName"):
        errs.append(required("spec.externalName"))
    cip = spec.get("clusterIP")
    if cip not in (None, "", "None"):  # kube-apiserver's ValidateService: an IP (here IPv4: ipFamilies)
        try:
            ipaddress.IPv4Address(str(cip))
        except ValueError:
            errs.append(invalid("spec.clusterIPs[0]", cip, "must be a valid IPv4 address, (e.g. 10.9.8.7)"))
    return errs


def validate_service_update(new: Obj, old: Obj) -> list[FieldError]:
    a = (new.get("spec") or {}).get("clusterIP")
    b = (old.get("spec") or {}).get("clusterIP")
    if b and a != b:
        return [invalid("spec.clusterIP", a, "field is immutable")]
    return []


# -- config -------------------------------------------------------------------------


def default_secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")
    sd = obj.pop("stringData", None)
    if isinstance(sd, dict):
        data = obj.setdefault("data", {}) or {}
        obj["data"] = data
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


_CONFIG_KEY = r"[-._a-zA-Z0-9]+"


def validate_data_keys(obj: Obj, fld: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for k in obj.get(fld) or {}:
        if not re.fullmatch(_CONFIG_KEY, k):
            errs.append(
                invalid(
                    f"{fld}[{k}]",
                    k,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or "
                    f"'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                    f"validation is '{_CONFIG_KEY}')",
                )
            )
    return errs


def validate_secret(obj: Obj) -> list[FieldError]:
    errs = validate_data_keys(obj, "data")
    for k, v in (obj.get("data") or {}).items():
        try:
            base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            errs.append(invalid(f"data[{k}]", "<secret contents redacted>", "illegal base64 data"))
    return errs


def validate_immutable_data(new: Obj, old: Obj) -> list[FieldError]:
    if old.get("immutable") and new.get("data") != old.get("data"):
        return [forbidden_field("data", "field is immutable when `immutable` is set")]
    return []


def default_limitrange(obj: Obj) -> None:
    """SetDefaults_LimitRangeItem: default <- max, defaultRequest <- default, then <- min."""
    for item in (obj.get("spec") or {}).get("limits") or []:
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        default = item.setdefault("default", {}) or {}
        item["default"] = default
        req = item.setdefault("defaultRequest", {}) or {}
        item["defaultRequest"] = req
        for k, v in (item.get("max") or {}).items():
            default.setdefault(k, v)
        for k, v in default.items():
            req.setdefault(k, v)
        for k, v in (item.get("min") or {}).items():
            req.setdefault(k, v)
        if not default:
            del item["default"]
        if not req:
            del item["defaultRequest"]
