"""Command line: ``python -m runtime.kube serve|new-cluster`` (also mounted as ``python -m runtime kube``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from runtime.kube.apierrors import ApiError


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _serve(args: argparse.Namespace) -> int:
    host, port = args.listen
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from runtime.kube.server import serve

    asyncio.run(serve(Path(args.data), host, port))
    return 0


def _new_cluster(args: argparse.Namespace) -> int:
    from runtime.kube.server import create_cluster

    try:
        sys.stdout.write(create_cluster(Path(args.data), args.name, args.server))
    except ApiError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
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
    p.add_argument("name", help="cluster name (an RFC 1123 label)")
    p.set_defaults(func=_new_cluster)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Mount ``kube serve`` and ``kube new-cluster`` on the main CLI (runtime/__main__.py).

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
