"""``overlay``: the default storage driver where the kernel has overlayfs.

Layout under ``home`` (``<root>/storage/overlay``)::

    layers/<id>/diff      the unpacked layer, with overlay whiteouts (char 0/0 devices,
                          ``trusted.overlay.opaque=y`` directories)
    layers/<id>/link      the layer's short name; ``l/<short>`` -> ``../layers/<id>/diff``
    layers/<id>/size      content bytes, recorded at apply time
    containers/<id>/init  the init layer (hosts, resolv.conf placeholders ...) — a lower dir
    containers/<id>/diff  the read-write upper dir; ``work/`` overlay's work dir
    containers/<id>/merged  the mount point;  ``lower`` lists the image layers, bottom first

Many lower layers: the mount uses the new mount API (one ``fsconfig(lowerdir+)`` per layer),
which has no option-string limit. Where that API is missing it falls back to ``mount(2)`` with
absolute short ``l/`` paths when they fit in a page, and otherwise runs ``mount(8)`` with its
working directory in ``l/`` and relative names (a child process: the daemon never chdirs).
Set option ``mountapi=false`` to force the fallback.
"""

from __future__ import annotations

import errno
import os
import secrets
import subprocess
from pathlib import Path
from typing import BinaryIO, Mapping, Sequence

from aiorun.errors import InvalidArgument, NotFound
from aiorun.images import layers as L
from aiorun.drivers.storage import StorageDriver

from .. import _common as C
from .. import _mount as M

OPAQUE_XATTR = "trusted.overlay.opaque"
PAGE = os.sysconf("SC_PAGESIZE")


def _fs_type(path: Path) -> str:
    """Filesystem type holding ``path`` (nearest existing ancestor), from mountinfo."""
    p = path
    while not p.exists():
        p = p.parent
    real = os.path.realpath(p)
    best, fstype = "", "unknown"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mp = left.split(" ")[4].replace("\\040", " ")
            if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, fstype = mp, right.split(" ")[0]
    return fstype


def _has_fs(name: str) -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == name for line in f if line.strip())
    except OSError:
        return False


class OverlayDriver(C.LayerHome, StorageDriver):
    name = "overlay"

    def __init__(self, home: Path, options: Mapping[str, str] | None = None) -> None:
        super().__init__(home, options)
        self._init_layer_home()
        for d in ("layers", "l", "containers"):
            (self.home / d).mkdir(parents=True, exist_ok=True)
        self.use_mount_api = (M.NEW_MOUNT_API and
                              self.options.get("mountapi", "true").lower() not in ("0", "false", "no"))

    @classmethod
    def unavailable_reason(cls, home: Path) -> str | None:
        if not _has_fs("overlay"):
            return "the kernel has no overlay filesystem (not in /proc/filesystems)"
        fstype = _fs_type(home)
        if fstype in ("overlay", "aufs"):
            return f"the state root is on {fstype}, which cannot hold an overlay upper dir"
        return None

    # --- layers (paths, apply_layer, has_layer, layers: C.LayerHome) -------------------
    def _extract_layer(self, layer_id: str, final: Path, diff: BinaryIO) -> int:
        tmp = C.tmp_sibling(final)
        short = None
        try:
            (tmp / "diff").mkdir(parents=True)
            size = L.extract_tar(diff, tmp / "diff", whiteout=_mk_whiteout, opaque=_mk_opaque)
            short = self._new_short()
            (tmp / "link").write_text(short)
            (tmp / "size").write_text(str(size))
            os.symlink(f"../layers/{layer_id}/diff", self.home / "l" / short)
            os.rename(tmp, final)
        except BaseException:
            C.rmtree(tmp)
            if short:
                try:
                    os.unlink(self.home / "l" / short)
                except FileNotFoundError:
                    pass
            raise
        return size

    def _new_short(self) -> str:
        while True:
            s = secrets.token_hex(6).upper()  # 12 chars, like docker's l/ names (26 there)
            if not os.path.lexists(self.home / "l" / s):
                return s

    def remove_layer(self, layer_id: str) -> None:
        d = self._layer(layer_id)
        try:
            short = (d / "link").read_text().strip()
            os.unlink(self.home / "l" / short)
        except (FileNotFoundError, NotADirectoryError):
            pass
        C.rmtree(d)

    def layer_size(self, layer_id: str) -> int:
        d = self._layer(layer_id)
        try:
            return int((d / "size").read_text())
        except (FileNotFoundError, ValueError):
            if not d.is_dir():
                raise NotFound(f"layer {layer_id} not found in the overlay driver") from None
            return C.tree_size(d / "diff")

    # --- containers -------------------------------------------------------------------
    def create_container(self, container_id: str, layers: Sequence[str],
                         init_files: Mapping[str, bytes]) -> None:
        final = self._ctr(container_id)
        C.check_new_container(self, container_id, final, layers)
        tmp = C.tmp_sibling(final)
        try:
            for d in ("init", "diff", "work", "merged"):
                (tmp / d).mkdir(parents=True)
            os.chmod(tmp / "init", 0o755)
            os.chmod(tmp / "diff", 0o755)
            C.write_init_files(tmp / "init", init_files)
            (tmp / "lower").write_text("".join(f"{lid}\n" for lid in layers))
            os.rename(tmp, final)
        except BaseException:
            C.rmtree(tmp)
            raise

    def _lowers(self, container_id: str) -> list[str]:
        try:
            text = (self._ctr(container_id) / "lower").read_text()
        except FileNotFoundError:
            raise NotFound(f"no rootfs for container {container_id}") from None
        return _keep_topmost([x for x in text.split() if x])

    def mount(self, container_id: str) -> Path:
        c = self._ctr(container_id)
        merged = c / "merged"
        lowers = self._lowers(container_id)
        if M.is_mountpoint(str(merged)):
            return merged
        # overlay wants the top-most lower first: init, then the image layers top-down.
        lower_dirs = [str(c / "init")] + [str(self._layer(lid) / "diff") for lid in reversed(lowers)]
        if self.use_mount_api:
            try:
                opts: list[tuple[str, str | None]] = [("lowerdir+", d) for d in lower_dirs]
                opts += [("upperdir", str(c / "diff")), ("workdir", str(c / "work"))]
                M.fs_mount("overlay", str(merged), opts)
                return merged
            except OSError as exc:
                if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                    raise
        self._legacy_mount(c, lowers)
        return merged

    def _legacy_mount(self, c: Path, lowers: list[str]) -> None:
        shorts = [(self._layer(lid) / "link").read_text().strip() for lid in reversed(lowers)]
        l_dir = self.home / "l"
        absolute = ":".join([str(c / "init")] + [f"{l_dir}/{s}" for s in shorts])
        data = f"lowerdir={absolute},upperdir={c / 'diff'},workdir={c / 'work'}"
        if len(data) < PAGE - 1:
            M.mount("overlay", str(c / "merged"), "overlay", 0, data)
            return
        rel = ":".join([f"../containers/{c.name}/init"] + shorts)
        data = f"lowerdir={rel},upperdir={c / 'diff'},workdir={c / 'work'}"
        if len(data) >= PAGE - 1:
            raise InvalidArgument(f"too many layers ({len(lowers)}) for an overlay mount "
                                  "without the new mount API")
        # mount(8) in a child whose cwd is l/: relative lowerdirs keep the string short.
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", data, str(c / "merged")],
                           cwd=l_dir, capture_output=True, text=True)
        if r.returncode != 0:
            raise OSError(errno.EIO, f"mount overlay ({len(lowers)} layers): {r.stderr.strip()}")

    def unmount(self, container_id: str) -> None:
        merged = self._ctr(container_id) / "merged"
        if merged.is_dir() and M.is_mountpoint(str(merged)):
            M.umount(str(merged), detach=True)

    def diff(self, container_id: str, out: BinaryIO) -> None:
        upper = self._ctr(container_id) / "diff"
        if not upper.is_dir():
            raise NotFound(f"no rootfs for container {container_id}")
        w = L.DiffWriter(out)
        for rel, e in L.walk_sorted(str(upper)):
            st = e.stat(follow_symlinks=False)
            if _is_whiteout(st):
                w.add_whiteout(rel)
                continue
            if e.name.startswith(L.WHITEOUT_PREFIX):
                continue  # cannot be represented in an OCI layer
            w.add(e.path, rel)
            if e.is_dir(follow_symlinks=False) and _is_opaque(e.path):
                w.add_opaque(rel)
        w.close()

    def remove_container(self, container_id: str) -> None:
        c = self._ctr(container_id)
        if (c / "merged").is_dir() and M.is_mountpoint(str(c / "merged")):
            M.umount(str(c / "merged"), detach=True)
        C.rmtree(c)

    def rw_path(self, container_id: str) -> Path:
        return self._ctr(container_id) / "diff"

    def container_metadata(self, container_id: str) -> dict[str, str]:
        c = self._ctr(container_id)
        try:
            lowers = self._lowers(container_id)
        except NotFound:
            return {}
        lower = ":".join([str(c / "init")] + [str(self._layer(l) / "diff") for l in reversed(lowers)])
        return {"LowerDir": lower, "UpperDir": str(c / "diff"), "WorkDir": str(c / "work"),
                "MergedDir": str(c / "merged")}

    def status(self) -> list[tuple[str, str]]:
        return [("Backing Filesystem", _fs_type(self.home)),
                ("Supports d_type", "true"),
                ("Using metacopy", "false"),
                ("Native Overlay Diff", "true"),
                ("Mount API", "fsopen/lowerdir+" if self.use_mount_api else "mount(2)"),
                ("Layers", str(len(self.layers())))]

    def cleanup(self) -> None:
        C.remove_tmp_entries(self.home / "layers")
        C.remove_tmp_entries(self.home / "containers")
        # short links whose layer was never renamed into place (crash mid-apply)
        for e in os.scandir(self.home / "l"):
            if not os.path.exists(e.path):
                os.unlink(e.path)


def _mk_whiteout(pfd: int, name: str) -> None:
    import stat as S
    try:
        L._remove_at(pfd, name)
    except FileNotFoundError:
        pass
    os.mknod(name, S.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)


def _mk_opaque(dfd: int) -> None:
    os.setxattr(dfd, OPAQUE_XATTR, b"y")


def _is_whiteout(st: os.stat_result) -> bool:
    import stat as S
    return S.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _keep_topmost(layers: list[str]) -> list[str]:
    """Drop repeated layers, keeping each one's top-most place (``layers`` is bottom first).

    overlayfs refuses the same lower directory twice (ELOOP). Dropping the lower copies does
    not change the merged view: the upper copy re-adds every file and whiteout it has, over
    whatever the layers in between did.
    """
    seen: set[str] = set()
    out: list[str] = []
    for lid in reversed(layers):
        if lid not in seen:
            seen.add(lid)
            out.append(lid)
    return out[::-1]
