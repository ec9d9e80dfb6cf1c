"""The bundled namespace runtime: sandboxes on runc, PTY sessions, images.

This package is a library and a daemon in one and imports no Django (see
ARCHITECTURE.md). ``python -m runtime --help`` is its command line.
"""

from __future__ import annotations
