"""The kubelet writes ConfigMap/Secret/token files as host root into an engine volume: a
link planted in that volume (the student's engine can reach it too) must never lead a
write outside it. Exercised on a temporary directory: no engine is needed for the write."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime.kube.node.kubelet import Kubelet
from runtime.kube.node.podstate import ConfigError


def write(root: Path, files: dict[str, tuple[bytes, int]]) -> None:
    me = SimpleNamespace(engine=SimpleNamespace(ctx=SimpleNamespace(uid_base=0)))
    Kubelet._write_files(me, "cfg", root, files)  # type: ignore[arg-type]


def test_files_land_in_the_volume_with_their_modes(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    write(root, {"a.conf": (b"x=1\n", 0o644), "deep/er/b": (b"secret", 0o400)})
    assert (root / "a.conf").read_bytes() == b"x=1\n"
    assert (root / "deep/er/b").read_bytes() == b"secret"
    assert (root / "deep/er/b").stat().st_mode & 0o777 == 0o400


@pytest.mark.parametrize("rel", ["link/x", "link", "dir/link/y"])
def test_a_planted_link_does_not_lead_a_write_outside(tmp_path: Path, rel: str) -> None:
    root, outside = tmp_path / "vol", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "dir").mkdir()
    (root / "link").symlink_to(outside)
    (root / "dir/link").symlink_to(outside)
    with pytest.raises(ConfigError, match="cannot write"):
        write(root, {rel: (b"pwned", 0o644)})
    assert list(outside.iterdir()) == []


def test_the_volume_root_itself_may_not_be_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "vol").symlink_to(outside)
    with pytest.raises(ConfigError):
        write(tmp_path / "vol", {"x": (b"pwned", 0o644)})
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("rel", ["../x", "/etc/x", "a/../../x", "./x"])
def test_paths_that_leave_the_volume_are_refused(tmp_path: Path, rel: str) -> None:
    with pytest.raises(ConfigError, match="invalid path"):
        write(tmp_path, {rel: (b"", 0o644)})
