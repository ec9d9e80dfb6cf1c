"""Command line: ``python -m runtime.kube serve|new-cluster|mint-token``.

Also mounted as ``python -m runtime kube``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from pathlib import Path

from runtime.kube.machinery.apierrors import ApiError
from runtime.kube.machinery.limits import parse_limit


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _limit(value: str) -> tuple[str, int | float]:
    try:
        return parse_limit(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _serve(args: argparse.Namespace) -> int:
    host, port = args.listen
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # deliberately lazy: the server (aiohttp, the whole API server) loads only for the
    # commands that need it (provision.py likewise in _new_cluster and _token), not for --help
    # or a bad argument
    from runtime.kube.apiserver.server import serve
    from runtime.kube.controllers.manager import Controllers

    asyncio.run(serve(Path(args.data), host, port, controllers=Controllers))
    return 0


def _new_cluster(args: argparse.Namespace) -> int:
    from runtime.kube.apiserver.provision import create_cluster
    from runtime.kube.controllers.manager import Controllers

    try:
        sys.stdout.write(
            create_cluster(
                Path(args.data),
                args.name,
                args.server,
                dict(args.limit) or None,
                nodes=args.nodes,
                controllers=Controllers,
            )
        )
    except ApiError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    return 0


_DURATION_RE = re.compile(r"(\d+)(h|m|s)")


def parse_duration(value: str) -> int:
    """Seconds of a Go-style duration: ``90s``, ``10m``, ``1h30m``, ``24h``."""
    v = value.strip()
    parts = _DURATION_RE.findall(v)
    if not v or "".join(n + u for n, u in parts) != v:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}: expected e.g. 30m, 1h or 1h30m")
    seconds = sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}: must be positive")
    return seconds


def _mint_token(args: argparse.Namespace) -> int:
    from runtime.kube.apiserver.provision import mint_user_token, user_kubeconfig

    data = Path(args.data)
    server = args.server
    if server is None:
        try:
            server = json.loads((data / "listen.json").read_text())["server"]
        except (OSError, ValueError, KeyError, TypeError):
            print("error: --server is required (no listen.json under --data)", file=sys.stderr)
            return 1
    try:
        token = mint_user_token(data, args.cluster, args.user, args.group, args.ttl)
    except ApiError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    sys.stdout.write(user_kubeconfig(data, args.cluster, server, args.user, token))
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` and ``new-cluster`` to a subparsers object."""
    p = subparsers.add_parser("serve", help="serve every lab cluster kept under --data over HTTPS")
    p.add_argument("--data", required=True, help="directory holding the clusters")
    p.add_argument("--listen", type=_listen, default=("127.0.0.1", 6443), help="HOST:PORT")
    p.set_defaults(func=_serve)
    p = subparsers.add_parser("new-cluster", help="create a cluster; print its admin kubeconfig")
    p.add_argument("--data", required=True, help="directory holding the clusters")
    p.add_argument("--server", required=True, help="base URL the server is reachable at")
    p.add_argument(
        "--limit",
        action="append",
        type=_limit,
        default=[],
        metavar="NAME=VALUE",
        help="override one of the cluster's limits (runtime/kube/machinery/limits.py), "
        "e.g. max_objects=100 (repeatable)",
    )
    p.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="nodes of the cluster, 1 to 5: a control plane and NODES-1 workers (default 1)",
    )
    p.add_argument("name", help="cluster name (an RFC 1123 label)")
    p.set_defaults(func=_new_cluster)
    p = subparsers.add_parser(
        "mint-token",
        help="mint a bearer token for a user of a cluster; print its kubeconfig",
        description="The user has no rights but those RBAC gives USER and its groups "
        "(every user is in system:authenticated).",
    )
    p.add_argument("--data", required=True, help="directory holding the clusters")
    p.add_argument("--server", help="base URL the server is reachable at (default: listen.json under --data)")
    p.add_argument("--group", action="append", default=[], help="a group of the user (repeatable)")
    p.add_argument("--ttl", type=parse_duration, help="lifetime, e.g. 1h or 30m (default: no expiry)")
    p.add_argument("cluster", help="cluster name")
    p.add_argument("user", help="user name, as RBAC subjects name it")
    p.set_defaults(func=_mint_token)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Mount ``kube serve``, ``kube new-cluster`` and ``kube mint-token`` on the main CLI (runtime/__main__.py).

    Each subcommand sets ``func(args) -> int`` in the namespace; the caller runs it.
    """
    kube = subparsers.add_parser("kube", help="embedded lab clusters (Kubernetes API server)")
    add_commands(kube.add_subparsers(dest="kube_command", required=True, metavar="COMMAND"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.kube", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc
