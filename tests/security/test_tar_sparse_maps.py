"""Tar headers that cost runtimed memory out of proportion (runtime/images/tarutil.py).

A student controls every byte of ``docker load``, ``docker import`` and ``docker cp``
uploads and of the tar a container's own ``tar`` writes for ``docker cp`` out; runtimed
parses them with ``tarfile``. Two ways that made runtimed hold memory the sandbox's limits
do not see:

* GNU sparse maps: an old-GNU ``S`` member may chain extension blocks for as long as the
  archive goes on (21 entries each), and a PAX 1.0 map may list any number of entries;
  tarfile keeps every entry as a tuple (about five times the bytes the archive spends), and
  a map cut short raised ``IndexError`` (an internal error, not a refusal).
* tarfile keeps every header it has read in ``TarFile.members``, even in stream mode: a
  stream of empty entries costs about its own size in runtimed's memory.

The parsers are called here as the engine calls them (nothing here starts a sandbox); the
archives are built byte by byte, because tarfile cannot write sparse members. Each attack
test fails if the archive is parsed as the unbounded tarfile would parse it.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from runtime import errors
from runtime.dockerapi.images import tarexport
from runtime.images import tarutil

BLOCK = tarfile.BLOCKSIZE


def _octal(n: int) -> bytes:
    return b"%011o\0" % n


def _checksummed(head: bytearray) -> bytes:
    chk = 256 + sum(head[:148]) + sum(head[156:512])
    head[148:155] = b"%06o\0" % chk
    return bytes(head)


def gnu_sparse(entries: int, *, name: str = "holes", end: bool = True, cut_short: bool = False) -> bytes:
    """An old-GNU sparse member ``name`` whose map has ``entries`` entries of one byte
    each, 4 in its header and the rest in extension blocks, its data, then (``end``) the end
    blocks, or (``cut_short``) the archive ends inside the chain of extension blocks."""
    ti = tarfile.TarInfo(name)
    ti.size = entries  # the bytes stored: one per map entry
    head = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    assert len(head) == BLOCK
    head[156:157] = b"S"
    pairs = [(2 * (i + 1), 1) for i in range(entries)]
    inline, rest = pairs[:4], pairs[4:]
    for i, (off, size) in enumerate(inline):
        head[386 + 24 * i : 410 + 24 * i] = _octal(off) + _octal(size)
    head[482] = 1 if rest else 0
    head[483:495] = _octal(2 * entries + 2)  # the file's real size
    out = bytearray(_checksummed(head))
    for start in range(0, len(rest), 21):
        chunk = rest[start : start + 21]
        block = bytearray(BLOCK)
        for i, (off, size) in enumerate(chunk):
            block[24 * i : 24 * i + 24] = _octal(off) + _octal(size)
        block[504] = 1 if start + 21 < len(rest) else 0
        out += block
    out += b"x" * entries + bytes(-entries % BLOCK)
    if cut_short:
        return bytes(out[: 4 * BLOCK + BLOCK // 2])
    return bytes(out + bytes(2 * BLOCK)) if end else bytes(out)


def pax_sparse_10(entries: int, *, claimed: int | None = None) -> bytes:
    """A PAX 1.0 sparse member: its map (``claimed`` entries announced, ``entries`` written)
    at the start of its data."""
    numbers = [str(claimed if claimed is not None else entries)]
    for i in range(entries):
        numbers += [str(2 * (i + 1)), "1"]
    sparse_map = ("\n".join(numbers) + "\n").encode()
    data = sparse_map + bytes(-len(sparse_map) % BLOCK) + b"x" * entries
    ti = tarfile.TarInfo("GNUSparseFile.0/holes")
    ti.size = len(data)
    ti.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "holes",
        "GNU.sparse.realsize": str(2 * entries + 2),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _refused_everywhere(archive: bytes, tmp_path: Path, match: str, *, first: bool = True) -> None:
    """The layer extractor (load, import, commit), the image archive's index (load) and the
    layer scanner each refuse ``archive`` as a bad request; when the first member is the
    refused one, nothing is written (else the extractor's caller discards a partial layer)."""
    dest = tmp_path / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(errors.BadRequest, match=match):
        tarutil.extract_layer_stream(io.BytesIO(archive), dest, budget=2**30)
    if first:
        assert list(dest.iterdir()) == []
    with pytest.raises(errors.BadRequest, match=match):
        tarexport._Archive(io.BytesIO(archive))
    blob = tmp_path / "blob"
    blob.write_bytes(archive)
    with pytest.raises(errors.BadRequest, match=match):
        tarutil.scan_layer(blob)


def test_the_unbounded_parser_would_take_these_archives() -> None:
    """The hand-built archives are well-formed: plain tarfile reads every entry of their maps."""
    with tarfile.open(fileobj=io.BytesIO(gnu_sparse(tarutil.MAX_SPARSE_ENTRIES + 100)), mode="r|") as t:
        (member,) = list(t)
        assert member.sparse is not None and len(member.sparse) == tarutil.MAX_SPARSE_ENTRIES + 100
    with tarfile.open(fileobj=io.BytesIO(pax_sparse_10(tarutil.MAX_SPARSE_ENTRIES + 100)), mode="r|") as t:
        (member,) = list(t)
        assert member.sparse is not None and len(member.sparse) == tarutil.MAX_SPARSE_ENTRIES + 100


def test_an_endless_chain_of_gnu_sparse_extension_blocks_is_refused(tmp_path: Path) -> None:
    _refused_everywhere(gnu_sparse(tarutil.MAX_SPARSE_ENTRIES + 100), tmp_path, "sparse file maps")


def test_a_pax_sparse_map_is_refused_from_its_announced_size(tmp_path: Path) -> None:
    # announces a billion entries and writes a few: refused before any is read
    _refused_everywhere(pax_sparse_10(3, claimed=10**9), tmp_path / "claimed", "sparse file maps")
    _refused_everywhere(pax_sparse_10(tarutil.MAX_SPARSE_ENTRIES + 100), tmp_path / "written", "sparse file maps")


def test_many_small_maps_add_up_for_one_archive(tmp_path: Path) -> None:
    # each member under the bound, the archive over it
    per = tarutil.MAX_SPARSE_ENTRIES // 4 + 1
    archive = b"".join(gnu_sparse(per, name=f"hole{i}", end=False) for i in range(4)) + bytes(2 * BLOCK)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r|") as t:
        assert len(list(t)) == 4  # four well-formed members
    _refused_everywhere(archive, tmp_path, "sparse file maps", first=False)


def test_a_sparse_map_cut_short_is_a_refusal_not_an_internal_error(tmp_path: Path) -> None:
    _refused_everywhere(gnu_sparse(200, cut_short=True), tmp_path, "cut short|not a valid tar|not a readable")


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_a_real_sparse_file_still_unpacks(tmp_path: Path, fmt: str) -> None:
    """GNU tar's own sparse archives (old GNU and PAX 1.0 maps) unpack to the same bytes."""
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "holes", "wb") as f:
        for i in range(50):
            f.seek(i * 65536)
            f.write(b"data-%d" % i)
        f.truncate(50 * 65536)
    tar = subprocess.run(
        ["tar", "--sparse", f"--format={fmt}", "-C", str(src), "-cf", "-", "holes"], capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(tar.stdout), mode="r|") as t:
        assert any(m.sparse for m in t), "GNU tar wrote no sparse map: the test proves nothing"
    dest = tmp_path / "dest"
    dest.mkdir()
    stats = tarutil.extract_layer_stream(io.BytesIO(tar.stdout), dest, budget=2**30)
    assert stats.entries == 1
    assert (dest / "holes").read_bytes() == (src / "holes").read_bytes()


def test_a_stream_keeps_no_headers_it_has_passed() -> None:
    """``stream_members`` gives every member in order, as iterating the TarFile does, while
    the TarFile holds at most the one just read (tarfile alone would hold them all)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for i in range(2000):
            t.addfile(tarfile.TarInfo(f"f{i}"))
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r|") as t:
        expected = [m.name for m in t]
        assert len(t.members) == 2000  # type: ignore[attr-defined]  # what the bound is for (tarfile's private list)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r|") as t:
        names = []
        for m in tarutil.stream_members(t):
            names.append(m.name)
            assert len(t.members) <= 1  # type: ignore[attr-defined]
    assert names == expected
    # after a first next() (as docker cp's stat reads the first header), the first is not lost
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r|") as t:
        first = t.next()
        assert first is not None
        assert [m.name for m in tarutil.stream_members(t)] == expected
