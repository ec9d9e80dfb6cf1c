""".dockerignore: moby's dockerignore.ReadAll + patternmatcher semantics, and pruning a context."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import errors
from runtime.dockerapi.build.ignore import PatternMatcher, prune, read_patterns


def test_read_patterns_normalises_like_docker() -> None:
    text = "\ufeff# comment\n  \n/abs/path\n  spaced  \n!  keep.txt\na/../b\n./c/\n #not a comment\n"
    assert read_patterns(text) == ["abs/path", "spaced", "!keep.txt", "b", "c", "#not a comment"]


def matcher(*patterns: str) -> PatternMatcher:
    return PatternMatcher(read_patterns("\n".join(patterns)))


def test_star_and_question_mark_stay_within_one_component() -> None:
    m = matcher("*.log", "tmp?")
    assert m.matches("a.log")
    assert not m.matches("dir/a.log")  # * does not cross /
    assert m.matches("tmp1") and not m.matches("tmp12")
    assert m.matches("tmp1/inside")  # a matching parent excludes its contents


def test_double_star_matches_any_depth() -> None:
    m = matcher("**/*.pyc", "build/**")
    assert m.matches("x.pyc")  # **/ may match nothing
    assert m.matches("a/b/c/x.pyc")
    assert m.matches("build/out/bin")
    assert not m.matches("builder/x")
    assert matcher("a/**/z").matches("a/z") and matcher("a/**/z").matches("a/b/c/z")


def test_last_match_wins_and_exceptions_reinclude() -> None:
    m = matcher("*.md", "!README.md", "docs")
    assert m.matches("CHANGES.md")
    assert not m.matches("README.md")
    assert m.matches("docs/README.md")  # excluded again by the later "docs"
    m2 = matcher("secrets", "!secrets/public.pem")
    assert m2.matches("secrets/key") and not m2.matches("secrets/public.pem")


def test_escapes_classes_and_literal_dots() -> None:
    assert matcher("file\\*").matches("file*") and not matcher("file\\*").matches("files")
    assert matcher("[ab].txt").matches("a.txt") and not matcher("[ab].txt").matches("c.txt")
    assert not matcher("a.c").matches("abc")  # . is literal
    with pytest.raises(errors.BadRequest, match='illegal exclusion pattern: "!"'):
        PatternMatcher(["!"])


def tree(root: Path, files: list[str]) -> None:
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f)


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_prune_removes_excluded_and_keeps_exceptions(tmp_path: Path) -> None:
    tree(
        tmp_path,
        ["Dockerfile", ".dockerignore", "app.py", "debug.log", "node_modules/x/i.js", "secrets/key", "secrets/pub.pem"],
    )
    prune(tmp_path, matcher("*.log", "node_modules", "secrets", "!secrets/pub.pem", "Dockerfile"))
    assert listing(tmp_path) == [".dockerignore", "app.py", "secrets/pub.pem"]
    assert not (tmp_path / "node_modules").exists()


def test_prune_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    tree(outside, ["precious.log"])
    ctx = tmp_path / "ctx"
    tree(ctx, ["a.txt"])
    (ctx / "link").symlink_to(outside)
    prune(ctx, matcher("link/*.log", "**/*.log"))
    assert (outside / "precious.log").exists()
    assert (ctx / "link").is_symlink()
