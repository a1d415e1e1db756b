"""Mount requests → the runtime's ``MountSpec``s (binds, tmpfs, and volumes as their
local-driver options say). Used by :class:`aiorun.engine.volumes.VolumeManager`."""

from __future__ import annotations

from typing import Any

from aiorun.core.mounts import MountRequest
from aiorun.core.safepath import resolve_in_root
from aiorun.errors import InvalidArgument
from aiorun.runtime.spec import MountSpec


def volume_spec(meta: dict[str, Any], r: MountRequest, data: str) -> MountSpec:
    """How a volume is mounted: its ``_data`` dir, or what its local-driver options say;
    with a ``subpath``, that directory of it (resolved inside the volume: a symlink in the
    volume never leads out of it; it must exist, as in Docker)."""
    ro = ["ro"] if r.readonly else []
    o = meta.get("Options") or {}
    if r.subpath:
        if o.get("type") == "tmpfs":
            raise InvalidArgument(f"cannot mount a subpath of volume {meta['Name']}: it is a "
                                  "tmpfs, created empty at each mount")
        top = o["device"] if o.get("type") == "none" else data
        src = resolve_in_root(top, r.subpath)
        if not src.is_dir():
            raise InvalidArgument(f"cannot mount volume {meta['Name']} at {r.destination}: "
                                  f"subpath {r.subpath!r} is not a directory in the volume")
        return MountSpec(r.destination, "bind", str(src), ["rbind", "rprivate"] + ro,
                         r.readonly)
    if o.get("type") == "tmpfs":
        return MountSpec(r.destination, "tmpfs", "tmpfs",
                         [x for x in o.get("o", "").split(",") if x] + ["nosuid", "nodev"]
                         + ro, r.readonly)
    if o.get("type") == "none":   # o=bind: the device directory is the volume
        return MountSpec(r.destination, "bind", o["device"], ["rbind", "rprivate"] + ro,
                         r.readonly)
    return MountSpec(r.destination, "bind", data, ["rbind", "rprivate"] + ro, r.readonly)


def bind_spec(r: MountRequest) -> MountSpec:
    """A bind mount of the host path (``rprivate`` unless another propagation was asked)."""
    return MountSpec(r.destination, "bind", r.source,
                     ["rbind", r.propagation or "rprivate"] + (["ro"] if r.readonly else []),
                     r.readonly)


def tmpfs_spec(r: MountRequest) -> MountSpec:
    """A tmpfs private to the container (always nosuid, nodev)."""
    opts = []
    if r.tmpfs_size:
        opts.append(f"size={r.tmpfs_size}")
    if r.tmpfs_mode is not None:
        opts.append(f"mode={r.tmpfs_mode:o}")
    opts += ["nosuid", "nodev"] + (["ro"] if r.readonly else [])
    return MountSpec(r.destination, "tmpfs", "tmpfs", opts, r.readonly)
