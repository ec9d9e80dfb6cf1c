"""The lab cluster's ingress controller: ingress-nginx, as far as the course teaches it.

What a student sees (as with ``minikube addons enable ingress`` or kind's ingress-nginx)
---------------------------------------------------------------------------------------
* The IngressClass ``nginx`` (controller ``k8s.io/ingress-nginx``), marked default with
  ``ingressclass.kubernetes.io/is-default-class: "true"``, exists from the cluster's start;
  the API server's DefaultIngressClass admission (apiserver/admission.py) gives it to new Ingresses
  that name no class.
* With the first Ingress this controller serves, the controller is installed in the
  namespace ``ingress-nginx``: the ConfigMap ``ingress-nginx-controller`` (the bootstrap
  nginx.conf), the Deployment ``ingress-nginx-controller`` (one pod running the catalog's
  real ``nginx:1.22``, ports 80 and 443 published on the node with ``hostPort`` as kind's
  manifest does, readiness on ``:10254/healthz``) and the Service ``ingress-nginx-controller``
  (NodePort). Installing on first need keeps Kubernetes labs that never use an Ingress from
  running an extra pod. What is missing of these objects (and the IngressClass) is created
  once per controller start: a student who deletes them has no ingress until runtimed
  restarts, which brings them back.
* ``curl -H 'Host: shop.local' http://localhost/`` in the sandbox's terminal, or on the
  node's address (the sandbox's; what ``status.loadBalancer.ingress`` of every served
  Ingress and ``kubectl get ingress`` show), reaches the nginx: hostPort publishing is the
  sandbox engine's (runtime/dockerapi/netns.py), so the port preview's port 80 (and 443)
  reaches it too; through the preview the request's Host is the sandbox's address, so the
  rules without ``host`` and the default backend answer there.

Which Ingresses: ``spec.ingressClassName`` naming an IngressClass whose controller is
``k8s.io/ingress-nginx``; the legacy annotation ``kubernetes.io/ingress.class: nginx``; and
Ingresses with no class at all (``--watch-ingress-without-class``). Others are ignored.

The controller (runtimed side)
------------------------------
``IngressController`` runs beside a sandbox's kubelet (service.py), in its own thread. It
keeps six watchers of the store (registered directly: they are not watch requests, but
they do count in ``store.watchers``, so a student has 44 of the 50 watches left) on
Ingresses, IngressClasses, Services, EndpointSlices, Secrets and the pods of
``ingress-nginx``; any event wakes it (and a 30 s resync; 1 s after a failed push). A sync snapshots those
objects on the API server's loop, renders ``nginx.conf`` (``render``, a pure function:
equal states give equal text) and, when the text, the certificates or the nginx container
changed, pushes them into the controller's container with one engine exec, as the real
controller writes its own file and reloads: a tar on stdin is unpacked under
``/etc/ingress-nginx``, ``nginx -t`` tests the new file and only then it replaces the live
one and ``nginx -s reload`` runs. A file nginx refuses (``nginx -t``) is traced back by its
line to the Ingress that produced it; that Ingress gets a Warning event with nginx's message
and the rest is pushed without it. Then each served Ingress gets its status
(``loadBalancer.ingress: [{ip: <node address>}]``) and events (``Sync``, and Warnings).

Routing, as ingress-nginx renders it
------------------------------------
* One ``server`` per host (wildcard ``*.example.com`` matches exactly one label), and the
  catch-all ``_`` for rules without a host. Every server listens on 80 and 443 (SNI): its
  host's TLS Secret if an Ingress lists the host under ``tls``, else the controller's
  self-signed "Kubernetes Ingress Controller Fake Certificate". A host with TLS redirects
  plain HTTP with 308 unless ``nginx.ingress.kubernetes.io/ssl-redirect: "false"``.
* ``Exact`` -> ``location = /p``; ``Prefix`` -> ``location = /p`` plus ``location /p/``
  (so ``/p`` matches ``/p`` and ``/p/x`` but not ``/px``); ``ImplementationSpecific`` -> a
  plain nginx prefix ``location /p``. nginx picks exact first, then the longest prefix.
* ``use-regex: "true"`` or a ``rewrite-target`` on any Ingress of a host turns every
  non-Exact path of that host into ``location ~* "^PATH"``, longest first, as ingress-nginx
  enforces; ``rewrite-target`` (with ``$1``.. capture groups) rewrites with
  ``rewrite "(?i)^PATH" TARGET break``.
* When two Ingresses define the same host and path, the older one wins.
* Requests no path matches go to the Ingress's ``spec.defaultBackend`` (for its hosts, and
  for the catch-all server: the oldest Ingress that has one), else to nginx's 404.
* Backends are the ready endpoints of the Service port's EndpointSlices (ingress-nginx
  proxies to endpoints, not to the ClusterIP), balanced round-robin; no Service, no port,
  no ready endpoint: 503. ExternalName Services are refused (Warning): they would make the
  controller reach outside the student's cluster. Only endpoint addresses in the pod
  network (10.244.0.0/24) are used.
* Headers as ingress-nginx sets them: Host, X-Request-ID, X-Real-IP, X-Forwarded-For,
  X-Forwarded-Host, X-Forwarded-Port, X-Forwarded-Proto, X-Scheme; WebSocket upgrades.

Hostile input: nothing of an Ingress, Service or Secret reaches the file unless it matches
a strict pattern (hosts: DNS names; Exact/Prefix paths: ``/`` and ``[A-Za-z0-9._~/-]``, no
``..`` segment; regex paths: no quote, backslash-quote, brace-less bracket tricks, spaces
or control characters, and must compile; rewrite targets: ``/``-led, ``[A-Za-z0-9._~/-]``
and ``$N``; names: DNS labels); upstream and certificate file names are ours (``u<N>``,
``<sha256>.pem``). Everything else is refused with a Warning event naming it, never
silently dropped. Annotations ``nginx.ingress.kubernetes.io/*`` other than
``rewrite-target``, ``use-regex`` and ``ssl-redirect`` are ignored with a Warning event;
``*-snippet`` annotations are refused as ingress-nginx refuses them since 1.9
(``allow-snippet-annotations: false``). Bounds: ``MAX_INGRESSES`` Ingresses,
``MAX_LOCATIONS`` paths, ``MAX_CONF_BYTES`` of configuration; what is past them is refused
with a Warning event. nginx runs inside the student's sandbox, as a pod: whatever it does is
within that sandbox's walls (cgroup, netns, firewall).

Not done: annotations other than the three above (auth, CORS, rate limits, canary,
backend-protocol, affinity...), the ConfigMap's settings, TCP/UDP services, the admission
webhook (an Ingress the API server accepts but the controller cannot serve is stored, then
reported by an event; the API server itself refuses what kube-apiserver's ValidateIngressSpec
refuses, registry/kinds.py ``validate_ingress``), IPv6, ``resource`` backends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import datetime
import hashlib
import io
import ipaddress
import logging
import re
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime import errors
from runtime.kube import registry
from runtime.kube.apiserver.client import Client
from runtime.kube.apiserver.store import Watcher
from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.meta import Obj, User
from runtime.kube.node.streaming import PodExec
from runtime.loops import call_on_loop

if TYPE_CHECKING:
    from runtime.dockerapi.engine import Engine
    from runtime.kube.node.kubelet import ClusterHost

log = logging.getLogger("runtime.kube.node.ingress")

T = TypeVar("T")

CLASS_NAME = "nginx"
CONTROLLER = "k8s.io/ingress-nginx"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
NAMESPACE = "ingress-nginx"
NAME = "ingress-nginx-controller"
CONTAINER = "controller"
COMPONENT = "nginx-ingress-controller"  # the events' source, as ingress-nginx reports
# the identity its writes carry: ingress-nginx's ServiceAccount, as its deployment runs it
INGRESS_USER = User(
    "system:serviceaccount:ingress-nginx:ingress-nginx",
    ("system:serviceaccounts", "system:serviceaccounts:ingress-nginx", "system:authenticated"),
)
IMAGE = "nginx:1.22"
ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io/"
SUPPORTED_ANNOTATIONS = frozenset({"rewrite-target", "use-regex", "ssl-redirect"})
POD_NETWORK = ipaddress.IPv4Network("10.244.0.0/24")
SLICE_SERVICE_NAME = "kubernetes.io/service-name"
HEALTH_PORT = 10254
CONF_DIR = "/etc/ingress-nginx"
BOOTSTRAP_DIR = "/etc/ingress-nginx-bootstrap"
LABELS = {
    "app.kubernetes.io/name": "ingress-nginx",
    "app.kubernetes.io/instance": "ingress-nginx",
    "app.kubernetes.io/component": "controller",
}

MAX_INGRESSES = 200
MAX_LOCATIONS = 1000
MAX_CONF_BYTES = 1024 * 1024
MAX_PATH = 256
MAX_PROBLEMS = 20  # Warning events per Ingress and sync
MAX_SECRET_BYTES = 64 * 1024
PUSH_TIMEOUT = 30.0
RESYNC = 30.0
RETRY = 1.0

R = registry.BY_GR
INGRESSES = R["ingresses.networking.k8s.io"]
CLASSES = R["ingressclasses.networking.k8s.io"]
SERVICES = R["services"]
SLICES = R["endpointslices.discovery.k8s.io"]
SECRETS = R["secrets"]
PODS = R["pods"]
NAMESPACES = R["namespaces"]
CONFIGMAPS = R["configmaps"]
DEPLOYMENTS = R["deployments.apps"]
EVENTS = R["events"]

# what may reach nginx.conf from an object (everything else is refused with an event)
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOST_RE = re.compile(rf"^(\*\.)?{_DNS_LABEL}(\.{_DNS_LABEL})*$")
NAME_RE = re.compile(rf"^{_DNS_LABEL}$")  # Service names (DNS-1035 labels are a subset)
PORT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")
PLAIN_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
# a regex path: no quotes, backslash only before an alphanumeric or a dot, no whitespace,
# no ';' '{' '}' '#' (nginx would need them quoted, and they are never needed here)
REGEX_PATH_RE = re.compile(r"^/(?:[A-Za-z0-9._~/\-()|^$*+?\[\],:=!@%&<>]|\\[A-Za-z0-9.])*$")
TARGET_RE = re.compile(r"^/(?:[A-Za-z0-9._~/\-]|\$[1-9])*$")
SNIPPET_RE = re.compile(r"snippet$")


# -- the renderer (pure) ---------------------------------------------------------------------------


@dataclass
class Snapshot:
    """What a sync renders from (copies of the store's objects)."""

    ingresses: list[Obj]
    classes: list[Obj]
    services: list[Obj]
    slices: list[Obj]
    secrets: list[Obj]  # the TLS Secrets Ingresses name (and only those)


@dataclass
class Problem:
    reason: str
    message: str


@dataclass
class Rendered:
    conf: str
    files: dict[str, bytes]  # path under CONF_DIR -> content (certs/<sha256>.pem)
    served: list[tuple[str, str]]  # (namespace, name) of every Ingress this controller serves
    problems: dict[tuple[str, str], list[Problem]]
    owners: dict[int, tuple[str, str]]  # line of nginx.conf -> the Ingress that produced it


@dataclass
class _Loc:
    key: tuple[str, str]  # (ns, name) of the Ingress
    path: str
    kind: str  # Exact | Prefix | ImplementationSpecific
    upstream: str | None  # None: 503
    label: str  # ns-service-port, for the access log
    rewrite: str | None
    redirect: bool


@dataclass
class _Server:
    host: str
    locs: list[_Loc] = field(default_factory=list)
    regex: bool = False
    cert: str | None = None  # file under CONF_DIR
    tls: bool = False  # listed under some Ingress's spec.tls (redirects plain HTTP)
    default: _Loc | None = None  # spec.defaultBackend of the Ingress that defines the host


def handled(ing: Obj, classes: dict[str, Obj]) -> bool:
    """Whether ingress-nginx (class ``nginx``) serves this Ingress."""
    cls = (ing.get("spec") or {}).get("ingressClassName")
    if cls:
        ic = classes.get(str(cls))
        return ic is not None and (ic.get("spec") or {}).get("controller") == CONTROLLER
    legacy = (ing["metadata"].get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION)
    if legacy is not None:
        return bool(legacy == CLASS_NAME)
    return True


def _key(o: Obj) -> tuple[str, str]:
    return (str(o["metadata"].get("namespace", "")), str(o["metadata"]["name"]))


def _age(o: Obj) -> tuple[str, str, str]:
    return (str(o["metadata"].get("creationTimestamp", "")), *_key(o))


def _quote(s: str) -> str:
    """An nginx string literal of text already checked against one of the patterns above
    (none of which admits a quote, whitespace or a trailing backslash)."""
    assert '"' not in s and "\n" not in s and not s.endswith("\\"), s
    return f'"{s}"'


def host_matches_cert(host: str, cert: x509.Certificate) -> bool:
    names: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    for n in names:
        n = n.lower()
        if n == host:
            return True
        if n.startswith("*.") and "." in host and host.split(".", 1)[1] == n[2:] and not host.startswith("*."):
            return True
    return False


def _tls_pem(secret: Obj) -> tuple[bytes, x509.Certificate] | str:
    """The PEM nginx gets (certificate chain, then key) and the leaf, or why not."""
    data = secret.get("data") or {}
    if "tls.crt" not in data or "tls.key" not in data:
        return "it has no tls.crt and tls.key"
    try:
        crt = base64.b64decode(str(data["tls.crt"]), validate=True)
        key = base64.b64decode(str(data["tls.key"]), validate=True)
    except (binascii.Error, ValueError):
        return "its data is not base64"
    if len(crt) + len(key) > MAX_SECRET_BYTES:
        return f"its certificate and key are larger than {MAX_SECRET_BYTES // 1024} KiB"
    try:
        certs = x509.load_pem_x509_certificates(crt)
        pkey = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as e:
        return f"it holds no valid PEM certificate and unencrypted key ({e})"
    leaf = certs[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*spki) != pkey.public_key().public_bytes(*spki):
        return "its key does not match its certificate"
    body = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    body += pkey.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return body, leaf


def _cert_file(pem: bytes) -> str:
    return f"certs/{hashlib.sha256(pem).hexdigest()}.pem"


def _server_name(host: str) -> str:
    if host.startswith("*."):  # Kubernetes' wildcard covers exactly one label; nginx's more
        return _quote("~^[^.]+" + re.escape(host[1:]).replace("\\-", "-") + "$")
    return host


def render(snap: Snapshot, default_pem: bytes, exclude: frozenset[tuple[str, str]] = frozenset()) -> Rendered:
    """nginx.conf, its certificate files, and what to tell each Ingress (``exclude``: Ingresses
    left out, e.g. after nginx refused what they produced)."""
    classes = {o["metadata"]["name"]: o for o in snap.classes}
    problems: dict[tuple[str, str], list[Problem]] = {}

    more: dict[tuple[str, str], int] = {}

    def warn(k: tuple[str, str], reason: str, msg: str) -> None:
        got = problems.setdefault(k, [])
        if len(got) < MAX_PROBLEMS:
            got.append(Problem(reason, msg))
        else:  # one event per problem, up to a point: a hostile Ingress must not flood events
            more[k] = more.get(k, 0) + 1

    services = {_key(s): s for s in snap.services}
    secrets = {_key(s): s for s in snap.secrets}
    slices: dict[tuple[str, str], list[Obj]] = {}
    for sl in snap.slices:
        svc = (sl["metadata"].get("labels") or {}).get(SLICE_SERVICE_NAME)
        if svc:
            slices.setdefault((str(sl["metadata"].get("namespace", "")), str(svc)), []).append(sl)

    ings = sorted((i for i in snap.ingresses if handled(i, classes)), key=_age)
    served = [_key(i) for i in ings]
    for extra in ings[MAX_INGRESSES:]:
        warn(_key(extra), "Rejected", f"not loaded: this ingress controller serves at most {MAX_INGRESSES} Ingresses")
    ings = [i for i in ings[:MAX_INGRESSES] if _key(i) not in exclude]

    upstreams: dict[tuple[str, str, str], tuple[str, list[str]]] = {}  # (ns, svc, port) -> (name, servers)

    def backend(k: tuple[str, str], b: Any) -> tuple[str | None, str] | None:
        """(upstream name or None for 503, log label) of an IngressBackend; None: refused."""
        if not isinstance(b, dict):
            return None
        if "resource" in b:
            warn(k, "UnsupportedBackend", "resource backends are not supported by this ingress controller")
            return None
        svc_ref = b.get("service")
        if not isinstance(svc_ref, dict):
            return None
        name = str(svc_ref.get("name", ""))
        port: Obj = svc_ref["port"] if isinstance(svc_ref.get("port"), dict) else {}
        pnum, pname = port.get("number"), port.get("name")
        if not NAME_RE.match(name) or len(name) > 63:
            warn(k, "InvalidBackend", f"invalid Service name {name[:80]!r}: it must be a DNS label")
            return None
        if isinstance(pnum, int) and not isinstance(pnum, bool) and 0 < pnum < 65536:
            port_s = str(pnum)
        elif isinstance(pname, str) and PORT_NAME_RE.match(pname):
            port_s = pname
        else:
            warn(k, "InvalidBackend", f"backend Service {name}: a port number (1-65535) or port name is required")
            return None
        label = f"{k[0]}-{name}-{port_s}"
        ukey = (k[0], name, port_s)
        if ukey in upstreams:
            return upstreams[ukey][0], label
        svc = services.get((k[0], name))
        if svc is None:
            return None, label
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            warn(
                k,
                "UnsupportedBackend",
                f"Service {name} is of type ExternalName: this ingress controller only proxies to the "
                "cluster's own pods",
            )
            return None, label
        sp = next(
            (
                p
                for p in spec.get("ports") or []
                if (port_s.isdigit() and p.get("port") == int(port_s)) or (p.get("name") == port_s)
            ),
            None,
        )
        if sp is None or str(sp.get("protocol", "TCP")) != "TCP":
            return None, label
        servers: list[str] = []
        for sl in slices.get((k[0], name), []):
            tport = next(
                (p.get("port") for p in sl.get("ports") or [] if (p.get("name") or "") == (sp.get("name") or "")),
                None,
            )
            if not isinstance(tport, int) or not 0 < tport < 65536:
                continue
            for ep in sl.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                if cond.get("ready") is False or cond.get("terminating"):
                    continue
                for addr in ep.get("addresses") or []:
                    try:
                        ip = ipaddress.IPv4Address(str(addr))
                    except ValueError:
                        continue
                    if ip not in POD_NETWORK:
                        warn(k, "InvalidEndpoint", f"endpoint {ip} of Service {name} is outside the pod network")
                        continue
                    servers.append(f"{ip}:{tport}")
        if not servers:
            return None, label
        uname = f"u{len(upstreams)}"
        upstreams[ukey] = (uname, sorted(set(servers)))
        return uname, label

    servers: dict[str, _Server] = {"_": _Server("_")}
    nlocs = 0
    catch_all_default: _Loc | None = None
    tls_hosts: dict[str, tuple[tuple[str, str], str | None]] = {}  # host -> (ingress, secret name)
    for ing in ings:
        k = _key(ing)
        meta, spec = ing["metadata"], ing.get("spec") or {}
        ann = meta.get("annotations") or {}
        for a in sorted(ann):
            if not str(a).startswith(ANNOTATION_PREFIX):
                continue
            short = str(a)[len(ANNOTATION_PREFIX) :]
            if SNIPPET_RE.search(short):
                warn(
                    k,
                    "UnsupportedAnnotation",
                    f"annotation {a} is refused: snippet annotations are disabled "
                    "(allow-snippet-annotations is false), as in ingress-nginx since 1.9",
                )
            elif short not in SUPPORTED_ANNOTATIONS:
                warn(k, "UnsupportedAnnotation", f"annotation {a} is not supported by this ingress controller: ignored")
        rewrite = ann.get(ANNOTATION_PREFIX + "rewrite-target")
        if rewrite is not None and not (isinstance(rewrite, str) and TARGET_RE.match(rewrite) and len(rewrite) <= 256):
            warn(
                k,
                "InvalidAnnotation",
                f"{ANNOTATION_PREFIX}rewrite-target {str(rewrite)[:80]!r} is ignored: it must be a path "
                "of letters, digits, '._~/-' and $1..$9",
            )
            rewrite = None
        use_regex = _flag(k, ann, "use-regex", False, warn)
        redirect = _flag(k, ann, "ssl-redirect", True, warn)
        regex = use_regex or rewrite is not None
        default_loc: _Loc | None = None
        if "defaultBackend" in spec:
            got = backend(k, spec.get("defaultBackend"))
            if got is not None:
                default_loc = _Loc(k, "/", "Prefix", got[0], got[1], None, redirect)
                if catch_all_default is None:
                    catch_all_default = default_loc
        for t in spec.get("tls") or []:
            if not isinstance(t, dict):
                continue
            secret = t.get("secretName")
            if secret is not None and not (isinstance(secret, str) and NAME_RE.match(secret.replace(".", "-"))):
                warn(k, "InvalidTLS", f"invalid TLS secretName {str(secret)[:80]!r}")
                secret = None
            for h in t.get("hosts") or []:
                h = str(h)
                if not HOST_RE.match(h) or len(h) > 253:
                    warn(k, "InvalidHost", f"invalid TLS host {h[:80]!r}: it must be a DNS name")
                    continue
                tls_hosts.setdefault(h, (k, secret))
        for ri, rule in enumerate(spec.get("rules") or []):
            if not isinstance(rule, dict):
                continue
            host = str(rule.get("host") or "")
            if host and (not HOST_RE.match(host) or len(host) > 253):
                warn(k, "InvalidHost", f"rule {ri}: invalid host {host[:80]!r}: it must be a DNS name")
                continue
            if (host or "_") not in servers:
                if nlocs >= MAX_LOCATIONS:  # a server costs as much as a path: both are bounded
                    warn(k, "Rejected", f"host {host} is not loaded: at most {MAX_LOCATIONS} hosts and paths in all")
                    continue
                nlocs += 1
            srv = servers.setdefault(host or "_", _Server(host or "_"))
            if host and srv.default is None and default_loc is not None:
                srv.default = default_loc
            srv.regex = srv.regex or regex
            for p in (rule.get("http") or {}).get("paths") or []:
                if not isinstance(p, dict):
                    continue
                path = str(p.get("path") or "/")
                kind = str(p.get("pathType") or "ImplementationSpecific")
                if kind not in ("Exact", "Prefix", "ImplementationSpecific"):
                    warn(k, "InvalidPath", f"path {path[:80]!r}: unknown pathType {kind[:40]!r}")
                    continue
                why = _path_problem(path, kind, regex)
                if why:
                    warn(k, "InvalidPath", f"path {path[:80]!r} ({kind}) is not loaded: {why}")
                    continue
                if nlocs >= MAX_LOCATIONS:
                    warn(k, "Rejected", f"path {path} is not loaded: at most {MAX_LOCATIONS} hosts and paths in all")
                    continue
                got = backend(k, p.get("backend"))
                if got is None:
                    warn(k, "InvalidBackend", f"path {path}: no valid backend")
                    continue
                nlocs += 1
                srv.locs.append(_Loc(k, path, kind, got[0], got[1], rewrite if regex else None, redirect))

    files: dict[str, bytes] = {"certs/default.pem": default_pem}
    cert_cache: dict[tuple[str, str], tuple[bytes, x509.Certificate] | str] = {}
    for host, srv in servers.items():
        if host == "_" or host not in tls_hosts:
            continue
        srv.tls = True
        k, secret = tls_hosts[host]
        if secret is None:
            continue
        skey = (k[0], secret)
        if skey not in cert_cache:
            obj = secrets.get(skey)
            cert_cache[skey] = f"Secret {k[0]}/{secret} does not exist" if obj is None else _tls_pem(obj)
        got_pem = cert_cache[skey]
        if isinstance(got_pem, str):
            msg = f"TLS Secret {secret}: {got_pem}"
            if not got_pem.startswith("Secret"):
                msg = f"TLS Secret {secret} is not usable: {got_pem}"
            warn(k, "InvalidTLS", msg + f"; host {host} is served with the default fake certificate")
            continue
        pem, leaf = got_pem
        if not host_matches_cert(host, leaf):
            warn(
                k,
                "InvalidTLS",
                f"the certificate of Secret {secret} is not valid for {host}; host {host} is served with "
                "the default fake certificate",
            )
            continue
        srv.cert = _cert_file(pem)
        files[srv.cert] = pem
    if catch_all_default is not None:
        servers["_"].default = catch_all_default
    for k, n in more.items():
        problems[k].append(Problem("Rejected", f"{n} more problems like the ones above are not reported one by one"))

    lines: list[str] = []
    owners: dict[int, tuple[str, str]] = {}

    def emit(text: str, owner: tuple[str, str] | None = None) -> None:
        if owner is not None:
            owners[len(lines) + 1] = owner
        lines.append(text)

    for ln in _HEAD.splitlines():
        emit(ln)
    for (_ns, _svc, _port), (uname, addrs) in sorted(upstreams.items(), key=lambda kv: int(kv[1][0][1:])):
        emit(f"    upstream {uname} {{")
        for a in addrs:
            emit(f"        server {a} max_fails=0;")
        emit("    }")
    for host in sorted(servers, key=lambda h: (h != "_", h)):
        _render_server(servers[host], emit)
    emit("}")
    conf = "\n".join(lines) + "\n"
    if len(conf) > MAX_CONF_BYTES:
        # the newest Ingresses go first until it fits: bounded, and the oldest keep working
        for ing in reversed(ings):
            k = _key(ing)
            if k in exclude:
                continue
            out = render(snap, default_pem, exclude | {k})
            out.problems.setdefault(k, []).append(
                Problem("Rejected", f"not loaded: the configuration would exceed {MAX_CONF_BYTES // 1024} KiB")
            )
            return out
    return Rendered(conf, files, served, problems, owners)


def _flag(
    k: tuple[str, str], ann: Obj, name: str, default: bool, warn: Callable[[tuple[str, str], str, str], None]
) -> bool:
    """A boolean annotation ("true"/"false"); anything else is reported and the default used."""
    value = ann.get(ANNOTATION_PREFIX + name)
    if value is None:
        return default
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    warn(
        k,
        "InvalidAnnotation",
        f'{ANNOTATION_PREFIX}{name} {str(value)[:80]!r} is ignored: it must be "true" or "false"',
    )
    return default


def _path_problem(path: str, kind: str, regex: bool) -> str:
    if len(path) > MAX_PATH:
        return f"longer than {MAX_PATH} characters"
    if not path.startswith("/"):
        return "it must be absolute"
    if kind != "Exact" and regex:
        if not REGEX_PATH_RE.match(path):
            return "it may hold letters, digits and regular expression operators, but no quotes, spaces, ';', '{', '}'"
        if re.search(r"\$(?![)|]|$)", path):
            return "'$' may only end the expression or an alternative (an anchor, never a variable)"
        try:
            re.compile(path)
        except re.error as e:
            return f"not a valid regular expression: {e}"
        return ""
    if not PLAIN_PATH_RE.match(path):
        return "it may only hold letters, digits and '._~/-' (enable use-regex for regular expressions)"
    if any(seg in (".", "..") for seg in path.split("/")):
        return "'.' and '..' segments never match (nginx normalises them away)"
    return ""


_HEAD = f"""# nginx.conf of the lab cluster's ingress controller (runtimed: runtime/kube/node/ingress.py)
daemon off;
worker_processes 1;
pid /run/nginx.pid;
error_log stderr notice;
events {{
    worker_connections 1024;
}}
http {{
    default_type text/html;
    server_names_hash_max_size 4096;
    server_names_hash_bucket_size 512;
    variables_hash_bucket_size 256;
    client_max_body_size 1m;
    log_format upstreaminfo '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] '
        '$upstream_addr $upstream_response_length $upstream_response_time $upstream_status $request_id';
    access_log /var/log/nginx/access.log upstreaminfo;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' close;
    }}
    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
    proxy_set_header X-Request-ID $request_id;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Scheme $scheme;
    proxy_connect_timeout 5s;
    proxy_read_timeout 60s;
    proxy_send_timeout 60s;
    proxy_next_upstream error timeout;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {{
        listen {HEALTH_PORT};
        access_log off;
        set $proxy_upstream_name "-";  # declares the variable the log format names
        location = /healthz {{
            return 200 "ok\\n";
        }}
        location / {{
            return 404;
        }}
    }}"""


def _render_server(srv: _Server, emit: Callable[..., None]) -> None:
    catch_all = srv.host == "_"
    ds = " default_server" if catch_all else ""
    cert = f"{CONF_DIR}/{srv.cert or 'certs/default.pem'}"
    emit("    server {")
    emit(f"        server_name {_server_name(srv.host)};")
    emit(f"        listen 80{ds};")
    emit(f"        listen 443 ssl{ds};")
    emit(f"        ssl_certificate {cert};")
    emit(f"        ssl_certificate_key {cert};")
    emit('        set $proxy_upstream_name "-";')
    seen: set[str] = set()
    blocks: list[tuple[tuple[int, int], str, _Loc]] = []  # (order, location head, loc)
    # oldest Ingress first: the first claim of a location wins; Exact paths before the
    # ``= /p`` a Prefix path also makes (an Exact rule of the same path beats a Prefix one)
    for loc in sorted(srv.locs, key=lambda x: x.kind != "Exact"):
        heads: list[str] = []
        if loc.kind == "Exact":
            heads = [f"= {loc.path}"]
        elif srv.regex:
            heads = [f"~* {_quote('^' + loc.path)}"]
        elif loc.kind == "Prefix":
            p = loc.path.rstrip("/")
            heads = [f"= {p}", f"{p}/"] if p else ["/"]
        else:
            heads = [loc.path]
        for h in heads:
            if h in seen:
                continue
            seen.add(h)
            regex = h.startswith("~")
            blocks.append(((1 if regex else 0, -len(loc.path) if regex else 0), h, loc))
    if "/" not in seen:
        fallback = srv.default or _Loc(("", ""), "/", "Prefix", None, "upstream-default-backend", None, False)
        blocks.append(((2, 0), "/", fallback))
    blocks.sort(key=lambda b: b[0])  # regex locations are tried in file order: longest first
    for _order, head, loc in blocks:
        owner = loc.key if loc.key != ("", "") else None
        emit(f"        location {head} {{", owner)
        emit(f'            set $proxy_upstream_name "{loc.label}";', owner)
        if srv.tls and loc.redirect and loc.key != ("", ""):
            emit('            if ($scheme = "http") {', owner)
            emit("                return 308 https://$host$request_uri;", owner)
            emit("            }", owner)
        if loc.key == ("", ""):
            emit("            return 404;")
        elif loc.upstream is None:
            emit("            return 503;", owner)
        else:
            if loc.rewrite is not None:
                emit(f"            rewrite {_quote('(?i)^' + loc.path)} {loc.rewrite} break;", owner)
            emit(f"            proxy_pass http://{loc.upstream};", owner)
        emit("        }", owner)
    emit("    }")


def bootstrap_conf() -> str:
    """The file nginx starts with (the ConfigMap's): the catch-all 404 on 80 and the health
    port; the controller pushes the real one once the container runs."""
    return (
        _HEAD
        + """
    server {
        listen 80 default_server;
        server_name _;
        location / {
            return 404;
        }
    }
}
"""
    )


def fake_certificate() -> bytes:
    """ingress-nginx's "Kubernetes Ingress Controller Fake Certificate" (self-signed, EC P-256):
    the certificate and key nginx presents for hosts without a usable TLS Secret."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Kubernetes Ingress Controller Fake Certificate"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("ingress.local")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# -- objects the controller installs ------------------------------------------------------------


def ingress_class() -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": CLASS_NAME,
            "labels": dict(LABELS),
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "spec": {"controller": CONTROLLER},
    }


# the bootstrap file only if the controller has not pushed one already (it may, as soon as
# the container runs)
_BOOT = (
    f"mkdir -p {CONF_DIR}/certs && {{ [ -e {CONF_DIR}/nginx.conf ] || "
    f"cp {BOOTSTRAP_DIR}/nginx.conf {CONF_DIR}/nginx.conf; }} && exec nginx -c {CONF_DIR}/nginx.conf"
)


def install_objects() -> list[tuple[registry.ResourceDef, Obj]]:
    """The namespace, ConfigMap, Deployment and Service of ingress-nginx, in creation order."""
    labels = dict(LABELS)
    return [
        (NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}}),
        (
            CONFIGMAPS,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
                "data": {"nginx.conf": bootstrap_conf()},
            },
        ),
        (
            DEPLOYMENTS,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": dict(LABELS)},
                    "strategy": {"type": "Recreate"},  # hostPorts: two pods cannot both hold 80
                    "template": {
                        "metadata": {"labels": dict(LABELS)},
                        "spec": {
                            "terminationGracePeriodSeconds": 5,
                            "containers": [
                                {
                                    "name": CONTAINER,
                                    "image": IMAGE,
                                    "command": ["/bin/sh", "-c", _BOOT],
                                    "ports": [
                                        {"name": "http", "containerPort": 80, "hostPort": 80, "protocol": "TCP"},
                                        {"name": "https", "containerPort": 443, "hostPort": 443, "protocol": "TCP"},
                                        {"name": "healthz", "containerPort": HEALTH_PORT, "protocol": "TCP"},
                                    ],
                                    "readinessProbe": {
                                        "httpGet": {"path": "/healthz", "port": HEALTH_PORT},
                                        "periodSeconds": 2,
                                    },
                                    "volumeMounts": [
                                        {"name": "bootstrap", "mountPath": BOOTSTRAP_DIR, "readOnly": True}
                                    ],
                                }
                            ],
                            "volumes": [{"name": "bootstrap", "configMap": {"name": NAME}}],
                        },
                    },
                },
            },
        ),
        (
            SERVICES,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
                "spec": {
                    "type": "NodePort",
                    "selector": dict(LABELS),
                    "ports": [
                        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
                    ],
                },
            },
        ),
    ]


# -- the controller ---------------------------------------------------------------------------------


NOT_RUNNING = "kubelab-ingress-nginx-not-running"
_PUSH_SCRIPT = f"""set -e
cd {CONF_DIR}
rm -rf incoming
mkdir -m 700 incoming
tar -x -o -C incoming -f -
mkdir -p certs
for f in incoming/certs/*.pem; do [ -e "$f" ] && mv -f "$f" certs/; done
if ! out=$(nginx -t -q -c {CONF_DIR}/incoming/nginx.conf 2>&1); then echo "$out" >&2; exit 3; fi
mv -f incoming/nginx.conf nginx.conf
rm -rf incoming
for f in certs/*.pem; do grep -qF "$f" nginx.conf || rm -f "$f"; done
# nginx not started yet (the container's shell is on its way to exec it): pushed again shortly
if [ -e /run/nginx.pid ]; then nginx -s reload -c {CONF_DIR}/nginx.conf; else echo {NOT_RUNNING}; fi
"""
_NGINX_LINE = re.compile(r"incoming/nginx\.conf:(\d+)")


class PushError(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


@dataclass
class _State:
    snapshot: Snapshot
    pod: Obj | None  # the controller's pod, if any
    installed: bool


class IngressController:
    """ingress-nginx for one sandbox's cluster (see the module docstring)."""

    def __init__(self, host: ClusterHost, engine: Engine) -> None:
        self.host = host
        self.engine = engine
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watchers: list[Watcher] = []
        self._watch_task: asyncio.Task[None] | None = None
        self._pushed: tuple[str, str] | None = None  # (container id, digest of what it runs)
        self._told: dict[tuple[str, str], tuple[str, frozenset[tuple[str, str]]]] = {}
        self._synced: dict[tuple[str, str], tuple[str, int]] = {}  # ingress -> (uid, generation) announced
        self._installed = False
        # after a push that failed for a reason of its own (nginx not started yet, or a container
        # the student broke): sync again in 1 s, doubling up to RESYNC while it keeps failing,
        # so a broken controller pod costs at most an exec every RESYNC seconds
        self._retry = 0.0
        self._default_pem = fake_certificate()

    # -- lifecycle -------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        """``fn`` on the API server's loop (the cluster is only touched there), from this thread."""
        if self.host.loop is None:
            return fn()

        async def run() -> T:
            return fn()

        return call_on_loop(self.host.loop, run(), what="lab cluster", timeout=30)

    def start(self) -> None:
        self._call(self._start_on_loop)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="ingress-nginx")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with contextlib.suppress(errors.RuntimeError):
            self._call(self._stop_on_loop)
        if self._thread is not None:
            self._thread.join(timeout=PUSH_TIMEOUT + 10)

    def _start_on_loop(self) -> None:
        c = self.host.cluster
        if c.store.get(CLASSES.gr, "", CLASS_NAME) is None:
            with contextlib.suppress(ApiError):
                c.create(CLASSES, "", ingress_class(), internal=True)
                c.controllers.reconcile()
        for gr, ns in (
            (INGRESSES.gr, None),
            (CLASSES.gr, None),
            (SERVICES.gr, None),
            (SLICES.gr, None),
            (SECRETS.gr, None),
            (PODS.gr, NAMESPACE),
        ):
            self._watchers.append(self._watch(gr, ns))
        if self.host.loop is not None:
            self._watch_task = self.host.loop.create_task(self._relay())

    def _watch(self, gr: str, ns: str | None) -> Watcher:
        w = Watcher(gr, ns, lambda _o: True)
        store = self.host.cluster.store
        w.pos = store.rv
        store.watchers.add(w)  # the system's own informer: not one of the student's watch requests
        return w

    def _stop_on_loop(self) -> None:
        store = self.host.cluster.store
        for w in self._watchers:
            w.closed = True
            w.wake.set()
            store.watchers.discard(w)
        self._watchers = []
        if self._watch_task is not None:
            self._watch_task.cancel()

    async def _relay(self) -> None:
        """Wake the sync thread on any event of the watched resources (on the loop)."""
        store = self.host.cluster.store
        while not self._stop.is_set():
            waits = [asyncio.ensure_future(w.wake.wait()) for w in self._watchers]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in waits:
                    t.cancel()
            changed = False
            for i, w in enumerate(list(self._watchers)):
                if not w.wake.is_set():
                    continue
                w.wake.clear()
                if w.closed:
                    return
                if w.expired:  # fell behind the watch cache: watch again and resync everything
                    store.watchers.discard(w)
                    self._watchers[i] = self._watch(w.gr, w.namespace)
                    changed = True
                    continue
                while store.next_event(w) is not None:
                    changed = True
            if changed:
                self._wake.set()

    def _loop(self) -> None:
        self._wake.set()
        while not self._stop.is_set():
            self._wake.wait(self._retry or RESYNC)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.sync()
            except errors.NotAvailable:
                return  # the API server's loop is gone
            except Exception:
                log.exception("ingress controller sync failed")

    # -- one sync ----------------------------------------------------------------------------

    def sync(self) -> None:
        state = self._call(self._snapshot)
        if not state.installed:
            return  # no Ingress of ours yet: nothing to render, no nginx to configure
        exclude: frozenset[tuple[str, str]] = frozenset()
        nginx_errors: dict[tuple[str, str], list[Problem]] = {}
        out = render(state.snapshot, self._default_pem)
        cid = self._container()
        for _attempt in range(4):
            if cid is None:
                break
            digest = hashlib.sha256(
                out.conf.encode() + b"".join(k.encode() + v for k, v in sorted(out.files.items()))
            ).hexdigest()
            if self._pushed == (cid, digest):
                self._retry = 0.0
                break
            try:
                self._push(cid, out)
                self._pushed = (cid, digest)
                self._retry = 0.0
                break
            except PushError as e:
                owner = out.owners.get(e.line or 0)
                if owner is None:
                    self._retry = min(RESYNC, self._retry * 2 or RETRY)
                    log.warning("ingress-nginx: configuration not applied (again in %g s): %s", self._retry, e)
                    break
                nginx_errors.setdefault(owner, []).append(
                    Problem("RejectedByNginx", f"not loaded: nginx refused what it produced: {e}")
                )
                exclude = exclude | {owner}
                out = render(state.snapshot, self._default_pem, exclude)
        for k, probs in nginx_errors.items():
            out.problems.setdefault(k, []).extend(probs)
        ip = str(((state.pod or {}).get("status") or {}).get("hostIP") or "")
        ready = cid is not None and self._pushed is not None and self._pushed[0] == cid
        self._call(lambda: self._report(out, ip if ready else ""))

    def _snapshot(self) -> _State:
        c = self.host.cluster
        st = c.store
        ings = [copy.deepcopy(o) for o in st.list(INGRESSES.gr)]
        classes = [copy.deepcopy(o) for o in st.list(CLASSES.gr)]
        by_class = {o["metadata"]["name"]: o for o in classes}
        mine = [i for i in ings if handled(i, by_class)]
        if mine and not self._installed:
            self._install()
        elif not self._installed and st.get(DEPLOYMENTS.gr, NAMESPACE, NAME) is not None:
            self._installed = True  # installed before a runtimed restart: keep its file current
        if not self._installed:  # a sandbox that never had an Ingress costs two short lists
            return _State(Snapshot(ings, classes, [], [], []), None, False)
        wanted = {
            (_key(i)[0], str(t.get("secretName")))
            for i in mine
            for t in (i.get("spec") or {}).get("tls") or []
            if isinstance(t, dict) and t.get("secretName")
        }
        secrets = [copy.deepcopy(o) for k in sorted(wanted) if (o := st.get(SECRETS.gr, *k)) is not None]
        pods = [p for p in st.list(PODS.gr, NAMESPACE) if _has_labels(p, LABELS)]
        pod = copy.deepcopy(pods[0]) if pods else None
        return _State(
            Snapshot(
                ings,
                classes,
                [copy.deepcopy(o) for o in st.list(SERVICES.gr)],
                [copy.deepcopy(o) for o in st.list(SLICES.gr)],
                secrets,
            ),
            pod,
            self._installed,
        )

    def _install(self) -> None:
        """Create what is missing of the controller's objects (on the loop)."""
        c = self.host.cluster
        self._installed = True
        for rdef, obj in install_objects():
            meta = obj["metadata"]
            if c.store.get(rdef.gr, meta.get("namespace", ""), meta["name"]) is not None:
                continue
            try:
                c.create(rdef, meta.get("namespace", ""), obj, internal=True)
            except ApiError as e:
                log.warning("ingress-nginx: could not create %s %s: %s", rdef.kind, meta["name"], e.message)
        c.controllers.reconcile()

    def _container(self) -> str | None:
        """The running nginx container of the controller's pod (the newest instance)."""
        try:
            found = self.engine.list(
                filters={
                    "label": [
                        f"io.kubernetes.pod.namespace={NAMESPACE}",
                        f"io.kubernetes.container.name={CONTAINER}",
                    ]
                }
            )
        except errors.RuntimeError:
            return None
        found = [c for c in found if str(c.get("State", "running")) == "running"]
        if not found:
            return None
        found.sort(key=lambda c: int(c.get("Created", 0)))
        return str(found[-1]["Id"])

    def _push(self, cid: str, out: Rendered) -> None:
        """Write the files into the container, test, swap and reload (one exec)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in [("nginx.conf", out.conf.encode()), *sorted(out.files.items())]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o600
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
        try:
            eid = self.engine.exec_create(
                cid,
                {
                    "Cmd": ["/bin/sh", "-c", _PUSH_SCRIPT],
                    "AttachStdin": True,
                    "AttachStdout": True,
                    "AttachStderr": True,
                },
            )
            stream = self.engine.exec_start(eid, detach=False, tty=False)
        except errors.RuntimeError as e:
            raise PushError(f"cannot exec in the controller's container: {e}", None) from None
        assert stream is not None
        px = PodExec(self.engine, eid, stream)
        output = b""
        try:
            writer = threading.Thread(target=self._feed, args=(px, buf.getvalue()), daemon=True)
            writer.start()
            deadline = time.monotonic() + PUSH_TIMEOUT
            while True:
                try:
                    item = px.read(timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise PushError("the configuration push timed out", None) from None
                if item is None:
                    break
                if len(output) < 65536:
                    output += item[1]
            writer.join(timeout=5)
            code = px.exit_code()
        finally:
            px.close()
        if code == 0 and NOT_RUNNING.encode() in output:
            raise PushError("nginx is not running yet", None)
        if code != 0:
            text = output.decode(errors="replace").strip()
            m = _NGINX_LINE.search(text)
            text = text.replace(f"{CONF_DIR}/incoming/", "")
            raise PushError(text[-600:] or f"exit code {code}", int(m.group(1)) if m else None)

    @staticmethod
    def _feed(px: Any, data: bytes) -> None:
        with contextlib.suppress(OSError, errors.RuntimeError):
            for i in range(0, len(data), 65536):
                px.write(data[i : i + 65536])
        with contextlib.suppress(OSError, errors.RuntimeError):
            px.close_stdin()

    def _report(self, out: Rendered, ip: str) -> None:
        """Statuses and events of the Ingresses (on the loop)."""
        c = self.host.cluster
        client = Client(c, COMPONENT, INGRESS_USER)
        changed = False
        for k in out.served:
            ing = c.store.get(INGRESSES.gr, *k)
            if ing is None:
                continue
            meta = ing["metadata"]
            gen = (str(meta["uid"]), int(meta.get("generation", 0)))
            if self._synced.get(k) != gen:
                self._synced[k] = gen
                c.controllers.event(ing, "Normal", "Sync", "Scheduled for sync", COMPONENT, client=client)
            probs = frozenset((p.reason, p.message) for p in out.problems.get(k, []))
            told = self._told.get(k)
            if told is None or told[0] != meta["uid"] or not probs <= told[1]:
                for reason, msg in sorted(probs - (told[1] if told and told[0] == meta["uid"] else frozenset())):
                    c.controllers.event(ing, "Warning", reason, msg, COMPONENT, client=client)
            self._told[k] = (str(meta["uid"]), probs)
            want = {"loadBalancer": {"ingress": [{"ip": ip}]}} if ip else {"loadBalancer": {}}
            if ing.get("status") != want and (ip or ((ing.get("status") or {}).get("loadBalancer") or {})):
                new = copy.deepcopy(ing)
                new["status"] = want
                client.update_status(INGRESSES, new)  # read just above, on this loop
                changed = True
        for k in [k for k in self._synced if k not in out.served]:
            self._synced.pop(k, None)
            self._told.pop(k, None)
        if changed:
            c.controllers.reconcile()


def _has_labels(o: Obj, want: dict[str, str]) -> bool:
    labels = o["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in want.items())
