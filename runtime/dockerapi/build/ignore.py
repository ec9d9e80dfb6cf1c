""".dockerignore, with moby's ``dockerignore.ReadAll`` and ``fileutils.PatternMatcher`` rules.

* Reading: a UTF-8 BOM is dropped, lines starting with ``#`` are comments, lines are
  trimmed, blank ones skipped; ``!`` marks an exception; each pattern is
  ``filepath.Clean``-ed and loses a leading ``/`` (patterns are relative to the context).
* Matching: ``*`` is any run of non-``/`` characters, ``?`` one non-``/`` character,
  ``**`` any number of path components (``**/`` may match none), ``\\`` escapes,
  ``[...]`` classes pass through. A pattern also matches a path when it matches the
  path's ancestor with as many components as the pattern has (``dir`` excludes
  ``dir/a/b``). The last matching pattern decides: a later ``!pattern`` re-includes.
* Pruning a context (``prune``): an excluded directory is removed whole unless an
  exception pattern could match something beneath it, in which case its contents are
  examined one by one — the walk ``docker build`` itself does on the client side.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from runtime import errors

_REGEX_SPECIAL = set("+(){}|^")


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file, normalised as ``dockerignore.ReadAll`` does."""
    if text.startswith("\ufeff"):
        text = text[1:]
    out: list[str] = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out


def _compile(pattern: str) -> re.Pattern[str]:
    regex = "^"
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                regex += ".*" if i >= n else "(.*/)?"
            else:
                regex += "[^/]*"
        elif ch == "?":
            regex += "[^/]"
        elif ch in ".$" or ch in _REGEX_SPECIAL:
            regex += "\\" + ch
        elif ch == "\\":
            if i < n:
                regex += re.escape(pattern[i])
                i += 1
            else:
                regex += "\\\\"
        else:
            regex += ch
    regex += "$"
    try:
        return re.compile(regex, re.DOTALL)
    except re.error as exc:
        raise errors.BadRequest(f"syntax error in pattern: {pattern!r}") from exc


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]
    dirs: int


class PatternMatcher:
    """Decides whether a context path (relative, ``/``-separated) is excluded."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            exclusion = raw.startswith("!")
            text = raw[1:] if exclusion else raw
            if exclusion and not text:
                raise errors.BadRequest('illegal exclusion pattern: "!"')
            text = posixpath.normpath(text)
            self.patterns.append(_Pattern(text, exclusion, _compile(text), len(text.split("/"))))

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        path = posixpath.normpath(path)
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        matched = False
        for pattern in self.patterns:
            match = bool(pattern.regex.match(path))
            if not match and parent != "." and pattern.dirs <= len(parent_dirs):
                match = bool(pattern.regex.match("/".join(parent_dirs[: pattern.dirs])))
            if match:
                matched = not pattern.exclusion
        return matched

    def may_include_below(self, directory: str) -> bool:
        """Whether an exception pattern could re-include something under an excluded dir."""
        prefix = directory + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def prune(root: Path, matcher: PatternMatcher) -> None:
    """Delete from the extracted context ``root`` everything the patterns exclude.

    ``root`` is a directory the builder created and filled from the context tar; entries
    are examined without following symlinks. The builder reads the Dockerfile first, so
    the .dockerignore may exclude it (and itself), as Docker allows.
    """
    if matcher.patterns:
        _prune_dir(root, "", matcher)


def _prune_dir(root: Path, rel: str, matcher: PatternMatcher) -> None:
    with os.scandir(root / rel if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if matcher.matches(path):
            if is_dir and matcher.may_include_below(path):
                _prune_dir(root, path, matcher)
            elif is_dir:
                shutil.rmtree(entry.path)
            else:
                Path(entry.path).unlink()
        elif is_dir:
            _prune_dir(root, path, matcher)
