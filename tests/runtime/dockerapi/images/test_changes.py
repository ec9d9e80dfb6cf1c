"""``changes.changes``: docker diff's walk of a fake upper dir over fake lower layers.

Whiteouts are real character devices 0/0 and opaque dirs carry the real
``trusted.overlay.opaque`` xattr, as overlayfs writes them: making both needs root.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime.dockerapi.images.changes import ADDED, DELETED, MODIFIED, changes

pytestmark = pytest.mark.root


def tree(root: Path, spec: dict[str, str | None]) -> Path:
    """``spec``: relative path -> file content, "/" for a directory, None for a whiteout,
    "->target" for a symlink, "opaque/" for an opaque directory."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, what in spec.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if what is None:
            os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        elif what == "/":
            p.mkdir(exist_ok=True)
        elif what == "opaque/":
            p.mkdir(exist_ok=True)
            os.setxattr(p, "trusted.overlay.opaque", b"y")
        elif what.startswith("->"):
            p.symlink_to(what[2:])
        else:
            p.write_text(what)
    return root


def listing(result: list[dict[str, object]]) -> list[str]:
    letter = {MODIFIED: "C", ADDED: "A", DELETED: "D"}
    return [f"{letter[c['Kind']]} {c['Path']}" for c in result]  # type: ignore[index]


@pytest.fixture
def image(tmp_path: Path) -> list[Path]:
    """Two lower layers, top first: the top one deletes /etc/old and replaces /opt."""
    base = tree(
        tmp_path / "l0",
        {
            "etc/motd": "hi",
            "etc/old": "old",
            "etc/passwd": "root",
            "opt/a": "a",
            "opt/b": "b",
            "srv/x/deep": "d",
            "var/log/": "/",
            "bin/": "/",
        },
    )
    top = tree(tmp_path / "l1", {"etc/old": None, "etc/new-in-image": "n", "srv/x": "opaque/"})
    return [top, base]


def test_add_delete_modify_with_their_parents(tmp_path: Path, image: list[Path]) -> None:
    upper = tree(
        tmp_path / "upper",
        {
            "new": "x",
            "etc/motd": None,
            "etc/passwd": "root\nstudent",
            "var/log/app/out.log": "line",
            "tmp-not-in-image/": "/",
        },
    )
    assert listing(changes(upper, image)) == [
        "C /etc",
        "D /etc/motd",
        "C /etc/passwd",
        "A /new",
        "A /tmp-not-in-image",
        "C /var",
        "C /var/log",
        "A /var/log/app",
        "A /var/log/app/out.log",
    ]


def test_lower_whiteouts_and_opaque_dirs_hide_what_is_below(tmp_path: Path, image: list[Path]) -> None:
    # /etc/old was deleted by the image's top layer: recreating it is an addition; the
    # top layer's opaque /srv/x hides /srv/x/deep of the base layer.
    upper = tree(tmp_path / "upper", {"etc/old": "again", "srv/x/deep": "mine", "etc/new-in-image": None})
    assert listing(changes(upper, image)) == [
        "C /etc",
        "D /etc/new-in-image",
        "A /etc/old",
        "C /srv",
        "C /srv/x",
        "A /srv/x/deep",
    ]


def test_an_opaque_upper_dir_deletes_the_lower_content_it_does_not_keep(tmp_path: Path, image: list[Path]) -> None:
    # rm -rf /opt; mkdir /opt; echo > /opt/b: overlayfs makes /opt opaque in the upper dir
    upper = tree(tmp_path / "upper", {"opt": "opaque/", "opt/b": "new b", "opt/c": "c"})
    assert listing(changes(upper, image)) == ["C /opt", "D /opt/a", "C /opt/b", "A /opt/c"]


def test_a_whiteout_of_a_name_the_image_never_had_is_not_reported(tmp_path: Path, image: list[Path]) -> None:
    upper = tree(tmp_path / "upper", {"bin/ghost": None})
    assert listing(changes(upper, image)) == []


def test_a_copied_up_directory_is_reported_only_when_it_changed(tmp_path: Path, image: list[Path]) -> None:
    upper = tree(tmp_path / "upper", {"var/": "/", "bin/": "/"})
    (upper / "bin").chmod(0o700)
    (image[1] / "bin").chmod(0o755)
    assert listing(changes(upper, image)) == ["C /bin"]


def test_hidden_mount_points_and_their_subtrees_are_left_out(tmp_path: Path, image: list[Path]) -> None:
    upper = tree(
        tmp_path / "upper",
        {"etc/hosts": "127.0.0.1", "data/file": "in a volume", "dev/null": "x", "etc/motd": "changed"},
    )
    result = changes(upper, image, hidden=["/etc/hosts", "/data", "/dev"])
    assert listing(result) == ["C /etc", "C /etc/motd"]


def test_walk_order_is_dockers_depth_first_bytewise(tmp_path: Path) -> None:
    lower = tree(tmp_path / "l0", {"keep": "k"})
    upper = tree(tmp_path / "upper", {"a/b": "1", "a-c": "2", "B": "3", "a/A": "4"})
    assert listing(changes(upper, [lower])) == ["A /B", "A /a", "A /a/A", "A /a/b", "A /a-c"]


def test_symlinks_in_the_upper_dir_are_entries_never_followed(tmp_path: Path, image: list[Path]) -> None:
    outside = tree(tmp_path / "outside", {"secret/file": "host data"})
    upper = tree(tmp_path / "upper", {"escape": f"->{outside}", "etc": f"->{outside}/secret"})
    # /etc is a symlink now (it replaced the image's directory): one change, nothing under it
    assert listing(changes(upper, image)) == ["A /escape", "C /etc"]


def test_symlinks_in_a_lower_layer_are_not_followed_either(tmp_path: Path) -> None:
    outside = tree(tmp_path / "outside", {"file": "host"})
    lower = tree(tmp_path / "l0", {"link": f"->{outside}"})
    upper = tree(tmp_path / "upper", {"link/file": "x"})
    # the lower /link is a symlink, not a directory: the upper dir replaced it
    assert listing(changes(upper, [lower])) == ["C /link", "A /link/file"]


def test_non_utf8_names_are_shown_with_replacement_characters(tmp_path: Path) -> None:
    lower = tree(tmp_path / "l0", {"x": "1"})
    upper = tmp_path / "upper"
    upper.mkdir()
    (Path(os.fsdecode(bytes(upper) + b"/caf\xe9"))).write_text("x")
    assert listing(changes(upper, [lower])) == ["A /caf\ufffd"]
