#!/usr/bin/env python3
"""greet: prints a greeting for NAME (default: world).

Its configuration is hard-coded below, so every deploy needs a code change.
Your job: read it from the environment instead (factor III of the twelve-factor app).
"""

import sys

GREETING = "Hello"  # TODO: from $GREETING, default "Hello"
SHOUT = False  # TODO: from $SHOUT: "1", "true" or "yes" (any case) mean True; default False


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "world"
    text = f"{GREETING}, {name}!"
    print(text.upper() if SHOUT else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
