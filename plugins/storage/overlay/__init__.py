"""``overlay``: the default storage driver where the kernel has overlayfs.

Layout under ``home`` (``<root>/storage/overlay``)::

    layers/<id>/diff      the unpacked layer, with overlay whiteouts (char 0/0 devices,
                          ``trusted.overlay.opaque=y`` directories)
    layers/<id>/link      the layer's short name; ``l/<short>`` -> ``../layers/<id>/diff``
    layers/<id>/size      content bytes, recorded at apply time
    init/<key>/layer      an init layer (hosts, resolv.conf placeholders ...), shared by
                          every container created with the same init files (``key`` hashes
                          them): it is a read-only lower dir, so one copy serves them all
    init/<key>/ref        its reference count: every container using it holds a hard link
                          to it (``containers/<id>/init-ref``: a directory entry, no inode),
                          so ``st_nlink - 1`` containers use it
    containers/<id>/diff  the read-write upper dir; ``work/`` overlay's work dir
    containers/<id>/merged  the mount point;  ``lower`` names the init layer (``init:<key>``)
                          and lists the image layers, bottom first
    containers/<id>/init  the per-container init layer of containers made before the shared
                          ones (a ``lower`` without ``init:``); still mounted as it is

Sharing the init layer saves five inodes per container (the dir, ``etc/`` and three files):
on an ext4 with recent churn each new inode is a search past recently freed ones, a cost on
every create. An unused init layer stays for the next create (a sequence of ``run --rm``
would otherwise remake it each time); it goes with ``remove_layer`` (an image removal) or
``cleanup()`` at daemon start, each an O(1) link-count check per init layer (there are as
many as distinct sets of init files: one or two), no scan of the containers.

Many lower layers: the mount uses the new mount API (one ``fsconfig(lowerdir+)`` per layer),
which has no option-string limit. Where that API is missing it falls back to ``mount(2)`` with
absolute short ``l/`` paths when they fit in a page, and otherwise runs ``mount(8)`` with its
working directory in ``l/`` and relative names (a child process: the daemon never chdirs).
Set option ``mountapi=false`` to force the fallback.
"""

from __future__ import annotations

import errno
import hashlib
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
        self._init_locks = C.KeyedLocks()       # per init key: link/unlink vs make/remove
        for d in ("layers", "l", "containers", "init"):
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
        # an image is going: the shared init layers no container uses go too (a handful
        # at most, each an O(1) link-count check)
        self._remove_unused_init_layers()

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
        key = init_key(init_files)
        tmp = C.tmp_sibling(final)
        try:
            for d in ("diff", "work", "merged"):
                (tmp / d).mkdir(parents=True)
            os.chmod(tmp / "diff", 0o755)
            with self._init_locks(key):
                self._make_shared_init(key, init_files)
                os.link(self.home / "init" / key / "ref", tmp / INIT_REF)
            (tmp / "lower").write_text(f"{INIT_PREFIX}{key}\n" +
                                       "".join(f"{lid}\n" for lid in layers))
            os.rename(tmp, final)
        except BaseException:
            C.rmtree(tmp)
            self._release_init(key)
            raise

    def _make_shared_init(self, key: str, init_files: Mapping[str, bytes]) -> None:
        """(holding the key's lock) Make the shared init layer ``key`` when it is missing:
        built under a temp name, renamed into place complete."""
        final = self.home / "init" / key
        if final.is_dir():
            return
        tmp = C.tmp_sibling(final)
        try:
            (tmp / "layer").mkdir(parents=True, mode=0o755)
            os.chmod(tmp / "layer", 0o755)
            C.write_init_files(tmp / "layer", init_files)
            (tmp / "ref").touch()
            os.rename(tmp, final)
        except BaseException:
            C.rmtree(tmp)
            raise

    def _release_init(self, key: str) -> None:
        """Remove the shared init layer ``key`` when no container links its ``ref`` any
        more (a create that failed after making it; layer removal; daemon start)."""
        final = self.home / "init" / key
        with self._init_locks(key):
            try:
                if os.stat(final / "ref").st_nlink > 1:
                    return
            except FileNotFoundError:
                if not final.is_dir():
                    return
            C.rmtree(final)

    def _read_lower(self, container_id: str) -> tuple[Path, list[str]]:
        """(init layer dir, image layers bottom first, each once) of a container."""
        c = self._ctr(container_id)
        try:
            text = (c / "lower").read_text()
        except FileNotFoundError:
            raise NotFound(f"no rootfs for container {container_id}") from None
        init = c / "init"            # containers made before the shared init layers
        lowers = []
        for x in text.split():
            if x.startswith(INIT_PREFIX):
                key = C.check_id("init layer", x[len(INIT_PREFIX):])
                init = self.home / "init" / key / "layer"
            else:
                lowers.append(x)
        return init, _keep_topmost(lowers)

    def mount(self, container_id: str) -> Path:
        c = self._ctr(container_id)
        merged = c / "merged"
        init, lowers = self._read_lower(container_id)
        if M.is_mountpoint(str(merged)):
            return merged
        # overlay wants the top-most lower first: init, then the image layers top-down.
        lower_dirs = [str(init)] + [str(self._layer(lid) / "diff") for lid in reversed(lowers)]
        if self.use_mount_api:
            try:
                opts: list[tuple[str, str | None]] = [("lowerdir+", d) for d in lower_dirs]
                opts += [("upperdir", str(c / "diff")), ("workdir", str(c / "work"))]
                M.fs_mount("overlay", str(merged), opts)
                return merged
            except OSError as exc:
                if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                    raise
        self._legacy_mount(c, init, lowers)
        return merged

    def _legacy_mount(self, c: Path, init: Path, lowers: list[str]) -> None:
        shorts = [(self._layer(lid) / "link").read_text().strip() for lid in reversed(lowers)]
        l_dir = self.home / "l"
        absolute = ":".join([str(init)] + [f"{l_dir}/{s}" for s in shorts])
        data = f"lowerdir={absolute},upperdir={c / 'diff'},workdir={c / 'work'}"
        if len(data) < PAGE - 1:
            M.mount("overlay", str(c / "merged"), "overlay", 0, data)
            return
        rel = ":".join([os.path.relpath(init, l_dir)] + shorts)
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
        # its init-ref link goes with the directory; the shared init layer stays for the
        # next create (removed with an image's layers or at daemon start when unused)
        c = self._ctr(container_id)
        if (c / "merged").is_dir() and M.is_mountpoint(str(c / "merged")):
            M.umount(str(c / "merged"), detach=True)
        C.rmtree(c)

    def rw_path(self, container_id: str) -> Path:
        return self._ctr(container_id) / "diff"

    def container_metadata(self, container_id: str) -> dict[str, str]:
        c = self._ctr(container_id)
        try:
            init, lowers = self._read_lower(container_id)
        except NotFound:
            return {}
        lower = ":".join([str(init)] + [str(self._layer(l) / "diff") for l in reversed(lowers)])
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
        C.remove_tmp_entries(self.home / "init")
        self._remove_unused_init_layers()
        # short links whose layer was never renamed into place (crash mid-apply)
        for e in os.scandir(self.home / "l"):
            if not os.path.exists(e.path):
                os.unlink(e.path)


    def _remove_unused_init_layers(self) -> None:
        """Remove the shared init layers no container links any more (at layer removal,
        and at daemon start after the half-made containers, and their links, are gone)."""
        for e in os.scandir(self.home / "init"):
            if not C.is_tmp(e.name):
                self._release_init(e.name)


#: The line of a container's ``lower`` file naming its shared init layer.
INIT_PREFIX = "init:"
#: A container's hard link to its shared init layer's ``ref`` (the reference count).
INIT_REF = "init-ref"


def init_key(init_files: Mapping[str, bytes]) -> str:
    """The shared init layer's name for ``init_files``: a hash of the paths and contents
    (the same files give the same layer; any difference, another one)."""
    h = hashlib.sha256()
    for path in sorted(init_files):
        content = init_files[path]
        h.update(f"{len(path)}:{path}:{len(content)}:".encode())
        h.update(content)
    return h.hexdigest()[:32]


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
