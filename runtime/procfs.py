"""Reading /proc: process start times (a pid is only "the same process" with the same start
time) and the mount table."""

from __future__ import annotations

import re
from pathlib import Path


def proc_start(pid: int) -> int | None:
    """Start time of ``pid`` (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) >= 5:
                points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


def mounted(path: Path) -> bool:
    """Is something mounted exactly at ``path``?"""
    return str(path) in _mount_points()


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``."""
    prefix = str(path).rstrip("/")
    return [mp for mp in _mount_points() if mp == prefix or mp.startswith(prefix + "/")]
