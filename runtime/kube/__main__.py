"""``python -m runtime.kube``: see cli.py."""

from __future__ import annotations

import sys

from runtime.kube.cli import main

sys.exit(main())
