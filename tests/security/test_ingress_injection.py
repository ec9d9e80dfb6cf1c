"""Hostile Ingresses cannot write nginx configuration, reach outside the student's cluster, or
grow without bound (runtime/kube/node/ingress.py).

A student is cluster-admin of their lab cluster: every field of an Ingress, a Service, an
EndpointSlice and a Secret is theirs to write. The renderer is checked on a matrix of
injection attempts (quotes, ``;``, braces, newlines, ``$`` variables, backslashes, ``..``,
snippet and lua annotations, names that are not names), reading the result back as nginx's
parser splits it (tests/runtime/nginxconf.py): no directive appears that a benign
configuration does not have, nothing of the payload reaches the file, and the Ingress gets a
Warning instead. Then in a real sandbox through the real nginx: the hostile objects are
reported, the student's good Ingress keeps working, a regular expression nginx refuses is
traced to its Ingress and left out, and endpoints or ExternalName Services pointing outside
the cluster are never proxied to.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from runtime import errors
from runtime.client import Client
from runtime.kube.node import ingress
from runtime.kube.node.ingress import MAX_CONF_BYTES, MAX_INGRESSES, MAX_LOCATIONS, MAX_PROBLEMS, Snapshot, render
from tests.runtime import nginxconf
from tests.runtime.conftest_daemon import private_daemon, real_sandboxes_available
from tests.runtime.daemon_helpers import RealDaemon
from tests.runtime.test_ingress_render import APPS, be, ing, path, rule
from tests.runtime.test_kube_service import IMAGES, _has_lab_base

PEM = b"pem"
MARK = "pwned"
Obj = dict[str, Any]

# what a benign configuration is made of: (context, directive)
BENIGN: set[tuple[tuple[str, ...], str]] = set()


def _snap(ings: list[Obj], services: list[Obj] | None = None, secrets: list[Obj] | None = None) -> Snapshot:
    return Snapshot(ings, [ingress.ingress_class()], services or APPS[0], APPS[1], secrets or [])


def _shape(conf: str) -> set[tuple[tuple[str, ...], str]]:
    return {(d.context, d.name) for d in nginxconf.parse(conf)}


def _benign() -> set[tuple[tuple[str, ...], str]]:
    if not BENIGN:
        tls = {"metadata": {"name": "t", "namespace": "shop"}, "data": {}}
        ok = [
            ing(
                "ok",
                {
                    "defaultBackend": be("web"),
                    "tls": [{"hosts": ["a.local"], "secretName": "t"}],
                    "rules": [
                        rule("a.local", path("/x", "Prefix", be("web")), path("/y", "Exact", be("nothing"))),
                        rule(None, path("/z", "ImplementationSpecific", be("api", 8080))),
                    ],
                },
            ),
            ing(
                "rw",
                {"rules": [rule("b.local", path("/s(/|$)(.*)", "ImplementationSpecific", be("web")))]},
                annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/$2"},
            ),
        ]
        BENIGN.update(_shape(render(_snap(ok, secrets=[tls]), PEM).conf))
    return BENIGN


PAYLOADS = [
    f'x"; return 200 "{MARK}',
    f"x; return 200 {MARK};",
    f"x}} server {{ listen 8080; return 200 {MARK}; }} #",
    f"x\nreturn 200 {MARK};",
    f"x\r\nreturn 200 {MARK};",
    f"$host{MARK}",
    f"${{{MARK}}}",
    f'x\\"; return 200 {MARK}; #',
    f"x' return 200 '{MARK}",
    f"x\treturn\t200\t{MARK};",
    f"x # {MARK}",
    f"x\x00{MARK}",
]


def _hostile_ingresses() -> list[tuple[str, Obj]]:
    cases: list[tuple[str, Obj]] = []
    for i, p in enumerate(PAYLOADS):
        cases.append((f"host-{i}", ing("h", {"rules": [rule("a" + p, path("/", "Prefix", be("web")))]})))
        for kind in ("Exact", "Prefix", "ImplementationSpecific"):
            cases.append((f"path-{kind}-{i}", ing("p", {"rules": [rule("a.local", path("/" + p, kind, be("web")))]})))
            cases.append(
                (
                    f"regex-path-{kind}-{i}",
                    ing(
                        "r",
                        {"rules": [rule("a.local", path("/" + p, kind, be("web")))]},
                        annotations={"nginx.ingress.kubernetes.io/use-regex": "true"},
                    ),
                )
            )
        cases.append(
            (
                f"rewrite-{i}",
                ing(
                    "w",
                    {"rules": [rule("a.local", path("/s(.*)", "ImplementationSpecific", be("web")))]},
                    annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/" + p},
                ),
            )
        )
        cases.append((f"service-{i}", ing("s", {"rules": [rule("a.local", path("/", "Prefix", be("w" + p)))]})))
        cases.append((f"port-name-{i}", ing("n", {"rules": [rule("a.local", path("/", "Prefix", be("web", p)))]})))
        cases.append(
            (
                f"tls-{i}",
                ing(
                    "t",
                    {
                        "tls": [{"hosts": ["a.local", "b" + p], "secretName": "s" + p}],
                        "rules": [rule("a.local", path("/", "Prefix", be("web")))],
                    },
                ),
            )
        )
        cases.append(
            (
                f"ssl-redirect-{i}",
                ing(
                    "x",
                    {"rules": [rule("a.local", path("/", "Prefix", be("web")))]},
                    annotations={
                        "nginx.ingress.kubernetes.io/ssl-redirect": p,
                        "nginx.ingress.kubernetes.io/use-regex": p,
                    },
                ),
            )
        )
    for a in ("configuration-snippet", "server-snippet", "auth-snippet", "stream-snippet", "lua-resty-waf"):
        cases.append(
            (
                f"annotation-{a}",
                ing(
                    "a",
                    {"rules": [rule("a.local", path("/", "Prefix", be("web")))]},
                    annotations={f"nginx.ingress.kubernetes.io/{a}": f"return 200 {MARK};"},
                ),
            )
        )
    for p in ("/../etc", "/a/../b", "/./a", "/a/..", "/a//..", "relative", "/" + "a" * 300):
        cases.append((f"dots-{p[:12]}", ing("d", {"rules": [rule("a.local", path(p, "Prefix", be("web")))]})))
    cases.append(("not-a-mapping", ing("m", {"rules": ["x", {"http": {"paths": ["y", {"path": 3}]}}]})))
    cases.append(("numbers", ing("q", {"rules": [rule("a.local", path("/", "Prefix", be("web", 70000)))]})))
    return cases


@pytest.mark.parametrize(("label", "obj"), _hostile_ingresses(), ids=[c[0] for c in _hostile_ingresses()])
def test_hostile_ingress_cannot_write_nginx_configuration(label: str, obj: Obj) -> None:
    out = render(_snap([obj]), PEM)
    assert MARK not in out.conf, label
    extra = _shape(out.conf) - _benign()
    assert not extra, (label, extra)
    assert "\r" not in out.conf and "\x00" not in out.conf and "\t" not in out.conf
    meta = obj["metadata"]
    assert out.problems.get((meta["namespace"], meta["name"])), f"{label}: refused without telling the student"


def test_hostile_ingress_beside_a_good_one_leaves_it_intact() -> None:
    good = ing("good", {"rules": [rule("good.local", path("/", "Prefix", be("web")))]}, age=1)
    alone = servers_of(render(_snap([good]), PEM).conf)
    for label, bad in _hostile_ingresses():
        bad["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"  # older: its claims would win
        got = servers_of(render(_snap([bad, good]), PEM).conf)
        assert got["good.local"] == alone["good.local"], label


def servers_of(conf: str) -> dict[str, list[tuple[tuple[str, ...], str, list[str]]]]:
    out: dict[str, list[tuple[tuple[str, ...], str, list[str]]]] = {}
    host = ""
    for d in nginxconf.parse(conf):
        if d.context == ("http", "server") and d.name == "server_name":
            host = d.args[0]
            out[host] = []
        elif len(d.context) >= 2 and d.context[:2] == ("http", "server") and host:
            out[host].append((d.context, d.name, d.args))
    return out


def test_endpoints_and_services_outside_the_cluster_are_never_upstreams() -> None:
    services = [
        *APPS[0],
        {
            "metadata": {"name": "ext", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "example.com"},
        },
        {"metadata": {"name": "manual", "namespace": "shop"}, "spec": {"ports": [{"name": "", "port": 80}]}},
    ]
    slices = [
        *APPS[1],
        {
            "metadata": {"name": "manual-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "manual"}},
            "ports": [{"name": "", "port": 80}],
            "endpoints": [
                {"addresses": [a], "conditions": {"ready": True}}
                for a in ("10.236.16.1", "127.0.0.1", "169.254.169.254", "10.96.0.1", "0.0.0.0", "::1", "host.local")
            ],
        },
    ]
    obj = ing(
        "out",
        {"rules": [rule("a.local", path("/e", "Prefix", be("ext")), path("/m", "Prefix", be("manual")))]},
    )
    out = render(Snapshot([obj], [ingress.ingress_class()], services, slices, []), PEM)
    s = servers_of(out.conf)["a.local"]
    assert not [a for c, n, a in s if n == "proxy_pass"], s
    for addr in ("10.236.16.1", "127.0.0.1", "169.254", "10.96.0.1", "example.com", "host.local"):
        assert addr not in out.conf
    reasons = {p.reason for p in out.problems[("shop", "out")]}
    assert reasons == {"UnsupportedBackend", "InvalidEndpoint"}


def test_huge_numbers_of_rules_are_bounded() -> None:
    many_paths = ing(
        "paths",
        {"rules": [rule("a.local", *[path(f"/p{i}", "Prefix", be("web")) for i in range(5000)])]},
    )
    many_hosts = ing("hosts", {"rules": [rule(f"h{i}.local") for i in range(5000)]}, age=1)
    out = render(_snap([many_paths, many_hosts]), PEM)
    locations = [d for d in nginxconf.parse(out.conf) if d.name == "location" and d.context == ("http", "server")]
    server_blocks = [d for d in nginxconf.parse(out.conf) if d.name == "server" and d.context == ("http",)]
    assert len(locations) <= 2 * MAX_LOCATIONS + len(server_blocks)
    assert len(server_blocks) <= MAX_LOCATIONS + 2
    assert len(out.conf) <= MAX_CONF_BYTES
    for k in (("shop", "paths"), ("shop", "hosts")):
        assert len(out.problems[k]) <= MAX_PROBLEMS + 1
        assert any("at most" in p.message for p in out.problems[k])
    ings = [
        ing(f"i{i}", {"rules": [rule(f"x{i}.local", path("/", "Prefix", be("web")))]}, age=i % 60) for i in range(300)
    ]
    out = render(_snap(ings), PEM)
    assert (
        len([d for d in nginxconf.parse(out.conf) if d.name == "server" and d.context == ("http",)])
        <= MAX_INGRESSES + 2
    )
    assert sum(1 for k, ps in out.problems.items() if any("at most" in p.message for p in ps)) == 300 - MAX_INGRESSES


def test_a_configuration_past_the_byte_limit_drops_the_newest_ingresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingress, "MAX_CONF_BYTES", 100_000)  # the real limit is reached the same way, slower
    long_host = lambda i: f"{'h' * 60}.{'o' * 60}.{'s' * 60}.{i:04d}.local"  # noqa: E731
    ings = [
        ing(
            f"big{j}",
            {"rules": [rule(long_host(j * 100 + i), path("/" + "p" * 250, "Exact", be("web"))) for i in range(20)]},
            age=j,
        )
        for j in range(6)
    ]
    out = render(_snap(ings), PEM)
    assert len(out.conf) <= 100_000
    assert any("exceed" in p.message for ps in out.problems.values() for p in ps)
    assert ("shop", "big0") not in out.problems or not any(
        "exceed" in p.message for p in out.problems[("shop", "big0")]
    )


# -- through the real nginx ----------------------------------------------------------------------

HOST_RESOURCES = [
    "--subnet",
    "10.236.16.0/20",
    "--bridge",
    "kltestii",
    "--cgroup-parent",
    "kubelab-testii",
    "--uid-start",
    str(4_050_000_000),
]


@pytest.fixture(scope="module")
def box() -> Iterator[tuple[RealDaemon, dict[str, Any]]]:
    why = real_sandboxes_available()
    if why:
        pytest.skip(why)
    if not _has_lab_base():
        pytest.skip("the lab-base image is not built (make images)")
    with private_daemon("rtii-", HOST_RESOURCES, IMAGES) as d:
        with Client(d.socket, timeout=60) as c:
            b = c.create_sandbox({"image": "lab-base", "services": ["kubernetes"]})
        try:
            yield d, b
        finally:
            with Client(d.socket, timeout=60) as c, contextlib.suppress(errors.RuntimeError):
                c.remove_sandbox(b["id"])


def _run(d: RealDaemon, sid: str, script: str, timeout: float = 180) -> str:
    with Client(d.socket, timeout=timeout + 30) as c:
        r = c.exec(sid, ["bash", "-c", script], timeout=timeout)
    out = r.stdout_text + r.stderr_text
    assert r.exit_code == 0, out
    return out


HOSTILE = f"""
apiVersion: v1
kind: Service
metadata: {{name: outside}}
spec: {{type: ExternalName, externalName: example.com}}
---
apiVersion: v1
kind: Service
metadata: {{name: manual}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: manual-1, labels: {{kubernetes.io/service-name: manual}}}}
addressType: IPv4
ports: [{{name: "", port: 80}}]
endpoints: [{{addresses: ["10.236.16.1"]}}, {{addresses: ["169.254.169.254"]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: evil
  annotations:
    nginx.ingress.kubernetes.io/configuration-snippet: "return 200 {MARK};"
    nginx.ingress.kubernetes.io/server-snippet: "location /x {{ return 200 {MARK}; }}"
    nginx.ingress.kubernetes.io/rewrite-target: "/$1; return 200 {MARK};"
spec:
  rules:
  - host: evil.local
    http:
      paths:
      - {{path: "/a;return 200 {MARK};", pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
      - path: "/b\\"}} server {{ listen 81; return 200 {MARK}; }}"
        pathType: ImplementationSpecific
        backend: {{service: {{name: web, port: {{number: 80}}}}}}
      - {{path: /out, pathType: Prefix, backend: {{service: {{name: outside, port: {{number: 80}}}}}}}}
      - {{path: /manual, pathType: Prefix, backend: {{service: {{name: manual, port: {{number: 80}}}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: badregex
  annotations: {{nginx.ingress.kubernetes.io/use-regex: "true"}}
spec:
  rules:
  - host: regex.local
    http:
      paths:
      - path: "/x[[:nope:]]"
        pathType: ImplementationSpecific
        backend: {{service: {{name: web, port: {{number: 80}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: good}}
spec:
  rules:
  - host: good.local
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"""


def test_hostile_objects_through_the_real_nginx(box: tuple[RealDaemon, dict[str, Any]]) -> None:
    d, b = box
    sid = b["id"]
    setup = f"""
set -e
kubectl create deployment web --image=busybox:1.35 --port=80 -- \\
  sh -c 'mkdir -p /w && echo good-web > /w/index.html && exec httpd -f -p 80 -h /w' >/dev/null
kubectl expose deployment web --port=80 >/dev/null
kubectl rollout status deploy/web --timeout=180s >/dev/null
kubectl apply -f - >/dev/null <<'EOF'
{HOSTILE}
EOF
for i in $(seq 300); do
  curl -s -m 3 -H 'Host: good.local' http://localhost/ | grep -q good-web && break
  sleep 0.3
done
# that answer may come from the reloaded workers while the old ones, with the file before
# the Ingresses, still accept connections until they finish: nginx's own graceful reload.
# Probe once no worker is "shutting down" any more.
pod=$(kubectl get pods -n ingress-nginx -o name | head -n 1)
for i in $(seq 150); do
  kubectl exec -n ingress-nginx "$pod" -- sh -c 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" "\\n"' \
    | grep -q 'shutting down' || break
  sleep 0.2
done
"""
    _run(d, sid, setup, timeout=240)
    probe = """
for h in good.local evil.local regex.local; do
  for p in / '/a;return%20200%20pwned;' /a /b /x /out /manual /manual/x; do
    rm -f /tmp/b
    code=$(curl -s -m 5 -o /tmp/b -w '%{http_code}' -H "Host: $h" "http://localhost$p")
    printf '%s %s %s%s\\n' "$h" "${p%%;*}" "$code" "$(tr -d '\\r\\n' < /tmp/b 2>/dev/null)"
  done
done
curl -s -m 5 -o /dev/null -w 'port81 %{http_code}\\n' http://localhost:81/ || true
"""
    lines = _run(d, sid, probe).splitlines()
    assert MARK not in "\n".join(lines), lines
    got = {tuple(ln.split(" ", 2)[:2]): ln.split(" ", 2)[2] for ln in lines if not ln.startswith("port81")}
    if not got[("good.local", "/")].startswith("200good-web"):
        diag = _run(
            d, sid, "kubectl get events -A | tail -30; kubectl -n ingress-nginx logs deploy/ingress-nginx-controller"
        )
        pytest.fail(f"{got}\n{diag}\n{d.logs()[-3000:]}")
    assert got[("evil.local", "/out")].startswith("503"), got  # ExternalName: never proxied
    assert got[("evil.local", "/manual")].startswith("503"), got  # endpoints outside the pod network
    assert got[("regex.local", "/x")].startswith("404"), got  # its Ingress was left out, the rest loaded
    assert "port81 000" in lines, lines
    conf = _run(
        d, sid, "kubectl -n ingress-nginx exec deploy/ingress-nginx-controller -- cat /etc/ingress-nginx/nginx.conf"
    )
    assert MARK not in conf and "10.236.16.1" not in conf and "169.254" not in conf and "example.com" not in conf
    names = {dd.name for dd in nginxconf.parse(conf)}
    assert names <= {n for _c, n in _benign()} | {"upstream"}, names
    events = json.loads(_run(d, sid, "kubectl get events --field-selector type=Warning -o json"))["items"]
    by: dict[str, list[str]] = {}
    for e in events:
        by.setdefault(e["involvedObject"]["name"], []).append(f"{e['reason']}: {e['message']}")
    evil = "\n".join(by.get("evil", []))
    for needle in (
        "configuration-snippet is refused",
        "server-snippet is refused",
        "rewrite-target",
        "ExternalName",
        "outside the pod network",
    ):
        assert needle in evil, (needle, evil)
    assert any(m.startswith("RejectedByNginx") and "POSIX" in m for m in by.get("badregex", [])), by.get("badregex")
    assert "good" not in by, by["good"]


def test_another_sandbox_cannot_reach_the_ingress(box: tuple[RealDaemon, dict[str, Any]]) -> None:
    """The controller listens on the sandbox's own address: a classmate's sandbox cannot
    reach it (the sandbox network's isolation), while the owner's terminal can."""
    d, b = box
    with Client(d.socket, timeout=60) as c:
        other = c.create_sandbox({"image": "lab-base"})
    try:
        assert "good-web" in _run(d, b["id"], "curl -s -m 5 -H 'Host: good.local' http://localhost/")
        out = _run(
            d,
            other["id"],
            f"curl -sS -m 5 -H 'Host: good.local' http://{b['ip']}/ 2>&1; echo rc=$?; "
            f"curl -skS -m 5 https://{b['ip']}/ 2>&1; echo rc=$?",
        )
        assert "good-web" not in out and out.count("rc=0") == 0, out
    finally:
        with Client(d.socket, timeout=60) as c, contextlib.suppress(errors.RuntimeError):
            c.remove_sandbox(other["id"])
