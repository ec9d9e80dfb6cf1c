"""Ingress through the real nginx (runtime/kube/node/ingress.py) in a real sandbox.

Real runtimed + runc, a lab-base sandbox with ``services: ["kubernetes"]``, the real kubectl
and curl inside it, apps in pods of the sandbox's own engine (a Python echo server that
answers with its name, the path and the Host it was sent), the catalog's nginx as the
controller. Every rule kind of module 5 by real HTTP: hosts, Prefix vs Exact vs
ImplementationSpecific, longest prefix, the default backend and nginx's 404, TLS with SNI
(a certificate made here, verified by curl), rewrite-target with capture groups, classes
(the default class, another controller's class ignored), unsupported annotations reported,
status.loadBalancer, and the configuration following changes of Ingresses, Services and
endpoints. The port preview reaches the controller on port 80.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.client import PREVIEW_URL, preview_headers, resolve_token
from tests.runtime import labbox
from tests.runtime.daemon_helpers import RealDaemon
from tests.runtime.labbox import lab_box, lab_daemon

HOST_RESOURCES = [
    "--subnet",
    "10.236.0.0/20",
    "--bridge",
    "kltestig",
    "--cgroup-parent",
    "kubelab-testig",
    "--uid-start",
    str(4_000_000_000),
]

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

ECHO = """
import http.server, json, os, socket
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"svc": os.environ["NAME"], "path": self.path, "host": self.headers.get("Host"),
                           "proto": self.headers.get("X-Forwarded-Proto"), "pod": socket.gethostname()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
"""


def _app(name: str, port: int) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: shop}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: echo
        image: python:3.11-slim
        command: [python3, /app/echo.py]
        env: [{{name: NAME, value: {name}}}, {{name: PORT, value: "{port}"}}]
        ports: [{{name: http, containerPort: {port}}}]
        readinessProbe: {{tcpSocket: {{port: {port}}}, periodSeconds: 1}}
        volumeMounts: [{{name: app, mountPath: /app}}]
      volumes: [{{name: app, configMap: {{name: echo}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: {port}, targetPort: http}}]
"""


SETUP = f"""
set -e
kubectl create namespace shop >/dev/null
cat >/tmp/echo.py <<'EOF'
{ECHO}
EOF
kubectl -n shop create configmap echo --from-file=echo.py=/tmp/echo.py >/dev/null
cat >/tmp/apps.yaml <<'EOF'
{_app("web", 80)}
---
{_app("api", 8080)}
EOF
kubectl apply -f /tmp/apps.yaml >/dev/null
kubectl -n shop rollout status deploy/web --timeout=180s >/dev/null
kubectl -n shop rollout status deploy/api --timeout=180s >/dev/null
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[RealDaemon]:
    with lab_daemon("rtig-", HOST_RESOURCES) as d:
        yield d


@pytest.fixture(scope="module")
def box(daemon: RealDaemon) -> Iterator[dict[str, Any]]:
    with lab_box(daemon, SETUP, timeout=300) as b:
        yield b


def run(daemon: RealDaemon, sid: str, script: str, timeout: float = 120) -> tuple[int, str]:
    return labbox.run(daemon, sid, script, timeout)


def ok(daemon: RealDaemon, sid: str, script: str, timeout: float = 120) -> str:
    code, out = run(daemon, sid, "set -e\n" + script, timeout)
    assert code == 0, out
    return out


def apply(daemon: RealDaemon, sid: str, manifest: str) -> None:
    ok(daemon, sid, f"kubectl apply -f - >/dev/null <<'EOF'\n{manifest}\nEOF")


def fetch(daemon: RealDaemon, sid: str, url: str, host: str | None = None, extra: str = "") -> tuple[int, str]:
    """(status, body) of a curl in the sandbox's terminal."""
    h = f"-H 'Host: {host}'" if host else ""
    script = f"rm -f /tmp/body; curl -sS -m 10 {h} {extra} -o /tmp/body -w '%{{http_code}}\\n' '{url}'; cat /tmp/body"
    out = ok(daemon, sid, script)
    code, _, body = out.partition("\n")
    return int(code), body


def until(daemon: RealDaemon, sid: str, url: str, host: str | None, want: str, extra: str = "") -> str:
    """Poll (the controller applies changes asynchronously, as ingress-nginx does) until the
    answer's status line and body, ``"<status> <body>"``, contain ``want``; return the last."""
    h = f"-H 'Host: {host}'" if host else ""
    script = f"""
for i in $(seq 150); do
  rm -f /tmp/body
  last="$(curl -s -m 5 {h} {extra} -o /tmp/body -w '%{{http_code}}' '{url}') $(cat /tmp/body 2>/dev/null)"
  case "$last" in *{_sh(want)}*) break;; esac
  sleep 0.2
done
echo "$last"
"""
    code, out = run(daemon, sid, script, timeout=90)
    assert code == 0, out
    return out.strip()


def _sh(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def echo(body: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(body)
    return doc


SHOP = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: shop}
spec:
  rules:
  - host: shop.local
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
"""


@pytest.fixture(scope="module")
def shop(daemon: RealDaemon, box: dict[str, Any]) -> dict[str, Any]:
    apply(daemon, box["id"], SHOP)
    got = until(daemon, box["id"], "http://localhost/api", "shop.local", '"svc": "api"')
    if not got.startswith("200"):
        pytest.fail(f"the Ingress did not route: {got}\n{diagnose(daemon, box['id'])}")
    return box


def diagnose(daemon: RealDaemon, sid: str) -> str:
    """What a failed wait leaves to read: the controller's objects, events and logs, runtimed's log."""
    _, out = run(
        daemon,
        sid,
        "kubectl get ingress,ingressclass -A; kubectl -n ingress-nginx get all; "
        "kubectl -n ingress-nginx describe pods | tail -30; kubectl get events -A | tail -20; "
        "kubectl -n ingress-nginx logs deploy/ingress-nginx-controller --tail=20",
    )
    return out + "\n--- runtimed ---\n" + daemon.logs()[-3000:]


def test_installed_like_ingress_nginx_and_status_has_the_address(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    sid = shop["id"]
    out = ok(
        daemon,
        sid,
        "kubectl get ingressclass nginx -o json; echo ===; kubectl -n shop get ingress shop -o json; echo ===;"
        " kubectl -n ingress-nginx get deploy,svc,cm -o name",
    )
    cls_s, ing_s, names = out.split("===\n")
    cls, ing = json.loads(cls_s), json.loads(ing_s)
    assert cls["spec"]["controller"] == "k8s.io/ingress-nginx"
    assert cls["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    assert ing["spec"]["ingressClassName"] == "nginx"  # the DefaultIngressClass admission gave it
    for name in ("deployment.apps/ingress-nginx-controller", "service/ingress-nginx-controller"):
        assert name in names.split(), names
    got = ok(daemon, sid, "kubectl -n shop get ingress shop -o jsonpath='{.status.loadBalancer.ingress[0].ip}'")
    for _ in range(50):
        if got:
            break
        got = ok(
            daemon,
            sid,
            "sleep 0.2; kubectl -n shop get ingress shop -o jsonpath='{.status.loadBalancer.ingress[0].ip}'",
        )
    assert got == shop["ip"]
    # the address works as the ingress address, the lesson's curl
    status, body = fetch(daemon, sid, f"http://{got}/api/orders", "shop.local")
    assert status == 200 and echo(body)["svc"] == "api" and echo(body)["path"] == "/api/orders"
    assert echo(body)["host"] == "shop.local"
    events = ok(daemon, sid, "kubectl -n shop get events --field-selector involvedObject.name=shop -o json")
    assert any(e["reason"] == "Sync" for e in json.loads(events)["items"]), events


def test_host_and_prefix_rules(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    sid = shop["id"]
    for path, svc in (("/api", "api"), ("/api/", "api"), ("/api/x/y", "api"), ("/apiary", "web"), ("/", "web")):
        status, body = fetch(daemon, sid, f"http://localhost{path}", "shop.local")
        assert status == 200 and echo(body)["svc"] == svc, (path, body)
        assert echo(body)["path"] == path
    status, body = fetch(daemon, sid, "http://localhost/api", "unknown.local")
    assert status == 404 and "404 Not Found" in body and "nginx" in body  # the default backend's 404


def test_exact_before_prefix_and_longest_prefix_first(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    sid = shop["id"]
    apply(
        daemon,
        sid,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: paths, namespace: shop}
spec:
  ingressClassName: nginx
  rules:
  - host: paths.local
    http:
      paths:
      - {path: /a, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /a, pathType: Exact, backend: {service: {name: api, port: {number: 8080}}}}
      - {path: /a/b/c, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: api, port: {number: 8080}}}}
      - {path: /impl, pathType: ImplementationSpecific, backend: {service: {name: api, port: {number: 8080}}}}
""",
    )
    until(daemon, sid, "http://localhost/exact", "paths.local", '"svc": "api"')
    cases = {
        "/a": "api",  # Exact beats the Prefix of the same path
        "/a/": "web",
        "/a/b": "web",
        "/a/b/c": "api",  # the longest prefix wins
        "/a/b/c/d": "api",
        "/a/b/cd": "web",  # Prefix matches whole segments only
        "/exact": "api",
        "/impl": "api",
        "/implementation": "api",  # ImplementationSpecific: nginx's plain prefix, as ingress-nginx
    }
    for path, svc in cases.items():
        status, body = fetch(daemon, sid, f"http://localhost{path}", "paths.local")
        assert status == 200 and echo(body)["svc"] == svc, (path, status, body)
    for path in ("/exact/", "/exactly", "/b"):
        status, body = fetch(daemon, sid, f"http://localhost{path}", "paths.local")
        assert status == 404, (path, status, body)


def test_default_backend_and_classes(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    sid = shop["id"]
    apply(
        daemon,
        sid,
        """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: other}
spec: {controller: example.com/other}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: theirs, namespace: shop}
spec:
  ingressClassName: other
  rules:
  - host: other.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
""",
    )
    # a host-less rule and a host only another controller serves both fall to nginx's 404
    status, body = fetch(daemon, sid, "http://localhost/", "other.local")
    assert status == 404, body
    out = ok(daemon, sid, "kubectl -n shop get ingress theirs -o jsonpath='{.status.loadBalancer}'")
    assert "ip" not in out
    apply(
        daemon,
        sid,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fallback, namespace: shop}
spec:
  defaultBackend: {service: {name: api, port: {number: 8080}}}
""",
    )
    got = until(daemon, sid, "http://localhost/anything", "nobody.local", '"svc": "api"')
    assert got.startswith("200"), got
    status, body = fetch(daemon, sid, "http://localhost/anything", "other.local")
    assert status == 200 and echo(body)["svc"] == "api"  # still not routed by the other class's rule
    status, body = fetch(daemon, sid, "http://localhost/", "shop.local")
    assert status == 200 and echo(body)["svc"] == "web"  # hosts with rules keep them
    ok(daemon, sid, "kubectl -n shop delete ingress fallback >/dev/null")
    got = until(daemon, sid, "http://localhost/anything", "nobody.local", "404")
    assert got.startswith("404"), got


def _cert(host: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem


def test_tls_from_a_secret_with_sni(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    sid = shop["id"]
    crt, key = _cert("secure.local")
    b64 = base64.b64encode
    ok(
        daemon,
        sid,
        f"""
echo {b64(crt).decode()} | base64 -d > /tmp/secure.crt
echo {b64(key).decode()} | base64 -d > /tmp/secure.key
kubectl -n shop create secret tls secure-tls --cert=/tmp/secure.crt --key=/tmp/secure.key >/dev/null
""",
    )
    apply(
        daemon,
        sid,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure, namespace: shop}
spec:
  tls: [{hosts: [secure.local], secretName: secure-tls}]
  rules:
  - host: secure.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
""",
    )
    # curl verifies the certificate against the one made here: only SNI picks it
    resolve = "--resolve secure.local:443:127.0.0.1 --cacert /tmp/secure.crt"
    got = until(daemon, sid, "https://secure.local/hello", None, '"svc": "web"', extra=resolve)
    assert got.startswith("200"), got
    body = echo(got.partition(" ")[2])
    assert body["proto"] == "https" and body["path"] == "/hello"
    # plain HTTP is redirected (ssl-redirect defaults to true when a host has TLS)
    status, _ = fetch(daemon, sid, "http://localhost/hello", "secure.local")
    assert status == 308
    out = ok(daemon, sid, "curl -sSI -m 10 -H 'Host: secure.local' http://localhost/hello | tr -d '\\r'")
    assert "Location: https://secure.local/hello" in out, out
    # another host over TLS gets the controller's fake certificate, which curl does not trust
    code, out = run(
        daemon, sid, "curl -sS -m 10 --resolve shop.local:443:127.0.0.1 --cacert /tmp/secure.crt https://shop.local/"
    )
    assert code == 60, out  # CURLE_PEER_FAILED_VERIFICATION
    out = ok(daemon, sid, "curl -skv -m 10 --resolve shop.local:443:127.0.0.1 https://shop.local/ 2>&1 >/dev/null")
    assert "Kubernetes Ingress Controller Fake Certificate" in out, out


def test_rewrite_target_with_capture_groups(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    sid = shop["id"]
    apply(
        daemon,
        sid,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: rewrite
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/use-regex: "true"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  rules:
  - host: rw.local
    http:
      paths:
      - {path: /shop(/|$)(.*), pathType: ImplementationSpecific, backend: {service: {name: api, port: {number: 8080}}}}
""",
    )
    got = until(daemon, sid, "http://localhost/shop/items/1?x=2", "rw.local", '"svc": "api"')
    assert got.startswith("200") and echo(got.partition(" ")[2])["path"] == "/items/1?x=2", got
    status, body = fetch(daemon, sid, "http://localhost/shop", "rw.local")
    assert status == 200 and echo(body)["path"] == "/"
    status, body = fetch(daemon, sid, "http://localhost/SHOP/a", "rw.local")  # ~* is case-insensitive
    assert status == 200 and echo(body)["path"] == "/a"


def test_unsupported_annotations_are_reported_not_silently_accepted(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    sid = shop["id"]
    apply(
        daemon,
        sid,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: annotated
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/limit-rps: "5"
    nginx.ingress.kubernetes.io/configuration-snippet: "return 200 pwned;"
spec:
  rules:
  - host: annotated.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
""",
    )
    got = until(daemon, sid, "http://localhost/", "annotated.local", '"svc": "web"')
    assert got.startswith("200"), got
    script = """
for i in $(seq 100); do
  out=$(kubectl -n shop get events --field-selector involvedObject.name=annotated,type=Warning -o json)
  case "$out" in *limit-rps*configuration-snippet*|*configuration-snippet*limit-rps*) break;; esac
  sleep 0.2
done
echo "$out"
"""
    events = json.loads(ok(daemon, sid, script))["items"]
    msgs = {e["message"] for e in events if e["reason"] == "UnsupportedAnnotation"}
    assert any("nginx.ingress.kubernetes.io/limit-rps" in m for m in msgs), msgs
    assert any("nginx.ingress.kubernetes.io/configuration-snippet" in m and "refused" in m for m in msgs), msgs
    assert all(e["source"]["component"] == "nginx-ingress-controller" for e in events)


def test_changes_to_ingresses_services_and_endpoints_are_applied(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    sid = shop["id"]
    # endpoints: no ready pod -> 503; back -> 200 from the new pod
    ok(daemon, sid, "kubectl -n shop scale deploy/api --replicas=0 >/dev/null")
    got = until(daemon, sid, "http://localhost/api", "shop.local", "503")
    assert got.startswith("503"), got
    ok(daemon, sid, "kubectl -n shop scale deploy/api --replicas=1 >/dev/null")
    ok(daemon, sid, "kubectl -n shop rollout status deploy/api --timeout=120s >/dev/null", timeout=150)
    got = until(daemon, sid, "http://localhost/api", "shop.local", '"svc": "api"')
    assert got.startswith("200"), got
    # the Ingress: /api now goes to web
    ok(
        daemon,
        sid,
        "kubectl -n shop patch ingress shop --type=json -p "
        """'[{"op": "replace", "path": "/spec/rules/0/http/paths/0/backend/service", """
        """"value": {"name": "web", "port": {"number": 80}}}]' >/dev/null""",
    )
    got = until(daemon, sid, "http://localhost/api", "shop.local", '"svc": "web"')
    assert got.startswith("200"), got
    # the Service: a port the Ingress does not name -> 503; named again -> 200
    ok(
        daemon,
        sid,
        "kubectl -n shop patch svc web --type=json "
        '-p \'[{"op": "replace", "path": "/spec/ports/0/port", "value": 81}]\' >/dev/null',
    )
    got = until(daemon, sid, "http://localhost/api", "shop.local", "503")
    assert got.startswith("503"), got
    ok(
        daemon,
        sid,
        "kubectl -n shop patch svc web --type=json "
        '-p \'[{"op": "replace", "path": "/spec/ports/0/port", "value": 80}]\' >/dev/null',
    )
    got = until(daemon, sid, "http://localhost/api", "shop.local", '"svc": "web"')
    assert got.startswith("200"), got
    ok(daemon, sid, f"kubectl apply -f - >/dev/null <<'EOF'\n{SHOP}\nEOF")


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("runtimed", timeout=30)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(self._path)
        self.sock = sock


def test_port_preview_reaches_the_controller_on_port_80(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    """The preview relays to the sandbox's address: its Host is not shop.local, so the host-less
    rules answer; a rule without a host is what a student previews in the browser."""
    sid = shop["id"]
    apply(
        daemon,
        sid,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: anyhost, namespace: shop}
spec:
  rules:
  - http:
      paths:
      - {path: /preview, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
""",
    )
    until(daemon, sid, "http://localhost/preview", None, '"svc": "api"')
    conn = _UnixHTTP(str(daemon.socket))
    try:
        conn.request(
            "GET",
            PREVIEW_URL.removeprefix("http://runtimed"),
            headers=preview_headers(resolve_token() or "", sid, 80, "preview/x"),
        )
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200, body
    assert echo(body)["svc"] == "api" and echo(body)["path"] == "/preview/x"


def test_a_new_controller_pod_gets_the_configuration_again(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    """The rendered file lives in the nginx container: a replacement pod (deleted, or its
    container restarted) starts from the bootstrap file and is given the configuration again."""
    sid = shop["id"]
    before = ok(daemon, sid, "kubectl -n ingress-nginx get pods -o name").split()
    ok(daemon, sid, "kubectl -n ingress-nginx delete pod --all --wait=false >/dev/null")
    script = f"""
for i in $(seq 300); do
  now=$(kubectl -n ingress-nginx get pods -o name --field-selector=status.phase=Running)
  [ -n "$now" ] && [ "$now" != "{" ".join(before)}" ] && break
  sleep 0.3
done
echo "$now"
"""
    after = ok(daemon, sid, script, timeout=150).split()
    assert after and after != before, (before, after)
    got = until(daemon, sid, "http://localhost/api/x", "shop.local", '"svc": "api"')
    assert got.startswith("200"), got


def test_after_a_runtimed_restart_the_controller_keeps_nginx_current(daemon: RealDaemon, shop: dict[str, Any]) -> None:
    """A new runtimed adopts the running nginx (the pod lives on) and keeps its file current:
    an Ingress deleted after the restart stops routing."""
    sid = shop["id"]
    apply(
        daemon,
        sid,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: restart, namespace: shop}
spec:
  rules:
  - host: restart.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
""",
    )
    assert until(daemon, sid, "http://localhost/", "restart.local", '"svc": "api"').startswith("200")
    try:
        assert daemon.stop() == 0
    finally:
        daemon.start()
    assert until(daemon, sid, "http://localhost/", "restart.local", '"svc": "api"').startswith("200")
    ok(daemon, sid, "kubectl -n shop delete ingress restart >/dev/null")
    got = until(daemon, sid, "http://localhost/", "restart.local", "404")
    assert got.startswith("404"), got
