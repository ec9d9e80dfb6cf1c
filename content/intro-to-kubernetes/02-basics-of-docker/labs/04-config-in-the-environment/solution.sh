#!/bin/sh
# Solves every exercise of "Configuration in the environment".
set -eu
cat > /root/app/greet.py <<'PY'
#!/usr/bin/env python3
"""greet: prints a greeting for NAME (default: world), configured by the environment."""

import os
import sys

GREETING = os.environ.get("GREETING", "Hello")
SHOUT = os.environ.get("SHOUT", "").lower() in ("1", "true", "yes")


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "world"
    text = f"{GREETING}, {name}!"
    print(text.upper() if SHOUT else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
PY
printf 'GREETING=Hi\nSHOUT=0\n' > /root/app/staging.env
printf 'GREETING=Welcome\nSHOUT=1\n' > /root/app/production.env
