"""Decoding the Kubernetes protobuf wire format into JSON-shaped objects.

client-go's generated clients for built-in types always send protobuf
(``Content-Type: application/vnd.kubernetes.protobuf``) and never fall back
to JSON, so ``kubectl create deployment``, ``kubectl create configmap``,
``kubectl auth can-i`` and friends POST protobuf bodies. We never *send*
protobuf (every client also accepts JSON), we only read it.

A body is the 4-byte magic ``k8s\\0`` followed by ``runtime.Unknown``
{typeMeta(1){apiVersion(1), kind(2)}, raw(2), contentEncoding(3), contentType(4)};
``raw`` is the object's message. The table below gives, per message, the
field numbers of the k8s.io/api types (stable by protobuf's compatibility
rules; tests/runtime/kube/machinery/test_protobuf_upstream.py checks every entry
against upstream's vendored generated.proto, machinery/upstream.py)
for the fields kubectl's object generators and helm's typed clients set,
and for the bodies of the other verbs (``DeleteOptions`` on DELETE, ``Scale``,
``Eviction``). Go's generated Marshal writes every non-pointer field, zero or
not, so a field that is not in the table is skipped when it holds its zero
value and otherwise refused (415, naming it): never silently dropped. Zero
scalars of non-pointer Go fields are dropped, as ``omitempty`` drops them in
JSON; ``P`` marks pointer fields, whose zero is meaningful (``replicas: 0``);
``IGNORED`` fields are what the server sets itself (``status``,
``managedFields``), not read from a request as the real server resets them.

A malformed body (bad envelope, truncated or over-long varints, invalid UTF-8,
a field of the wrong wire type) is a ``DecodeError`` (400); a body of a kind or
with a field we do not read is an ``UnsupportedError`` (415).
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

R = 1  # repeated
P = 2  # pointer: keep zero values
INLINE = 4  # an embedded Go struct: its fields appear at the parent's level in JSON
IGNORED = 8  # known and deliberately not read: what the server sets itself (status, managedFields)

# message -> field number -> (json name, type, flags)
# types: s string, i int, b bool, y bytes, ms map<string,string>, my map<string,bytes>,
#        mq map<string,Quantity>, q Quantity, io IntOrString, t Time (dropped), or a message
Schema = dict[str, dict[int, tuple[str, str, int]]]

SCHEMA: Schema = {
    "TypeMeta": {1: ("apiVersion", "s", 0), 2: ("kind", "s", 0)},
    "Unknown": {
        1: ("typeMeta", "TypeMeta", 0),
        2: ("raw", "y", 0),
        3: ("contentEncoding", "s", 0),
        4: ("contentType", "s", 0),
    },
    "ObjectMeta": {
        1: ("name", "s", 0),
        2: ("generateName", "s", 0),
        3: ("namespace", "s", 0),
        5: ("uid", "s", 0),
        6: ("resourceVersion", "s", 0),
        7: ("generation", "i", 0),
        8: ("creationTimestamp", "t", 0),
        9: ("deletionTimestamp", "t", 0),
        10: ("deletionGracePeriodSeconds", "i", P),
        11: ("labels", "ms", 0),
        12: ("annotations", "ms", 0),
        13: ("ownerReferences", "OwnerReference", R),
        14: ("finalizers", "s", R),
        17: ("managedFields", "ManagedFieldsEntry", R | IGNORED),
    },
    "ManagedFieldsEntry": {},
    # meta/v1 options and the bodies of subresources
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "i", P),
        2: ("preconditions", "Preconditions", 0),
        3: ("orphanDependents", "b", P),
        4: ("propagationPolicy", "s", P),
        5: ("dryRun", "s", R),
        6: ("ignoreStoreReadErrorWithClusterBreakingPotential", "b", P),
    },
    "Preconditions": {1: ("uid", "s", P), 2: ("resourceVersion", "s", P)},
    "Eviction": {1: ("metadata", "ObjectMeta", 0), 2: ("deleteOptions", "DeleteOptions", 0)},
    "Binding": {1: ("metadata", "ObjectMeta", 0), 2: ("target", "ObjectReference", 0)},
    "Scale": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "ScaleSpec", 0), 3: ("status", "ScaleStatus", IGNORED)},
    "ScaleSpec": {1: ("replicas", "i", 0)},
    "ScaleStatus": {},
    "OwnerReference": {
        1: ("kind", "s", 0),
        3: ("name", "s", 0),
        4: ("uid", "s", 0),
        5: ("apiVersion", "s", 0),
        6: ("controller", "b", P),
        7: ("blockOwnerDeletion", "b", P),
    },
    "LabelSelector": {1: ("matchLabels", "ms", 0), 2: ("matchExpressions", "LabelSelectorRequirement", R)},
    "LabelSelectorRequirement": {1: ("key", "s", 0), 2: ("operator", "s", 0), 3: ("values", "s", R)},
    # core/v1
    "ConfigMap": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("data", "ms", 0),
        3: ("binaryData", "my", 0),
        4: ("immutable", "b", P),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("data", "my", 0),
        3: ("type", "s", 0),
        4: ("stringData", "ms", 0),
        5: ("immutable", "b", P),
    },
    "Namespace": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("spec", "NamespaceSpec", 0),
        3: ("status", "NamespaceStatus", IGNORED),
    },
    "NamespaceSpec": {1: ("finalizers", "s", R)},
    "NamespaceStatus": {1: ("phase", "s", 0)},
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("secrets", "ObjectReference", R),
        3: ("imagePullSecrets", "LocalObjectReference", R),
        4: ("automountServiceAccountToken", "b", P),
    },
    "ObjectReference": {
        1: ("kind", "s", 0),
        2: ("namespace", "s", 0),
        3: ("name", "s", 0),
        4: ("uid", "s", 0),
        5: ("apiVersion", "s", 0),
        6: ("resourceVersion", "s", 0),
        7: ("fieldPath", "s", 0),
    },
    "LocalObjectReference": {1: ("name", "s", 0)},
    "Service": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("spec", "ServiceSpec", 0),
        3: ("status", "ServiceStatus", IGNORED),
    },
    "ServiceSpec": {
        1: ("ports", "ServicePort", R),
        2: ("selector", "ms", 0),
        3: ("clusterIP", "s", 0),
        4: ("type", "s", 0),
        5: ("externalIPs", "s", R),
        7: ("sessionAffinity", "s", 0),
        8: ("loadBalancerIP", "s", 0),
        9: ("loadBalancerSourceRanges", "s", R),
        10: ("externalName", "s", 0),
        11: ("externalTrafficPolicy", "s", 0),
        12: ("healthCheckNodePort", "i", 0),
        13: ("publishNotReadyAddresses", "b", 0),
        17: ("ipFamilyPolicy", "s", P),
        18: ("clusterIPs", "s", R),
        19: ("ipFamilies", "s", R),
        20: ("allocateLoadBalancerNodePorts", "b", P),
        21: ("loadBalancerClass", "s", P),
        22: ("internalTrafficPolicy", "s", P),
        23: ("trafficDistribution", "s", P),
    },
    "ServicePort": {
        1: ("name", "s", 0),
        2: ("protocol", "s", 0),
        3: ("port", "i", 0),
        4: ("targetPort", "io", 0),
        5: ("nodePort", "i", 0),
        6: ("appProtocol", "s", P),
    },
    "ServiceStatus": {1: ("loadBalancer", "LoadBalancerStatus", 0)},
    "LoadBalancerStatus": {},
    "ResourceQuota": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("spec", "ResourceQuotaSpec", 0),
        3: ("status", "ResourceQuotaStatus", IGNORED),
    },
    "ResourceQuotaSpec": {1: ("hard", "mq", 0), 2: ("scopes", "s", R)},
    "ResourceQuotaStatus": {},
    "Pod": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "PodSpec", 0), 3: ("status", "PodStatus", IGNORED)},
    "PodStatus": {},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "PodSpec", 0)},
    "PodSpec": {
        1: ("volumes", "Volume", R),
        2: ("containers", "Container", R),
        3: ("restartPolicy", "s", 0),
        4: ("terminationGracePeriodSeconds", "i", P),
        5: ("activeDeadlineSeconds", "i", P),
        6: ("dnsPolicy", "s", 0),
        7: ("nodeSelector", "ms", 0),
        8: ("serviceAccountName", "s", 0),
        9: ("serviceAccount", "s", 0),
        10: ("nodeName", "s", 0),
        11: ("hostNetwork", "b", 0),
        12: ("hostPID", "b", 0),
        13: ("hostIPC", "b", 0),
        15: ("imagePullSecrets", "LocalObjectReference", R),
        16: ("hostname", "s", 0),
        17: ("subdomain", "s", 0),
        19: ("schedulerName", "s", 0),
        20: ("initContainers", "Container", R),
        21: ("automountServiceAccountToken", "b", P),
        24: ("priorityClassName", "s", 0),
        25: ("priority", "i", P),
        30: ("enableServiceLinks", "b", P),
    },
    "Container": {
        1: ("name", "s", 0),
        2: ("image", "s", 0),
        3: ("command", "s", R),
        4: ("args", "s", R),
        5: ("workingDir", "s", 0),
        6: ("ports", "ContainerPort", R),
        7: ("env", "EnvVar", R),
        8: ("resources", "ResourceRequirements", 0),
        9: ("volumeMounts", "VolumeMount", R),
        13: ("terminationMessagePath", "s", 0),
        14: ("imagePullPolicy", "s", 0),
        16: ("stdin", "b", 0),
        17: ("stdinOnce", "b", 0),
        18: ("tty", "b", 0),
        20: ("terminationMessagePolicy", "s", 0),
    },
    "ContainerPort": {
        1: ("name", "s", 0),
        2: ("hostPort", "i", 0),
        3: ("containerPort", "i", 0),
        4: ("protocol", "s", 0),
        5: ("hostIP", "s", 0),
    },
    "EnvVar": {1: ("name", "s", 0), 2: ("value", "s", 0)},
    "ResourceRequirements": {1: ("limits", "mq", 0), 2: ("requests", "mq", 0)},
    "VolumeMount": {1: ("name", "s", 0), 2: ("readOnly", "b", 0), 3: ("mountPath", "s", 0), 4: ("subPath", "s", 0)},
    "Volume": {1: ("name", "s", 0)},
    # apps/v1
    "Deployment": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("spec", "DeploymentSpec", 0),
        3: ("status", "DeploymentStatus", IGNORED),
    },
    "DeploymentStatus": {},
    "DeploymentSpec": {
        1: ("replicas", "i", P),
        2: ("selector", "LabelSelector", 0),
        3: ("template", "PodTemplateSpec", 0),
        4: ("strategy", "DeploymentStrategy", 0),
        5: ("minReadySeconds", "i", 0),
        6: ("revisionHistoryLimit", "i", P),
        7: ("paused", "b", 0),
        9: ("progressDeadlineSeconds", "i", P),
    },
    "DeploymentStrategy": {1: ("type", "s", 0), 2: ("rollingUpdate", "RollingUpdateDeployment", 0)},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "io", 0), 2: ("maxSurge", "io", 0)},
    # batch/v1
    "Job": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "JobSpec", 0), 3: ("status", "JobStatus", IGNORED)},
    "JobStatus": {},
    "JobSpec": {
        1: ("parallelism", "i", P),
        2: ("completions", "i", P),
        3: ("activeDeadlineSeconds", "i", P),
        4: ("selector", "LabelSelector", 0),
        5: ("manualSelector", "b", P),
        6: ("template", "PodTemplateSpec", 0),
        7: ("backoffLimit", "i", P),
        8: ("ttlSecondsAfterFinished", "i", P),
        9: ("completionMode", "s", P),
        10: ("suspend", "b", P),
    },
    "CronJob": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("spec", "CronJobSpec", 0),
        3: ("status", "CronJobStatus", IGNORED),
    },
    "CronJobStatus": {},
    "CronJobSpec": {
        1: ("schedule", "s", 0),
        2: ("startingDeadlineSeconds", "i", P),
        3: ("concurrencyPolicy", "s", 0),
        4: ("suspend", "b", P),
        5: ("jobTemplate", "JobTemplateSpec", 0),
        6: ("successfulJobsHistoryLimit", "i", P),
        7: ("failedJobsHistoryLimit", "i", P),
        8: ("timeZone", "s", P),
    },
    "JobTemplateSpec": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "JobSpec", 0)},
    # autoscaling/v2, policy/v1, scheduling.k8s.io/v1
    "HorizontalPodAutoscaler": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "HorizontalPodAutoscalerSpec", 0)},
    "HorizontalPodAutoscalerSpec": {
        1: ("scaleTargetRef", "CrossVersionObjectReference", 0),
        2: ("minReplicas", "i", P),
        3: ("maxReplicas", "i", 0),
        4: ("metrics", "MetricSpec", R),
    },
    "CrossVersionObjectReference": {1: ("kind", "s", 0), 2: ("name", "s", 0), 3: ("apiVersion", "s", 0)},
    "MetricSpec": {1: ("type", "s", 0), 4: ("resource", "ResourceMetricSource", 0)},
    "ResourceMetricSource": {1: ("name", "s", 0), 2: ("target", "MetricTarget", 0)},
    "MetricTarget": {
        1: ("type", "s", 0),
        2: ("value", "q", P),
        3: ("averageValue", "q", P),
        4: ("averageUtilization", "i", P),
    },
    "PodDisruptionBudget": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "PodDisruptionBudgetSpec", 0)},
    "PodDisruptionBudgetSpec": {
        1: ("minAvailable", "io", P),
        2: ("selector", "LabelSelector", 0),
        3: ("maxUnavailable", "io", P),
        4: ("unhealthyPodEvictionPolicy", "s", P),
    },
    "PriorityClass": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("value", "i", 0),
        3: ("globalDefault", "b", 0),
        4: ("description", "s", 0),
        5: ("preemptionPolicy", "s", P),
    },
    # networking.k8s.io/v1
    "Ingress": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("spec", "IngressSpec", 0),
        3: ("status", "IngressStatus", IGNORED),
    },
    "IngressStatus": {1: ("loadBalancer", "IngressLoadBalancerStatus", 0)},
    "IngressLoadBalancerStatus": {},
    "IngressSpec": {
        1: ("defaultBackend", "IngressBackend", 0),
        2: ("tls", "IngressTLS", R),
        3: ("rules", "IngressRule", R),
        4: ("ingressClassName", "s", P),
    },
    "IngressBackend": {4: ("service", "IngressServiceBackend", 0)},
    "IngressServiceBackend": {1: ("name", "s", 0), 2: ("port", "ServiceBackendPort", 0)},
    "ServiceBackendPort": {1: ("name", "s", 0), 2: ("number", "i", 0)},
    "IngressTLS": {1: ("hosts", "s", R), 2: ("secretName", "s", 0)},
    "IngressRule": {1: ("host", "s", 0), 2: ("ingressRuleValue", "IngressRuleValue", INLINE)},
    "IngressRuleValue": {1: ("http", "HTTPIngressRuleValue", 0)},
    "HTTPIngressRuleValue": {1: ("paths", "HTTPIngressPath", R)},
    "HTTPIngressPath": {1: ("path", "s", 0), 2: ("backend", "IngressBackend", 0), 3: ("pathType", "s", P)},
    # rbac.authorization.k8s.io/v1
    "Role": {1: ("metadata", "ObjectMeta", 0), 2: ("rules", "PolicyRule", R)},
    "ClusterRole": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("rules", "PolicyRule", R),
        3: ("aggregationRule", "AggregationRule", 0),
    },
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", R)},
    "PolicyRule": {
        1: ("verbs", "s", R),
        2: ("apiGroups", "s", R),
        3: ("resources", "s", R),
        4: ("resourceNames", "s", R),
        5: ("nonResourceURLs", "s", R),
    },
    "RoleBinding": {1: ("metadata", "ObjectMeta", 0), 2: ("subjects", "Subject", R), 3: ("roleRef", "RoleRef", 0)},
    "ClusterRoleBinding": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("subjects", "Subject", R),
        3: ("roleRef", "RoleRef", 0),
    },
    "Subject": {1: ("kind", "s", 0), 2: ("apiGroup", "s", 0), 3: ("name", "s", 0), 4: ("namespace", "s", 0)},
    "RoleRef": {1: ("apiGroup", "s", 0), 2: ("kind", "s", 0), 3: ("name", "s", 0)},
    # authorization.k8s.io/v1
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "SelfSubjectAccessReviewSpec", 0)},
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes", 0),
        2: ("nonResourceAttributes", "NonResourceAttributes", 0),
    },
    "ResourceAttributes": {
        1: ("namespace", "s", 0),
        2: ("verb", "s", 0),
        3: ("group", "s", 0),
        4: ("version", "s", 0),
        5: ("resource", "s", 0),
        6: ("subresource", "s", 0),
        7: ("name", "s", 0),
    },
    "NonResourceAttributes": {1: ("path", "s", 0), 2: ("verb", "s", 0)},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "SubjectAccessReviewSpec", 0)},
    "LocalSubjectAccessReview": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "SubjectAccessReviewSpec", 0)},
    "SubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes", 0),
        2: ("nonResourceAttributes", "NonResourceAttributes", 0),
        3: ("user", "s", 0),
        4: ("groups", "s", R),
        6: ("uid", "s", 0),
    },
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "SelfSubjectRulesReviewSpec", 0)},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "s", 0)},
    # authentication.k8s.io/v1
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta", 0)},
    "TokenRequest": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "TokenRequestSpec", 0)},
    "TokenRequestSpec": {1: ("audiences", "s", R), 4: ("expirationSeconds", "i", P)},
}


class DecodeError(ValueError):
    """The body is not a well-formed protobuf message: 400 BadRequest, as kube-apiserver."""


class UnsupportedError(ValueError):
    """A well-formed body this cluster cannot read faithfully (a kind or a field it does not
    decode from protobuf): 415 UnsupportedMediaType, never a silent drop."""


MAX_DEPTH = 32  # nesting of length-delimited fields looked into (k8s objects are far shallower)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = 0
    result = 0
    while True:
        if i >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result >= 1 << 64:
                raise DecodeError("varint overflows 64 bits")
            return result, i
        shift += 7
        if shift >= 70:
            raise DecodeError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0 or num >= 1 << 29:
            raise DecodeError(f"invalid field number {num}")
        if wt == 0:
            v, i = _varint(buf, i)
            out.append((num, wt, v))
        elif wt in (1, 2, 5):
            if wt == 2:
                n, i = _varint(buf, i)
            else:
                n = 8 if wt == 1 else 4
            if n > len(buf) - i:
                raise DecodeError("truncated field")
            out.append((num, wt, buf[i : i + n]))
            i += n
        else:
            raise DecodeError(f"unsupported wire type {wt}")
    return out


def _text(val: Any) -> str:
    if not isinstance(val, bytes):
        raise DecodeError("a string field has a non-length-delimited wire type")
    try:
        return val.decode()
    except UnicodeDecodeError:
        raise DecodeError("a string field is not valid UTF-8") from None


def _int(val: Any) -> int:
    if not isinstance(val, int):
        raise DecodeError("an integer field has a non-varint wire type")
    return val


def _signed(val: Any) -> int:
    v = _int(val)
    return v - (1 << 64) if v >= 1 << 63 else v


def _bytes(val: Any) -> bytes:
    if not isinstance(val, bytes):
        raise DecodeError("a bytes field has a non-length-delimited wire type")
    return val


def _is_zero(wt: int, val: Any, depth: int = 0) -> bool:
    """A field Go's generated Marshal writes even when it holds its zero value (non-pointer
    strings, integers, structs): an empty string, 0, or a message whose fields are all zero."""
    if wt == 0:
        return bool(val == 0)
    if wt in (1, 5):
        return not any(val)
    if not val:
        return True
    if depth >= MAX_DEPTH:
        return False
    try:
        return all(_is_zero(w, v, depth + 1) for _, w, v in _fields(val))
    except DecodeError:
        return False


def _map(raw: bytes, value_type: str) -> tuple[str, Any]:
    k: str = ""
    v: Any = ""
    for num, _, val in _fields(raw):
        if num == 1:
            k = _text(val)
        elif num == 2:
            if value_type == "s":
                v = _text(val)
            elif value_type == "y":
                v = base64.b64encode(_bytes(val)).decode()
            else:  # Quantity{string=1}
                v = _quantity(_bytes(val))
    return k, v


def _quantity(raw: bytes) -> str:
    for num, _, val in _fields(raw):
        if num == 1:
            return _text(val)
    return "0"


def _int_or_string(raw: bytes) -> Any:
    typ, ival, sval = 0, 0, ""
    for num, _, val in _fields(raw):
        if num == 1:
            typ = _int(val)
        elif num == 2:
            ival = _signed(val)
        elif num == 3:
            sval = _text(val)
    return sval if typ == 1 else ival


def decode_message(raw: bytes, msg: str, path: str = "", depth: int = 0) -> dict[str, Any]:
    """One message as JSON. A field that is not in ``SCHEMA`` and holds anything but its zero
    value raises UnsupportedError naming it: the client meant something we would drop."""
    if depth > MAX_DEPTH:
        raise DecodeError("message nesting too deep")
    schema = SCHEMA.get(msg, {})
    out: dict[str, Any] = {}
    for num, wt, val in _fields(raw):
        spec = schema.get(num)
        if spec is None:
            if _is_zero(wt, val):
                continue
            raise UnsupportedError(
                f"field {num} of {msg} ({path or 'the object'}) is set, and this lab cluster does not read it "
                "from protobuf: send the object as JSON (kubectl apply, or create -f a manifest)"
            )
        name, typ, flags = spec
        if typ == "t" or flags & IGNORED:
            continue
        v: Any
        if typ in ("ms", "my", "mq"):
            k, mv = _map(_bytes(val), {"ms": "s", "my": "y", "mq": "q"}[typ])
            out.setdefault(name, {})[k] = mv
            continue
        if typ == "s":
            v = _text(val)
        elif typ == "i":
            v = _signed(val)
        elif typ == "b":
            v = bool(_int(val))
        elif typ == "y":
            v = base64.b64encode(_bytes(val)).decode()
        elif typ == "io":
            v = _int_or_string(_bytes(val))
        elif typ == "q":
            v = _quantity(_bytes(val))
        else:
            v = decode_message(_bytes(val), typ, f"{path}.{name}" if path else name, depth + 1)
        if flags & R:
            out.setdefault(name, []).append(v)
            continue
        if flags & INLINE and isinstance(v, dict):
            out.update(v)
            continue
        if not flags & P and typ in ("s", "i", "b", "y") and not v:
            continue
        out[name] = v
    return out


@dataclass
class Decoded:
    """A body decoded as far as it can be without knowing the endpoint (``predecode``): its
    envelope's kind, and the object or the error of decoding it. Pure data, so the slow
    part (a 3 MiB body of tiny fields takes about a second in Python) can run in a worker
    thread; ``result`` then answers exactly as ``decode`` would."""

    kind: str = ""
    obj: dict[str, Any] | None = None
    envelope_error: ValueError | None = None  # the envelope itself: before any kind check
    error: ValueError | None = None  # the object, or a kind we do not read

    def result(self, expect: Collection[str] = ()) -> dict[str, Any]:
        if self.envelope_error is not None:
            raise self.envelope_error
        if expect and self.kind not in expect:
            raise DecodeError(
                f"the body holds a {self.kind or 'kind-less object'}, this endpoint takes {', '.join(expect)}"
            )
        if self.error is not None:
            raise self.error
        assert self.obj is not None
        return self.obj


def predecode(body: bytes) -> Decoded:
    """Everything ``decode`` does that does not depend on the endpoint; never raises."""
    try:
        if not body.startswith(MAGIC):
            raise DecodeError("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]")
        unknown = decode_message(body[4:], "Unknown")
        if unknown.get("contentEncoding"):
            raise UnsupportedError(f"protobuf content encoding {unknown['contentEncoding']!r} is not supported")
    except ValueError as e:
        return Decoded(envelope_error=e)
    tm = unknown.get("typeMeta") or {}
    kind = tm.get("kind", "")
    if kind not in SCHEMA:
        return Decoded(kind, error=UnsupportedError(f"protobuf bodies of kind {kind!r} are not supported; send JSON"))
    try:
        obj = decode_message(base64.b64decode(unknown.get("raw", "")), kind)
    except ValueError as e:
        return Decoded(kind, error=e)
    ordered: dict[str, Any] = {"kind": kind, "apiVersion": tm.get("apiVersion", "")}
    ordered.update(obj)
    return Decoded(kind, ordered)


def decode(body: bytes, expect: Collection[str] = ()) -> dict[str, Any]:
    """Decode a protobuf request body into the object's JSON form.

    ``expect``: the kinds the endpoint takes (e.g. ``{"DeleteOptions"}`` on DELETE); a body of
    another kind is a DecodeError, as the real server's decoder into that type refuses it.
    """
    return predecode(body).result(expect)
