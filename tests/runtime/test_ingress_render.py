"""The ingress controller's nginx.conf renderer (runtime/kube/node/ingress.py ``render``), on
objects as the API server stores them. The file is read back with an nginx-style parser
(tests/runtime/nginxconf.py); real HTTP through the real nginx is tests/runtime/test_ingress_live.py,
hostile objects tests/security/test_ingress_injection.py."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.kube.apiserver.cluster import Cluster
from runtime.kube.apiserver.provision import clusters_dir, create_cluster
from runtime.kube.controllers.manager import Controllers
from runtime.kube.node import ingress
from runtime.kube.node.ingress import Snapshot, render
from tests.runtime import nginxconf

PEM = b"default-pem"
Obj = dict[str, Any]


def ing(name: str, spec: Obj, *, ns: str = "shop", age: int = 0, annotations: Obj | None = None) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": ns,
        "uid": f"uid-{name}",
        "creationTimestamp": f"2026-01-01T00:00:{age:02d}Z",
    }
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def svc(name: str, port: int = 80, *, ns: str = "shop", pname: str = "http", typ: str = "ClusterIP") -> Obj:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": typ, "ports": [{"name": pname, "port": port, "targetPort": port, "protocol": "TCP"}]},
    }


def eps(service: str, *ips: str, port: int = 80, ns: str = "shop", pname: str = "http", ready: bool = True) -> Obj:
    return {
        "metadata": {"name": f"{service}-abc", "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
        "ports": [{"name": pname, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips],
    }


def be(name: str, port: int | str = 80) -> Obj:
    return {"service": {"name": name, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def path(p: str, kind: str, backend: Obj) -> Obj:
    return {"path": p, "pathType": kind, "backend": backend}


def rule(host: str | None, *paths: Obj) -> Obj:
    r: Obj = {"http": {"paths": list(paths)}}
    if host:
        r["host"] = host
    return r


APPS = ([svc("web"), svc("api", 8080)], [eps("web", "10.244.0.5"), eps("api", "10.244.0.6", "10.244.0.7", port=8080)])


def snap(ings: list[Obj], services: list[Obj] | None = None, slices: list[Obj] | None = None, **kw: Any) -> Snapshot:
    return Snapshot(
        ings,
        kw.get("classes", [ingress.ingress_class()]),
        APPS[0] if services is None else services,
        APPS[1] if slices is None else slices,
        kw.get("secrets", []),
    )


def servers(conf: str) -> dict[str, dict[str, list[str]]]:
    """host -> location head -> the directives of that location (``name args...``)."""
    out: dict[str, dict[str, list[str]]] = {}
    host = ""
    loc = ""
    for d in nginxconf.parse(conf):
        if d.context == ("http", "server") and d.name == "server_name":
            host = d.args[0]
            out[host] = {}
        elif d.context == ("http", "server") and d.name == "location" and host:
            loc = " ".join(d.args)
            out[host][loc] = []
        elif d.context[:3] == ("http", "server", "location") and host:
            out[host][loc].append(" ".join([d.name, *d.args]))
    return out


def upstream_servers(conf: str, name: str) -> list[str]:
    return [
        d.args[0]
        for d in nginxconf.parse(conf)
        if d.context == ("http", "upstream") and d.name == "server" and _in_upstream(conf, d.line, name)
    ]


def _in_upstream(conf: str, line: int, name: str) -> bool:
    lines = conf.splitlines()[: line - 1]
    heads = [ln.strip() for ln in lines if ln.strip().startswith("upstream ")]
    return bool(heads) and heads[-1] == f"upstream {name} {{"


def test_hosts_and_path_types_as_ingress_nginx_renders_them() -> None:
    out = render(
        snap(
            [
                ing(
                    "shop",
                    {
                        "rules": [
                            rule(
                                "shop.local",
                                path("/api", "Prefix", be("api", 8080)),
                                path("/exact", "Exact", be("api", 8080)),
                                path("/impl", "ImplementationSpecific", be("api", 8080)),
                                path("/", "Prefix", be("web", "http")),
                            )
                        ]
                    },
                )
            ]
        ),
        PEM,
    )
    s = servers(out.conf)
    assert set(s) == {"_", "shop.local"}
    locs = s["shop.local"]
    assert set(locs) == {"= /api", "/api/", "= /exact", "/impl", "/"}
    assert locs["/"][-1] == "proxy_pass http://u1" and locs["= /api"][-1] == "proxy_pass http://u0"
    assert upstream_servers(out.conf, "u0") == ["10.244.0.6:8080", "10.244.0.7:8080"]
    assert upstream_servers(out.conf, "u1") == ["10.244.0.5:80"]
    assert s["_"] == {"/": ["set $proxy_upstream_name upstream-default-backend", "return 404"]}
    assert out.served == [("shop", "shop")] and out.problems == {}
    assert (
        render(snap([ing("shop", {"rules": [rule("a.b", path("/", "Prefix", be("web")))]})]), PEM).conf
        == render(snap([ing("shop", {"rules": [rule("a.b", path("/", "Prefix", be("web")))]})]), PEM).conf
    )  # deterministic: equal states, equal text (no reload)


def test_exact_beats_prefix_of_the_same_path_and_the_older_ingress_wins() -> None:
    older = ing("older", {"rules": [rule("h.local", path("/a", "Prefix", be("web")))]}, age=1)
    newer = ing(
        "newer",
        {"rules": [rule("h.local", path("/a", "Exact", be("api", 8080)), path("/a/", "Prefix", be("api", 8080)))]},
        age=2,
    )
    locs = servers(render(snap([newer, older]), PEM).conf)["h.local"]
    assert locs["= /a"][-1] == "proxy_pass http://u1"  # api: the Exact rule, though newer
    assert locs["/a/"][-1] == "proxy_pass http://u0"  # web: the older Ingress's claim


def test_regex_and_rewrite_turn_every_path_of_the_host_into_a_regex_longest_first() -> None:
    out = render(
        snap(
            [
                ing(
                    "rw",
                    {"rules": [rule("rw.local", path("/shop(/|$)(.*)", "ImplementationSpecific", be("api", 8080)))]},
                    annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/$2"},
                ),
                ing("plain", {"rules": [rule("rw.local", path("/s", "Prefix", be("web")))]}, age=1),
            ]
        ),
        PEM,
    )
    locs = servers(out.conf)["rw.local"]
    assert list(locs) == ["~* ^/shop(/|$)(.*)", "~* ^/s", "/"]
    assert locs["~* ^/shop(/|$)(.*)"][1:] == ["rewrite (?i)^/shop(/|$)(.*) /$2 break", "proxy_pass http://u0"]
    assert not any(d.startswith("rewrite") for d in locs["~* ^/s"])  # only that Ingress rewrites


def test_default_backends_missing_services_and_endpoints() -> None:
    out = render(
        snap(
            [
                ing("fallback", {"defaultBackend": be("web")}, age=1),
                ing(
                    "shop",
                    {
                        "defaultBackend": be("api", 8080),
                        "rules": [
                            rule(
                                "shop.local", path("/gone", "Prefix", be("nothing")), path("/x", "Exact", be("web", 81))
                            )
                        ],
                    },
                    age=2,
                ),
                ing("ext", {"rules": [rule("ext.local", path("/", "Prefix", be("outside")))]}, age=3),
            ],
            services=[*APPS[0], svc("outside", typ="ExternalName")],
        ),
        PEM,
    )
    s = servers(out.conf)
    assert s["_"]["/"][-1] == "proxy_pass http://u0"  # the oldest Ingress's defaultBackend: web
    assert s["shop.local"]["/"][-1] == "proxy_pass http://u1"  # its own defaultBackend: api
    assert s["shop.local"]["= /gone"][-1] == "return 503"  # no such Service
    assert s["shop.local"]["= /x"][-1] == "return 503"  # no such port
    assert s["ext.local"]["/"][-1] == "return 503"
    assert [p.reason for p in out.problems[("shop", "ext")]] == ["UnsupportedBackend"]


def test_unready_endpoints_and_addresses_outside_the_pod_network_are_not_used() -> None:
    slices = [eps("web", "10.244.0.5", "10.244.0.9", ready=True), eps("api", "10.244.0.6", port=8080, ready=False)]
    slices[0]["endpoints"].append({"addresses": ["10.236.0.1"], "conditions": {"ready": True}})
    slices[0]["endpoints"].append({"addresses": ["169.254.169.254"], "conditions": {"ready": True}})
    i = ing("shop", {"rules": [rule("h", path("/", "Prefix", be("web")), path("/api", "Prefix", be("api", 8080)))]})
    out = render(snap([i], slices=slices), PEM)
    assert upstream_servers(out.conf, "u0") == ["10.244.0.5:80", "10.244.0.9:80"]
    assert servers(out.conf)["h"]["= /api"][-1] == "return 503"
    assert {p.reason for p in out.problems[("shop", "shop")]} == {"InvalidEndpoint"}
    assert "10.236.0.1" not in out.conf and "169.254" not in out.conf


def test_classes() -> None:
    other = {"metadata": {"name": "other"}, "spec": {"controller": "example.com/other"}}
    ings = [
        ing("mine", {"ingressClassName": "nginx", "rules": [rule("a.local", path("/", "Prefix", be("web")))]}),
        ing("none", {"rules": [rule("b.local", path("/", "Prefix", be("web")))]}),
        ing("theirs", {"ingressClassName": "other", "rules": [rule("c.local", path("/", "Prefix", be("web")))]}),
        ing("unknown", {"ingressClassName": "nope", "rules": [rule("d.local", path("/", "Prefix", be("web")))]}),
        ing(
            "legacy",
            {"rules": [rule("e.local", path("/", "Prefix", be("web")))]},
            annotations={"kubernetes.io/ingress.class": "nginx"},
        ),
        ing(
            "legacy-other",
            {"rules": [rule("f.local", path("/", "Prefix", be("web")))]},
            annotations={"kubernetes.io/ingress.class": "traefik"},
        ),
    ]
    out = render(snap(ings, classes=[ingress.ingress_class(), other]), PEM)
    assert set(servers(out.conf)) == {"_", "a.local", "b.local", "e.local"}
    assert sorted(n for _, n in out.served) == ["legacy", "mine", "none"]


def _tls_secret(name: str, host: str, *, ns: str = "shop") -> Obj:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt = cert.public_bytes(serialization.Encoding.PEM)
    kpem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "metadata": {"name": name, "namespace": ns},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(kpem).decode()},
    }


def test_tls_hosts_get_their_secret_and_a_redirect_others_the_fake_certificate() -> None:
    good = _tls_secret("good", "secure.local")
    wrong = _tls_secret("wrong", "elsewhere.local")
    broken = {
        "metadata": {"name": "broken", "namespace": "shop"},
        "data": {"tls.crt": "bm9wZQ==", "tls.key": "bm9wZQ=="},
    }
    spec = {
        "tls": [
            {"hosts": ["secure.local"], "secretName": "good"},
            {"hosts": ["wrong.local"], "secretName": "wrong"},
            {"hosts": ["broken.local"], "secretName": "broken"},
            {"hosts": ["missing.local"], "secretName": "missing"},
        ],
        "rules": [
            rule(h, path("/", "Prefix", be("web")))
            for h in ("secure.local", "wrong.local", "broken.local", "missing.local", "plain.local")
        ],
    }
    out = render(snap([ing("tls", spec)], secrets=[good, wrong, broken]), PEM)
    certs = {host: d.args[0] for host, d in _server_directives(out.conf, "ssl_certificate")}
    assert certs["secure.local"].startswith("/etc/ingress-nginx/certs/") and certs["secure.local"] in {
        "/etc/ingress-nginx/" + f for f in out.files
    }
    for host in ("wrong.local", "broken.local", "missing.local", "plain.local", "_"):
        assert certs[host] == "/etc/ingress-nginx/certs/default.pem", host
    assert out.files["certs/default.pem"] == PEM
    msgs = [p.message for p in out.problems[("shop", "tls")]]
    assert any("not valid for wrong.local" in m for m in msgs)
    assert any("Secret broken is not usable" in m for m in msgs)
    assert any("Secret shop/missing does not exist" in m for m in msgs)
    s = servers(out.conf)
    assert 'if ($scheme = "http")' not in "\n".join(s["plain.local"]["/"])
    assert "return 308 https://$host$request_uri" in s["secure.local"]["/"]
    opt_out = ing("tls", spec, annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"})
    s2 = servers(render(snap([opt_out], secrets=[good]), PEM).conf)
    assert "return 308 https://$host$request_uri" not in s2["secure.local"]["/"]


def _server_directives(conf: str, name: str) -> list[tuple[str, nginxconf.Directive]]:
    host = ""
    out = []
    for d in nginxconf.parse(conf):
        if d.context == ("http", "server") and d.name == "server_name":
            host = d.args[0]
        elif d.context == ("http", "server") and d.name == name and host:
            out.append((host, d))
    return out


def test_wildcard_hosts_cover_one_label() -> None:
    out = render(snap([ing("w", {"rules": [rule("*.shop.local", path("/", "Prefix", be("web")))]})]), PEM)
    names = [d.args[0] for d in nginxconf.parse(out.conf) if d.name == "server_name"]
    assert "~^[^.]+\\.shop\\.local$" in names


def test_unsupported_annotations_are_reported() -> None:
    out = render(
        snap(
            [
                ing(
                    "a",
                    {"rules": [rule("a.local", path("/", "Prefix", be("web")))]},
                    annotations={
                        "nginx.ingress.kubernetes.io/limit-rps": "5",
                        "nginx.ingress.kubernetes.io/server-snippet": "return 200;",
                        "nginx.ingress.kubernetes.io/use-regex": "true",
                        "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    },
                )
            ]
        ),
        PEM,
    )
    probs = out.problems[("shop", "a")]
    assert [p.reason for p in probs] == ["UnsupportedAnnotation", "UnsupportedAnnotation"]
    assert "limit-rps is not supported" in probs[0].message and "server-snippet is refused" in probs[1].message


def test_bootstrap_configuration_parses_and_has_the_catch_all() -> None:
    ds = nginxconf.parse(ingress.bootstrap_conf())
    assert any(d.name == "listen" and d.args == ["80", "default_server"] for d in ds)
    assert any(d.name == "listen" and d.args == ["10254"] for d in ds)


@pytest.fixture
def cluster(tmp_path: Any) -> Any:
    create_cluster(tmp_path, "ic", "https://127.0.0.1:1", controllers=Controllers)
    c = Cluster("ic", clusters_dir(tmp_path) / "ic", controllers=Controllers)
    c.controllers.reconcile()
    yield c
    c.store.close()


def test_default_ingress_class_admission(cluster: Cluster) -> None:
    from runtime.kube.registry import BY_GR

    ingresses, classes = BY_GR["ingresses.networking.k8s.io"], BY_GR["ingressclasses.networking.k8s.io"]
    spec = {"defaultBackend": be("web")}
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "a"}, "spec": spec}
    assert "ingressClassName" not in cluster.create(ingresses, "default", body)["spec"]  # no default class yet
    cluster.create(classes, "", ingress.ingress_class())
    got = cluster.create(ingresses, "default", {**body, "metadata": {"name": "b"}})
    assert got["spec"]["ingressClassName"] == "nginx"
    legacy = {**body, "metadata": {"name": "c", "annotations": {"kubernetes.io/ingress.class": "x"}}}
    assert "ingressClassName" not in cluster.create(ingresses, "default", legacy)["spec"]
    explicit = {**body, "metadata": {"name": "d"}, "spec": {**spec, "ingressClassName": "other"}}
    assert cluster.create(ingresses, "default", explicit)["spec"]["ingressClassName"] == "other"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {},
            "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified",
        ),
        (
            {"rules": [rule("a;b", path("/", "Prefix", be("web")))]},
            'spec.rules[0].host: Invalid value: "a;b": a lowercase RFC 1123 subdomain',
        ),
        ({"rules": [rule("10.0.0.1", path("/", "Prefix", be("web")))]}, "must be a DNS name, not an IP address"),
        (
            {"rules": [rule("*a.b", path("/", "Prefix", be("web")))]},
            "a wildcard DNS-1123 subdomain must start with '*.'",
        ),
        (
            {"rules": [rule("a.b", path("x", "Prefix", be("web")))]},
            'spec.rules[0].http.paths[0].path: Invalid value: "x": must be an absolute path',
        ),
        ({"rules": [rule("a.b", path("/a/../b", "Exact", be("web")))]}, "must not contain '/../'"),
        ({"rules": [rule("a.b", path("/a/..", "Prefix", be("web")))]}, "cannot end with '/..'"),
        ({"rules": [rule("a.b", path("/", "Regex", be("web")))]}, 'Unsupported value: "Regex"'),
        ({"rules": [rule("a.b", path("/", "Prefix", be("Web;")))]}, "spec.rules[0].http.paths[0].backend.service.name"),
        ({"rules": [rule("a.b", path("/", "Prefix", be("web", 0)))]}, "port name or number is required"),
        ({"rules": [rule("a.b", path("/", "Prefix", be("web", 70000)))]}, "must be between 1 and 65535, inclusive"),
        ({"defaultBackend": be("web"), "tls": [{"hosts": ["a b"], "secretName": "x;y"}]}, "spec.tls[0].secretName"),
    ],
)
def test_the_api_server_refuses_malformed_ingresses_as_kube_apiserver(
    cluster: Cluster, spec: Obj, message: str
) -> None:
    from runtime.kube.machinery.apierrors import ApiError
    from runtime.kube.registry import BY_GR

    body = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bad"}, "spec": spec}
    with pytest.raises(ApiError) as e:
        cluster.create(BY_GR["ingresses.networking.k8s.io"], "default", body)
    assert e.value.status == 422 and message in e.value.message, e.value.message
