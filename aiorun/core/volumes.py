"""Pure rules of local volumes: the driver's options, list/prune filters and the Docker-shaped
record. :mod:`aiorun.engine.volumes` keeps the volumes on disk, applies these and turns
requests into the runtime's mounts.

A volume's metadata (``volume.json``) is a dict: ``{"Name", "CreatedAt", "Labels",
"Options", "Anonymous", "Populated"}``.
"""

from __future__ import annotations

import os
from typing import Any

from aiorun.errors import InvalidArgument

#: The only volume driver.
DRIVER = "local"
_TMPFS_OPTIONS = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "noexec", "exec",
                  "nosuid", "nodev", "ro", "rw")


def check_local_options(opts: dict[str, str]) -> dict[str, str]:
    """Validate ``volume create -o`` for the local driver. Supported:

    * ``type=tmpfs device=tmpfs o=size=64m,...``: each container using the volume gets a
      tmpfs (mounted in its own namespace, so NOT shared between containers, unlike Docker's
      host-mounted tmpfs volume);
    * ``type=none o=bind device=/host/dir``: the existing host directory is the volume (the
      one check here that looks at the host: the directory must exist).

    Anything else (nfs, block devices) is refused naming the option.
    """
    if not opts:
        return {}
    unknown = sorted(set(opts) - {"type", "device", "o"})
    if unknown:
        raise InvalidArgument(f"invalid option key: {unknown[0]!r} (the local driver takes "
                              "type, device and o)")
    typ = opts.get("type", "")
    if typ == "tmpfs":
        if opts.get("device", "tmpfs") != "tmpfs":
            raise InvalidArgument("a tmpfs volume takes device=tmpfs")
        for o in filter(None, opts.get("o", "").split(",")):
            if o.partition("=")[0] not in _TMPFS_OPTIONS:
                raise InvalidArgument(f"unsupported tmpfs option {o!r}")
        return {"type": "tmpfs", "device": "tmpfs", "o": opts.get("o", "")}
    if typ == "none":
        if "bind" not in opts.get("o", "").split(","):
            raise InvalidArgument("type=none needs o=bind (a bind of an existing directory)")
        dev = opts.get("device", "")
        if not dev.startswith("/") or not os.path.isdir(dev):
            raise InvalidArgument(f"failed to mount local volume: device {dev!r} is not an "
                                  "existing absolute directory")
        return {"type": "none", "device": os.path.normpath(dev), "o": opts["o"]}
    raise InvalidArgument(f"local volume type {typ!r} is not supported (use tmpfs or none "
                          "with o=bind)")


def docker_shape(meta: dict[str, Any], mountpoint: str) -> dict[str, Any]:
    """Docker's ``Volume`` object for a volume's metadata."""
    return {
        "CreatedAt": meta["CreatedAt"],
        "Driver": DRIVER,
        "Labels": meta.get("Labels") or None,
        "Mountpoint": mountpoint,
        "Name": meta["Name"],
        "Options": meta.get("Options") or None,
        "Scope": "local",
    }


def _values(wanted: Any) -> list[Any]:
    """A filter's values: Docker sends a list or a {value: true} map; a scalar is one value."""
    return list(wanted) if isinstance(wanted, (list, dict)) else [wanted]


def matches(meta: dict[str, Any], filters: dict[str, Any], in_use: bool) -> bool:
    """Whether a volume passes ``volume ls``/``prune`` filters (name, driver, dangling,
    label, label!; ``all`` is prune's and ignored here). An unknown filter is an error."""
    for key, wanted in (filters or {}).items():
        values = _values(wanted)
        if key == "name":
            if not any(v in meta["Name"] for v in values):
                return False
        elif key == "driver":
            if DRIVER not in values:
                return False
        elif key == "dangling":
            want = str(values[0]).lower() in ("1", "true")
            if (not in_use) != want:
                return False
        elif key in ("label", "label!"):
            labels = meta.get("Labels") or {}
            for v in values:
                k, eq, val = str(v).partition("=")
                has = k in labels and (not eq or labels[k] == val)
                if has != (key == "label"):
                    return False
        elif key == "all":
            pass  # prune only
        else:
            raise InvalidArgument(f"invalid filter {key!r}")
    return True


def prune_includes_named(filters: dict[str, Any]) -> bool:
    """``prune`` removes named volumes too only with filter ``all=true`` (Docker 23+)."""
    all_ = filters.get("all")
    values = _values(all_) if all_ else []
    return bool(values) and str(values[0]).lower() in ("1", "true")
