"""``aufs``: real aufs branch mounts, where the kernel has aufs.

aufs whiteouts are OCI's own form (``.wh.NAME``, ``.wh..wh..opq``), so layers are stored
exactly as unpacked (like the copy driver) and a diff is the rw branch minus aufs's
bookkeeping (``.wh..wh.plnk``, ``.wh..wh.aufs``, ``.wh..wh.orph``).

Layout under ``home``: ``layers/<id>/``, ``containers/<id>/{init,diff,merged,lower}``.
The mount is ``br=<diff>=rw:<init>=ro+wh:<top layer>=ro+wh:...``; when that does not fit in
one page the first branches are mounted and the rest appended with ``remount,append:``
(what Docker did). The branch-string and batching logic is pure and unit-tested; the rest
needs a kernel with aufs, which :meth:`AufsDriver.unavailable_reason` checks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Mapping, Sequence

from aiorun.errors import InvalidArgument, NotFound, Unavailable
from aiorun.images import layers as L

from .. import _common as C
from .. import _mount as M
from ..copy import CopyDriver, _oci_opaque, _oci_whiteout  # noqa: F401  (same layer form)

PAGE = os.sysconf("SC_PAGESIZE")


def branch(path: str, mode: str) -> str:
    if ":" in path or "," in path or "=" in path:
        raise InvalidArgument(f"aufs branch path {path!r} contains ':', ',' or '='")
    return f"{path}={mode}"


def branch_string(rw: str, ro_top_first: Sequence[str]) -> str:
    """The full ``br=`` option: the rw branch first, then read-only branches top-most first."""
    return "br=" + ":".join([branch(rw, "rw")] + [branch(p, "ro+wh") for p in ro_top_first])


def mount_batches(rw: str, ro_top_first: Sequence[str], limit: int = PAGE - 1,
                  extra: str = "dio,xino=/dev/shm/aufs.xino") -> list[str]:
    """Option strings: the first for ``mount``, the rest for ``remount`` calls.

    Each stays below ``limit`` bytes. The first carries as many read-only branches as fit;
    the rest are ``append:<path>=ro+wh`` options, comma-joined, which aufs adds at the bottom
    (so they keep top-first order).
    """
    out = [(f"{extra}," if extra else "") + branch_string(rw, [])]
    i = 0
    while i < len(ro_top_first):
        add = ":" + branch(ro_top_first[i], "ro+wh")
        if len(out[0]) + len(add) >= limit:
            break
        out[0] += add
        i += 1
    for p in ro_top_first[i:]:
        piece = f"append:{branch(p, 'ro+wh')}"
        if len(piece) >= limit:
            raise InvalidArgument(f"aufs branch path too long: {p!r}")
        if len(out) > 1 and len(out[-1]) + 1 + len(piece) < limit:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def is_aufs_meta(name: str) -> bool:
    return name in L.AUFS_META


class AufsDriver(CopyDriver):
    name = "aufs"

    @classmethod
    def unavailable_reason(cls, home: Path) -> str | None:
        try:
            with open("/proc/filesystems") as f:
                names = {line.split()[-1] for line in f if line.strip()}
        except OSError as exc:
            return f"cannot read /proc/filesystems: {exc}"
        if "aufs" not in names:
            return "the kernel has no aufs filesystem (not in /proc/filesystems)"
        return None

    def _require(self) -> None:
        why = self.unavailable_reason(self.home)
        if why:
            raise Unavailable(f"aufs: {why}")

    # layers: inherited from CopyDriver (OCI whiteout files are aufs's native form)

    def create_container(self, container_id: str, layers: Sequence[str],
                         init_files: Mapping[str, bytes]) -> None:
        final = self._ctr(container_id)
        C.check_new_container(self, container_id, final, layers)
        tmp = C.tmp_sibling(final)
        try:
            for d in ("init", "diff", "merged"):
                (tmp / d).mkdir(parents=True, mode=0o755)
            C.write_init_files(tmp / "init", init_files)
            (tmp / "lower").write_text("".join(f"{lid}\n" for lid in layers))
            os.rename(tmp, final)
        except BaseException:
            C.rmtree(tmp)
            raise

    def _branches(self, container_id: str) -> tuple[str, list[str]]:
        c = self._ctr(container_id)
        try:
            lowers = (c / "lower").read_text().split()
        except FileNotFoundError:
            raise NotFound(f"no rootfs for container {container_id}") from None
        ro = [str(c / "init")] + [str(self._layer(l)) for l in reversed(lowers)]
        return str(c / "diff"), ro

    def mount(self, container_id: str) -> Path:
        self._require()
        merged = self._ctr(container_id) / "merged"
        if M.is_mountpoint(str(merged)):
            return merged
        rw, ro = self._branches(container_id)
        batches = mount_batches(rw, ro)
        M.mount("none", str(merged), "aufs", 0, batches[0])
        try:
            for b in batches[1:]:
                M.mount("none", str(merged), "aufs", M.MS_REMOUNT, b)
        except BaseException:
            M.umount(str(merged))
            raise
        return merged

    def unmount(self, container_id: str) -> None:
        merged = self._ctr(container_id) / "merged"
        if merged.is_dir() and M.is_mountpoint(str(merged)):
            M.umount(str(merged))

    def diff(self, container_id: str, out: BinaryIO) -> None:
        rw = self._ctr(container_id) / "diff"
        if not rw.is_dir():
            raise NotFound(f"no rootfs for container {container_id}")
        write_aufs_diff(str(rw), out)

    def remove_container(self, container_id: str) -> None:
        self.unmount(container_id)
        C.rmtree(self._ctr(container_id))

    def rw_path(self, container_id: str) -> Path:
        return self._ctr(container_id) / "diff"

    def container_metadata(self, container_id: str) -> dict[str, str]:
        c = self._ctr(container_id)
        return {"UpperDir": str(c / "diff"), "MergedDir": str(c / "merged")}

    def status(self) -> list[tuple[str, str]]:
        return [("Root Dir", str(self.home)), ("Layers", str(len(self.layers())))]


def write_aufs_diff(rw: str, out: BinaryIO) -> None:
    """Tar of an aufs rw branch: ``.wh.`` files are already OCI whiteouts; aufs meta is skipped."""
    w = L.DiffWriter(out)
    for rel, e in L.walk_sorted(rw):
        top = rel.split("/")[0]
        if is_aufs_meta(top) or is_aufs_meta(e.name):
            continue
        if e.name == L.OPAQUE:
            w.add_opaque(rel.rpartition("/")[0])
        elif e.name.startswith(L.WHITEOUT_PREFIX):
            parent = rel.rpartition("/")[0]
            name = e.name[len(L.WHITEOUT_PREFIX):]
            w.add_whiteout(f"{parent}/{name}" if parent else name)
        else:
            w.add(e.path, rel)
    w.close()
