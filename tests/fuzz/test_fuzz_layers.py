"""Fuzzing layer tar import: decompression (:func:`aiorun.images.layers.spool`) and
extraction through the built-in storage drivers' ``apply_layer`` (the path ``aiorun load`` and
``pull`` take), with random and adversarial tars.

Properties, for every input:

* the only error is :class:`~aiorun.errors.InvalidArgument` (the module's clear error);
* nothing outside the layer directory changes: the whole temporary tree around it (including
  an ``outside`` directory that symlinks and hard links in the tar point at) is compared,
  entry by entry, type, mode, owner, size, link count and mtime;
* a failed apply leaves no half-made (``*.tmp-*``) layer behind;
* a tar whose headers claim huge (or sparse) sizes does not make memory grow with the claim.

Adversarial shapes: ``..`` and absolute names, symlink-then-file-through-it, hard links out of
the layer and to directories, device nodes, FIFOs, whiteouts (also malformed), duplicate
names, unknown entry types, PAX overrides of uid/gid/mtime/size/path with absurd values,
GNU sparse members, byte flips and truncation, gzip/zstd wrapping.

Budget: see ``fuzzing.py`` (``AIORUN_FUZZ_EXAMPLES`` raises the number of examples).
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import tempfile
import tracemalloc
from pathlib import Path

import zstandard
from hypothesis import given
from hypothesis import strategies as st

from aiorun.errors import InvalidArgument
from aiorun.images import layers as L
from aiorun_plugins.storage.copy import CopyDriver
from aiorun_plugins.storage.overlay import OverlayDriver

from fuzzing import budget

LAYER_ID = "f" * 64
OUT = "@OUT"  # replaced by the absolute path of the directory outside the layer

# --- strategies --------------------------------------------------------------------------------

_components = st.sampled_from([
    "a", "b", "c", "..", ".", "", "ü", "x y", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh.",
    ".wh..", ".wh..wh.plnk", "dev", "n\x00ul", "a" * 120,
])
_prefixes = st.sampled_from(["", "", "", "/", "./", "../", "//", OUT + "/"])
names = st.builds(lambda pre, parts: pre + "/".join(parts), _prefixes,
                  st.lists(_components, min_size=1, max_size=4))
link_targets = st.one_of(names, st.sampled_from([
    OUT, OUT + "/victim", "../outside", "../outside/victim", "/", "../../..", ".", "a/b", "a",
    "/proc/self/root", "/etc/passwd"]))

_absurd_numbers = st.sampled_from([
    "0", "-1", "-5", "4294967295", "4294967296", "99999999999999999999999", "1e400", "inf",
    "-inf", "nan", "1.5", "", "x", "0x10", " 7"])
_pax_keys = st.sampled_from(["uid", "gid", "mtime", "size", "path", "linkpath", "uname",
                             "atime", "SCHILY.xattr.user.k", "SCHILY.xattr.trusted.overlay.opaque",
                             "SCHILY.xattr.security.capability", "GNU.sparse.size"])
pax_headers = st.dictionaries(_pax_keys, st.one_of(_absurd_numbers, names), max_size=3)

KINDS = ("file", "dir", "sym", "hard", "chr", "blk", "fifo", "other", "sparse")


@st.composite
def entries(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(KINDS))
    e = {"kind": kind, "name": draw(names), "mode": draw(st.integers(0, 0o7777)),
         "uid": draw(st.one_of(st.integers(0, 70000), st.integers(0, 2**64))),
         "gid": draw(st.integers(0, 70000)),
         "mtime": draw(st.one_of(st.integers(0, 2**33), st.integers(-2**40, 2**70))),
         "pax": draw(st.one_of(st.just({}), pax_headers))}
    if kind in ("file", "sparse"):
        e["data"] = draw(st.binary(max_size=64))
    if kind == "sparse":
        e["realsize"] = draw(st.integers(0, 1 << 22))  # disk use stays small; memory: below
    if kind in ("sym", "hard"):
        e["link"] = draw(link_targets)
    if kind in ("chr", "blk"):
        e["dev"] = (draw(st.integers(0, 255)), draw(st.integers(0, 255)))
    if kind == "other":
        e["type"] = draw(st.sampled_from([b"7", b"Z", b"V", b"M", b"N", b"K", b"L", b"D",
                                          b"\x00", b"\xff"]))
    return e


@st.composite
def layer_tars(draw: st.DrawFn) -> tuple[list[dict], str, list[tuple[int, int]], int | None,
                                         str]:
    members = draw(st.lists(entries(), max_size=8))
    # duplicate names on purpose: a later entry replaces (or is blocked by) an earlier one
    duplicate: bool = draw(st.booleans())
    if members and duplicate:
        dup = dict(draw(entries()))
        dup["name"] = draw(st.sampled_from(members))["name"]
        members.append(dup)
    fmt = draw(st.sampled_from(["pax", "pax", "gnu", "ustar"]))
    flips = draw(st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)),
                          max_size=3))
    cut = draw(st.one_of(st.none(), st.none(), st.integers(0, 1 << 16)))
    wrap = draw(st.sampled_from(["plain", "plain", "gzip", "zstd"]))
    return members, fmt, flips, cut, wrap


# --- building a tar ----------------------------------------------------------------------------

_FORMATS = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT, "ustar": tarfile.USTAR_FORMAT}


def _sub(text: str, outside: str) -> str:
    return text.replace(OUT, outside)


def build_tar(members: list[dict], fmt: str, outside: str) -> bytes:
    """A tar of ``members``; members tarfile itself refuses to write are left out."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=_FORMATS[fmt]) as tar:
        for e in members:
            entry = io.BytesIO()
            try:
                with tarfile.open(fileobj=entry, mode="w", format=_FORMATS[fmt]) as one:
                    ti, data = _tarinfo(e, outside)
                    one.addfile(ti, io.BytesIO(data) if data is not None else None)
            except (ValueError, OverflowError, UnicodeError, tarfile.TarError):
                continue  # not representable in this format: not an input we can make
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _tarinfo(e: dict, outside: str) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(_sub(e["name"], outside))
    ti.mode, ti.uid, ti.gid, ti.mtime = e["mode"], e["uid"], e["gid"], e["mtime"]
    ti.pax_headers = {k: _sub(v, outside) for k, v in e["pax"].items()}
    data: bytes | None = None
    kind = e["kind"]
    if kind == "file":
        data = e["data"]
        ti.size = len(data)
    elif kind == "sparse":
        # GNU sparse 1.0 (PAX): the map heads the data; the rest is one chunk at the end.
        payload = e["data"]
        offset = max(0, e["realsize"] - len(payload))
        smap = f"1\n{offset}\n{len(payload)}\n".encode()
        data = smap.ljust(512, b"\0") + payload
        ti.size = len(data)
        ti.pax_headers.update({"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                               "GNU.sparse.name": ti.name,
                               "GNU.sparse.realsize": str(e["realsize"])})
    elif kind == "dir":
        ti.type = tarfile.DIRTYPE
    elif kind == "sym":
        ti.type, ti.linkname = tarfile.SYMTYPE, _sub(e["link"], outside)
    elif kind == "hard":
        ti.type, ti.linkname = tarfile.LNKTYPE, _sub(e["link"], outside)
    elif kind in ("chr", "blk"):
        ti.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = e["dev"]
    elif kind == "fifo":
        ti.type = tarfile.FIFOTYPE
    else:
        ti.type = e["type"]
    return ti, data


def mangle(raw: bytes, flips: list[tuple[int, int]], cut: int | None, wrap: str) -> bytes:
    b = bytearray(raw)
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    if cut is not None and b:
        del b[cut % (len(b) + 1):]
    out = bytes(b)
    if wrap == "gzip":
        return gzip.compress(out, mtime=0)
    if wrap == "zstd":
        return zstandard.ZstdCompressor().compress(out)
    return out


# --- the properties ----------------------------------------------------------------------------

def snapshot(root: Path, layers: Path) -> dict[str, tuple]:
    """Every entry under ``root`` except the layer being applied (``layers/<id>*``) and the
    overlay driver's short links (``l/``): what a stray write would change."""
    seen: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == layers:
            dirnames[:] = [n for n in dirnames if not n.startswith(LAYER_ID)]
            filenames = [n for n in filenames if not n.startswith(LAYER_ID)]
        if here == layers.parent:
            dirnames[:] = [n for n in dirnames if n != "l"]
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if p == str(layers):
                continue  # its own link count and mtime change when the layer lands
            s = os.lstat(p)
            link = os.readlink(p) if stat.S_ISLNK(s.st_mode) else None
            seen[p] = (s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_nlink, s.st_mtime_ns,
                       s.st_ino, link, os.listxattr(p, follow_symlinks=False))
    return seen


def make_world(tmp: Path, driver_cls: type) -> tuple[object, Path, Path]:
    """A driver home plus an ``outside`` directory with a victim file and a symlink to it."""
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    (outside / "sub").mkdir()
    os.symlink("victim", outside / "link")
    driver = driver_cls(tmp / "home")
    return driver, outside, tmp / "home" / "layers" / LAYER_ID


def apply(driver, raw: bytes) -> None:
    spooled = io.BytesIO()
    L.spool(io.BytesIO(raw), spooled)
    spooled.seek(0)
    driver.apply_layer(LAYER_ID, spooled)


@budget(300)
@given(layer_tars(), st.sampled_from([CopyDriver, OverlayDriver]))
def test_layer_import_fails_cleanly_and_stays_inside(shape, driver_cls):
    members, fmt, flips, cut, wrap = shape
    with tempfile.TemporaryDirectory(prefix="aiorun-fuzz-") as d:
        tmp = Path(d)
        driver, outside, layer_dir = make_world(tmp, driver_cls)
        raw = mangle(build_tar(members, fmt, str(outside)), flips, cut, wrap)
        layers = layer_dir.parent
        before = snapshot(tmp, layers)
        try:
            apply(driver, raw)
        except InvalidArgument:
            applied = False
        else:
            applied = True
        assert snapshot(tmp, layers) == before, "something changed outside the layer"
        left = sorted(os.listdir(layers))
        if not applied:
            assert left == [], f"a failed apply left {left}"
        elif driver_cls is CopyDriver:
            assert left == [LAYER_ID, LAYER_ID + ".size"]
        else:
            assert left == [LAYER_ID]


@budget(40)
@given(st.binary(max_size=2048), st.sampled_from([b"", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00",
                                                 b"\x28\xb5\x2f\xfd"]))
def test_arbitrary_bytes_are_rejected_cleanly(data, magic):
    with tempfile.TemporaryDirectory(prefix="aiorun-fuzz-") as d:
        driver, _outside, _layer = make_world(Path(d), CopyDriver)
        try:
            apply(driver, magic + data)
        except InvalidArgument:
            pass


@budget(8)
@given(st.sampled_from(["size", "sparse"]), st.integers(1 << 30, 1 << 62))
def test_huge_claimed_sizes_do_not_grow_memory(how, claimed):
    """A header may claim any size; the tar carries only a few bytes. Memory must not follow
    the claim (the sparse case is capped at 64 MiB of holes: holes are written out as zeros,
    which costs disk and time, not memory)."""
    if how == "size":
        raw = build_tar([{"kind": "file", "name": "big", "mode": 0o644, "uid": 0, "gid": 0,
                          "mtime": 0, "pax": {"size": str(claimed)}, "data": b"x" * 100}],
                        "pax", "/nonexistent")
    else:
        raw = build_tar([{"kind": "sparse", "name": "holes", "mode": 0o644, "uid": 0, "gid": 0,
                          "mtime": 0, "pax": {}, "data": b"end", "realsize": 64 << 20}],
                        "pax", "/nonexistent")
    with tempfile.TemporaryDirectory(prefix="aiorun-fuzz-") as d:
        driver, _outside, _layer = make_world(Path(d), CopyDriver)
        tracemalloc.start()
        try:
            apply(driver, raw)
        except InvalidArgument:
            pass
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert peak < 32 << 20, f"peak Python memory {peak} bytes for a {len(raw)}-byte tar"
