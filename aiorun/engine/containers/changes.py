"""``docker diff`` and ``docker export``.

``changes``: the container's read-write layer as the storage driver writes it for commit
(``storage.diff``, OCI whiteouts), compared with the image's layers: an entry the image has
is ``C`` (kind 0), one it lacks is ``A`` (1), a whiteout is ``D`` (2). A directory holding a
change is in the rw layer too (overlay copies it up), so it is listed as ``C`` — as Docker
lists it. The init files (/etc/hosts...) are bind mounts and never part of the diff.

``export``: the container's flattened rootfs (image layers + its changes, without its
volumes, as Docker) as a tar stream; the rootfs of a stopped container is mounted for the
duration.
"""

from __future__ import annotations

import secrets
import tarfile
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable

import anyio
import anyio.to_thread

from aiorun.engine.containers.archive import container_view
from aiorun.engine.containers.tarwrite import add_entry, tar_stream
from aiorun.engine.containers.fsview import FsView
from aiorun.errors import Unavailable
from aiorun.images.diff import INIT_FILES
from aiorun.images.layers import OPAQUE, WHITEOUT_PREFIX

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.containers import ContainerManager

MODIFY, ADD, DELETE = 0, 1, 2


def image_paths(layer_tars: Iterable[Path]) -> set[str]:
    """Every path (``a/b``, no leading ``/``) of the image made of these layer tars, bottom
    first, whiteouts and opaque directories applied."""
    paths: set[str] = set()
    for tar_path in layer_tars:
        with tarfile.open(tar_path, "r:") as t:
            for m in t:
                name = _clean(m.name)
                parent, _, base = name.rpartition("/")
                if base == OPAQUE:
                    _drop_below(paths, parent)
                elif base.startswith(WHITEOUT_PREFIX):
                    gone = (parent + "/" if parent else "") + base[len(WHITEOUT_PREFIX):]
                    paths.discard(gone)
                    _drop_below(paths, gone)
                elif name:
                    paths.add(name)
    return paths


def _clean(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _drop_below(paths: set[str], d: str) -> None:
    prefix = d + "/" if d else ""
    for p in [p for p in paths if p.startswith(prefix) and p != d]:
        paths.discard(p)


def diff_changes(diff_names: Iterable[str], in_image: set[str]) -> list[dict[str, Any]]:
    """Docker's ``[{"Path", "Kind"}]`` from the names in a diff tar, sorted by path."""
    out: dict[str, int] = {}
    for raw in diff_names:
        name = _clean(raw)
        parent, _, base = name.rpartition("/")
        if not name or base == OPAQUE or name in INIT_FILES:
            continue
        if base.startswith(WHITEOUT_PREFIX):
            gone = (parent + "/" if parent else "") + base[len(WHITEOUT_PREFIX):]
            if gone not in INIT_FILES:
                out["/" + gone] = DELETE
            continue
        out["/" + name] = MODIFY if name in in_image else ADD
    return [{"Path": p, "Kind": k} for p, k in sorted(out.items())]


async def changes(mgr: "ContainerManager", ref: str) -> list[dict[str, Any]]:
    """``GET /containers/{id}/changes``."""
    c = mgr.get(ref)
    storage, images = mgr.engine.storage, mgr.engine.images
    if storage is None or images is None:
        raise Unavailable("no storage driver: container filesystems are not available")
    layers = [images.layer_tar(d) for d in images.resolve(c.image_id).layers]
    spool = mgr.engine.paths.tmp / f"aiorun-layer-diff-{secrets.token_hex(6)}"

    def work() -> list[dict[str, Any]]:
        try:
            with open(spool, "wb") as f:
                storage.diff(c.id, f)
            with tarfile.open(spool, "r:") as t:
                names = [m.name for m in t]
        finally:
            spool.unlink(missing_ok=True)
        return diff_changes(names, image_paths(layers))
    return await anyio.to_thread.run_sync(work)


async def export(mgr: "ContainerManager", ref: str) -> AsyncIterator[bytes]:
    """``GET /containers/{id}/export``: the stream; starts mounting at once (errors such as
    a missing storage driver are raised here, before the response)."""
    c = mgr.get(ref)
    if mgr.engine.storage is None:
        raise Unavailable("no storage driver: container filesystems are not available")

    async def produce() -> AsyncIterator[bytes]:
        async with container_view(mgr, c) as view:
            yield b""
            mgr._emit("export", c)
            rootfs = FsView(view.rootfs)      # volumes are not part of an export
            async with aclosing(tar_stream(lambda out: _write_rootfs(rootfs, out))) as it:
                async for chunk in it:
                    yield chunk

    agen = produce()
    await agen.__anext__()
    return agen


def _write_rootfs(view: FsView, out: Any) -> None:
    import os
    import stat
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        fd = os.open(view.rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            links: dict[tuple[int, int], str] = {}
            for name in sorted(os.listdir(fd)):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode) or not stat.S_ISSOCK(st.st_mode):
                    add_entry(tar, view, fd, name, st, "/" + name, name, links)
        finally:
            os.close(fd)
