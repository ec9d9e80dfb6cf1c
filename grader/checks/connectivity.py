"""``connectivity``: what a NetworkPolicy does, proved by real traffic between pods.

Fields: ``from`` (``{namespace, pod}`` or ``{namespace, selector}``: the first running pod
it selects), ``to`` (``{namespace, service}``, ``{namespace, pod}``, ``{namespace,
selector}``: every running pod it selects, or ``{host}``: an IPv4 address), ``port`` (a
number, or the name of the Service's port / the pod's container port), ``protocol``
(``TCP`` default, or ``UDP``), ``expect`` (``open`` or ``blocked``).

Names are resolved with the official ``kubernetes`` client (a Service's ClusterIP, a pod's
IP, a named port); then runtimed makes one connection from *inside the source pod's network
namespace* (``Client.kube_connectivity``: a helper that enters the pod's infra container,
runtime/kube/node/netpol.py ``probe``), so the packet carries the pod's address and meets the
same rules the student's traffic meets, and no program inside the student's sandbox is
trusted to report the result. ``open``: the connection was made (UDP: an answer came back).
``blocked``: nothing came back within the probe's time (what a NetworkPolicy's drop does)
or the network said unreachable; a *refused* connection is neither — something is
reachable there but nothing listens — and fails both expectations with that explanation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from grader.checks.base import (
    SANDBOX_GONE,
    CheckError,
    CheckProblems,
    InfrastructureError,
    Outcome,
    Target,
    TargetUnavailable,
    register,
    shorten,
)
from grader.checks.kube import _api_client, _transport_failure

PROBE_TIMEOUT = 2.0
EXPECT = ("open", "blocked")
BLOCKED = ("timeout", "unreachable")


def _where(ref: Mapping[str, Any]) -> str:
    ns = ref.get("namespace", "default")
    for key in ("pod", "service", "selector"):
        if ref.get(key):
            return f"{key} {ref[key]} in namespace {ns}"
    return str(ref.get("host"))


def _running(pods: list[Any]) -> list[Any]:
    return sorted(
        (p for p in pods if p.status and p.status.phase == "Running" and p.status.pod_ip),
        key=lambda p: p.metadata.name,
    )


def _container_port(pod: Any, port: Any, protocol: str) -> int | None:
    if isinstance(port, int):
        return port
    for c in pod.spec.containers or []:
        for p in c.ports or []:
            if p.name == port and (p.protocol or "TCP") == protocol:
                return int(p.container_port)
    return None


def _pods(core: Any, ref: Mapping[str, Any], timeout: float) -> list[Any]:
    from kubernetes.client import exceptions as kube_exc

    ns = str(ref.get("namespace", "default"))
    try:
        if ref.get("pod"):
            return _running([core.read_namespaced_pod(str(ref["pod"]), ns, _request_timeout=timeout)])
        return _running(
            core.list_namespaced_pod(ns, label_selector=str(ref["selector"]), _request_timeout=timeout).items
        )
    except kube_exc.ApiException as exc:
        if exc.status == 404:
            return []
        raise TargetUnavailable(f"The lab cluster refused: {exc.status} {exc.reason}") from exc


def _targets(core: Any, spec: Mapping[str, Any], timeout: float) -> list[tuple[str, str, int | None, str]]:
    """(what, address, port or None when the name does not resolve, protocol) to try."""
    from kubernetes.client import exceptions as kube_exc

    to, port, protocol = spec["to"], spec["port"], spec["protocol"]
    if to.get("host"):
        if not isinstance(port, int):
            raise CheckError("a connectivity check to a `host` needs a numeric `port`")
        return [(str(to["host"]), str(to["host"]), port, protocol)]
    ns = str(to.get("namespace", "default"))
    if to.get("service"):
        try:
            svc = core.read_namespaced_service(str(to["service"]), ns, _request_timeout=timeout)
        except kube_exc.ApiException as exc:
            if exc.status == 404:
                return []
            raise TargetUnavailable(f"The lab cluster refused: {exc.status} {exc.reason}") from exc
        ip = svc.spec.cluster_ip
        if not ip or ip == "None":
            raise CheckError(f"service {to['service']} is headless: target its pods with a `selector`")
        for sp in svc.spec.ports or []:
            if (sp.port == port or sp.name == port) and (sp.protocol or "TCP") == protocol:
                return [(f"service {to['service']} ({ip})", ip, int(sp.port), protocol)]
        return [(f"service {to['service']} ({ip})", ip, None, protocol)]
    return [
        (f"pod {p.metadata.name} ({p.status.pod_ip})", p.status.pod_ip, _container_port(p, port, protocol), protocol)
        for p in _pods(core, to, timeout)
    ]


def _validate(spec: Mapping[str, Any]) -> dict[str, Any]:
    src, dst = spec.get("from"), spec.get("to")
    if not isinstance(src, Mapping) or not (src.get("pod") or src.get("selector")):
        raise CheckError("a connectivity check needs `from` with a `pod` or a `selector` (and a `namespace`)")
    if not isinstance(dst, Mapping) or not any(dst.get(k) for k in ("pod", "service", "selector", "host")):
        raise CheckError("a connectivity check needs `to` with a `service`, `pod`, `selector` or `host`")
    if dst.get("host"):
        try:
            ipaddress.IPv4Address(str(dst["host"]))
        except ValueError:
            raise CheckError(f"`to.host` must be an IPv4 address, not {shorten(dst['host'])!r}") from None
    port = spec.get("port")
    if isinstance(port, bool) or not ((isinstance(port, int) and 0 < port < 65536) or (isinstance(port, str) and port)):
        raise CheckError("a connectivity check needs a `port`: a number, or a port's name")
    protocol = str(spec.get("protocol", "TCP")).upper()
    if protocol not in ("TCP", "UDP"):
        raise CheckError(f"`protocol` must be TCP or UDP, not {shorten(spec.get('protocol'))!r}")
    expect = spec.get("expect")
    if expect not in EXPECT:
        raise CheckError(f"`expect` must be `open` or `blocked`, not {shorten(expect)!r}")
    return {"from": src, "to": dst, "port": port, "protocol": protocol, "expect": expect}


def _probe(target: Target, ns: str, pod: str, host: str, port: int, protocol: str) -> dict[str, str]:
    from runtime import errors as runtime_errors

    try:
        return target.runtime().kube_connectivity(
            target.sandbox_id or "",
            namespace=ns,
            pod=pod,
            host=host,
            port=port,
            protocol=protocol,
            timeout=PROBE_TIMEOUT,
        )
    except runtime_errors.SandboxNotFound as exc:
        raise TargetUnavailable(SANDBOX_GONE) from exc
    except runtime_errors.Conflict as exc:  # the source pod stopped running meanwhile
        return {"result": "error", "detail": str(exc)}
    except runtime_errors.NotAvailable as exc:
        raise InfrastructureError(f"The sandbox service cannot probe: {exc}") from exc
    except runtime_errors.RuntimeError as exc:
        raise InfrastructureError(f"The sandbox service failed: {exc}") from exc


def _problems(spec: Mapping[str, Any]) -> CheckProblems:
    src, dst = spec.get("from"), spec.get("to")
    if "from" in spec and (not isinstance(src, dict) or not (src.get("pod") or src.get("selector"))):
        yield "from", "'from' needs a 'pod' or a 'selector'"
    if "to" in spec and (
        not isinstance(dst, dict) or not any(dst.get(k) for k in ("pod", "service", "selector", "host"))
    ):
        yield "to", "'to' needs a 'service', 'pod', 'selector' or 'host'"
    if spec.get("expect", "open") not in EXPECT:
        yield "expect", "'expect' must be 'open' or 'blocked'"
    if str(spec.get("protocol", "TCP")).upper() not in ("TCP", "UDP"):
        yield "protocol", "'protocol' must be TCP or UDP"
    port = spec.get("port")
    if "port" in spec and (
        isinstance(port, bool) or not ((isinstance(port, str) and port) or (isinstance(port, int) and 0 < port < 65536))
    ):
        yield "port", "'port' must be a port number or a port's name"


@register(
    "connectivity",
    required={"from", "to", "port", "expect"},
    optional={"protocol"},
    service="kubernetes",
    validate=_problems,
)
def check_connectivity(spec: Mapping[str, Any], target: Target, timeout: float) -> Outcome:
    import urllib3
    from kubernetes import client as kube_client

    s = _validate(spec)
    api = _api_client(target, timeout)
    try:
        core = kube_client.CoreV1Api(api)
        sources = _pods(core, s["from"], timeout)
        if not sources:
            return Outcome(False, f"There is no running {_where(s['from'])} to send from.")
        src = sources[0]
        targets = _targets(core, s, timeout)
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        return _transport_failure(exc, timeout)
    finally:
        api.close()
    if not targets:
        return Outcome(False, f"There is no running {_where(s['to'])} to connect to.")
    src_ns, src_name = src.metadata.namespace, src.metadata.name
    lines: list[str] = []
    passed = True
    for what, host, port, protocol in targets:
        if port is None:
            passed = False
            lines.append(f"{what} has no {protocol} port named {shorten(s['port'])!r}.")
            continue
        got = _probe(target, src_ns, src_name, host, port, protocol)
        result, detail = got.get("result", "error"), got.get("detail", "")
        seen = "open" if result == "open" else "blocked" if result in BLOCKED else result
        ok = seen == s["expect"]
        passed = passed and ok
        verdict = {"open": "open", "blocked": "blocked (no answer)", "refused": "refused"}.get(seen, seen)
        line = f"{src_ns}/{src_name} -> {what} port {port}/{protocol}: {verdict}, expected {s['expect']}."
        if not ok and result == "refused":
            line += " Reachable, but nothing listens on that port (a NetworkPolicy drops; it does not refuse)."
        elif not ok and detail:
            line += f" ({detail})"
        lines.append(line)
    return Outcome(passed, "\n".join(lines))
