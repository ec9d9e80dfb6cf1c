"""How much one sandbox's Docker engine keeps: ``EngineLimits`` and the refusal's wording."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineLimits:
    """How many objects one sandbox's engine keeps (``docker create`` past ``containers``
    is refused, 403, with the count and what to remove), whatever their size: each costs
    runtimed memory, a file rewrite per change and, while running, descriptors. Bytes are
    the sandbox's disk quota's business: everything the engine stores is on that disk.

    ``images`` counts the student's image configs (intermediate build images too; the
    catalog's are not counted) and, separately, their tags."""

    containers: int = 100
    images: int = 500
    volumes: int = 100
    networks: int = 16  # user-defined; Docker's default pools give 30 at most anyway
    execs: int = 256  # exec instances kept (finished ones are forgotten first, oldest first)


def quota_message(kind: str, limit: int, remedy: str) -> str:
    return (
        f"this lab's Docker engine keeps at most {limit} {kind} per sandbox and that limit is reached: "
        f"remove some first ({remedy})"
    )
