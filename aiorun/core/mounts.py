"""Pure parsing of mount requests: ``-v/--volume``, ``--mount`` and the API's ``HostConfig``.

Every form ends up as a :class:`MountRequest`; :mod:`aiorun.engine.volumes` turns requests into
volumes and runtime ``MountSpec``s. Nothing here touches the filesystem.

Accepted forms (Docker's)::

    -v /dst                      anonymous volume on /dst
    -v NAME:/dst[:OPTS]          named volume (created on first use)
    -v /host/path:/dst[:OPTS]    bind mount of a host path (created as a directory if missing)
    --mount type=bind,source=/h,target=/dst[,readonly][,bind-propagation=rslave]
    --mount type=volume[,source=NAME],target=/dst[,readonly][,volume-nocopy][,volume-subpath=DIR]
    --mount type=tmpfs,target=/dst[,tmpfs-size=64m][,tmpfs-mode=1777]

``OPTS`` is a comma list of ``ro``/``rw``, ``z``/``Z`` (accepted, no SELinux here), ``nocopy``
and a propagation mode. Errors are :class:`aiorun.errors.InvalidArgument` naming the bad spec.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from aiorun.errors import InvalidArgument

#: Docker's rule for volume names.
VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_SIZE_RE = re.compile(r"^(\d+)([bkmgt]?)b?$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


@dataclass
class MountRequest:
    """One requested mount.

    ``type`` is "bind", "volume" or "tmpfs". ``source`` is a host path (bind), a volume name
    ("" = anonymous volume) or "" (tmpfs). ``destination`` is a normalised absolute container
    path. ``mode`` is the Docker ``Mode`` string shown by inspect (the -v options as given).
    """

    type: str
    destination: str
    source: str = ""
    readonly: bool = False
    propagation: str = ""
    nocopy: bool = False
    mode: str = ""
    #: bind only: create the host directory when it is missing (-v does, --mount does not)
    create_host_path: bool = False
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: volume only: mount this directory of the volume (``VolumeOptions.Subpath``), relative
    subpath: str = ""

    @property
    def anonymous(self) -> bool:
        return self.type == "volume" and not self.source


def parse_size(text: str) -> int:
    """``64m`` → 67108864. Raises InvalidArgument for anything else."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise InvalidArgument(f"invalid size: {text!r} (use a number with an optional b/k/m/g/t)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def clean_destination(dst: str, spec: str) -> str:
    """Normalise a container path; it must be absolute and not '/'."""
    if not dst:
        raise InvalidArgument(f"invalid mount spec {spec!r}: empty destination")
    if not dst.startswith("/"):
        raise InvalidArgument(
            f"invalid mount spec {spec!r}: destination {dst!r} is not an absolute path")
    if "\0" in dst:
        raise InvalidArgument(f"invalid mount spec {spec!r}: NUL byte in destination")
    norm = posixpath.normpath(dst)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm == "/":
        raise InvalidArgument(f"invalid mount spec {spec!r}: destination can't be '/'")
    return norm


def _check_volume_name(name: str, spec: str) -> None:
    if not VOLUME_NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid mount spec {spec!r}: {name!r} includes invalid characters for a local "
            "volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; if you intended to "
            "pass a host directory, use an absolute path")


def parse_volume_flag(spec: str) -> MountRequest:
    """Parse one ``-v``/``--volume`` value (or a ``HostConfig.Binds`` entry)."""
    if not spec or not spec.strip():
        raise InvalidArgument("invalid volume spec: empty")
    parts = spec.split(":")
    if len(parts) == 1:
        return MountRequest("volume", clean_destination(parts[0], spec))
    if len(parts) > 3:
        raise InvalidArgument(f"invalid volume spec {spec!r}: too many colons")
    src, dst = parts[0], parts[1]
    opts = parts[2] if len(parts) == 3 else ""
    if not src:
        raise InvalidArgument(f"invalid volume spec {spec!r}: empty source")
    readonly = False
    propagation = ""
    nocopy = False
    seen_rw = False
    for opt in filter(None, opts.split(",")):
        if opt in ("ro", "rw"):
            if seen_rw:
                raise InvalidArgument(f"invalid volume spec {spec!r}: ro/rw given twice")
            seen_rw = True
            readonly = opt == "ro"
        elif opt in ("z", "Z"):
            pass  # SELinux relabelling: no SELinux here, accepted like Docker on such hosts
        elif opt == "nocopy":
            nocopy = True
        elif opt in PROPAGATIONS:
            if propagation:
                raise InvalidArgument(f"invalid volume spec {spec!r}: propagation given twice")
            propagation = opt
        else:
            raise InvalidArgument(f"invalid volume spec {spec!r}: unknown option {opt!r}")
    if opts == "" and len(parts) == 3:
        raise InvalidArgument(f"invalid volume spec {spec!r}: empty options")
    dest = clean_destination(dst, spec)
    if src.startswith("/"):
        if nocopy:
            raise InvalidArgument(f"invalid volume spec {spec!r}: nocopy applies to volumes only")
        return MountRequest("bind", dest, posixpath.normpath(src), readonly,
                            propagation or "rprivate", mode=opts, create_host_path=True)
    if src.startswith("."):
        raise InvalidArgument(
            f"invalid volume spec {spec!r}: host paths must be absolute ({src!r} is relative)")
    _check_volume_name(src, spec)
    if propagation:
        raise InvalidArgument(f"invalid volume spec {spec!r}: propagation applies to binds only")
    return MountRequest("volume", dest, src, readonly, nocopy=nocopy, mode=opts)


def _flag_bool(value: str | None, key: str, spec: str) -> bool:
    if value is None:
        return True
    v = value.lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    raise InvalidArgument(f"invalid mount spec {spec!r}: {key} takes true or false, not {value!r}")


def parse_mount_flag(spec: str) -> dict[str, Any]:
    """Parse one ``--mount`` value into Docker's ``HostConfig.Mounts`` entry shape.

    (The CLI sends this dict; the daemon turns it into a MountRequest with
    :func:`from_api_mount`.)
    """
    out: dict[str, Any] = {"Type": "volume"}
    bind_opts: dict[str, Any] = {}
    vol_opts: dict[str, Any] = {}
    tmpfs_opts: dict[str, Any] = {}
    labels: dict[str, str] = {}
    if not spec.strip():
        raise InvalidArgument("invalid mount spec: empty")
    for item in spec.split(","):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        val: str | None = value if eq else None
        if key == "type":
            if val not in ("bind", "volume", "tmpfs"):
                raise InvalidArgument(
                    f"invalid mount spec {spec!r}: type must be bind, volume or tmpfs, not {val!r}")
            out["Type"] = val
        elif key in ("source", "src"):
            out["Source"] = val or ""
        elif key in ("target", "destination", "dst"):
            out["Target"] = val or ""
        elif key in ("readonly", "ro"):
            out["ReadOnly"] = _flag_bool(val, key, spec)
        elif key == "bind-propagation":
            if val not in PROPAGATIONS:
                raise InvalidArgument(f"invalid mount spec {spec!r}: bad propagation {val!r}")
            bind_opts["Propagation"] = val
        elif key == "bind-nonrecursive":
            bind_opts["NonRecursive"] = _flag_bool(val, key, spec)
        elif key == "volume-nocopy":
            vol_opts["NoCopy"] = _flag_bool(val, key, spec)
        elif key == "volume-subpath":
            vol_opts["Subpath"] = val or ""
        elif key == "volume-label":
            k, _, v = (val or "").partition("=")
            labels[k] = v
        elif key == "volume-driver":
            if val not in ("local", None):
                raise InvalidArgument(f"invalid mount spec {spec!r}: volume driver {val!r} "
                                      "is not available (only 'local')")
        elif key == "tmpfs-size":
            tmpfs_opts["SizeBytes"] = parse_size(val or "")
        elif key == "tmpfs-mode":
            try:
                tmpfs_opts["Mode"] = int(val or "", 8)
            except ValueError:
                raise InvalidArgument(
                    f"invalid mount spec {spec!r}: tmpfs-mode must be octal, not {val!r}") from None
        elif key == "consistency":
            pass
        else:
            raise InvalidArgument(f"invalid mount spec {spec!r}: unknown field {key!r}")
    if not out.get("Target"):
        raise InvalidArgument(f"invalid mount spec {spec!r}: target is required")
    if bind_opts:
        out["BindOptions"] = bind_opts
    if vol_opts or labels:
        out["VolumeOptions"] = dict(vol_opts, **({"Labels": labels} if labels else {}))
    if tmpfs_opts:
        out["TmpfsOptions"] = tmpfs_opts
    from_api_mount(out)  # validate now so the CLI reports errors before talking to the daemon
    return out


def check_subpath(subpath: Any, spec: str) -> str:
    """A volume's ``Subpath``: relative, inside the volume (no ``..``), normalised."""
    if not isinstance(subpath, str):
        raise InvalidArgument(f"invalid mount spec {spec!r}: Subpath must be a string")
    if not subpath:
        return ""
    clean = posixpath.normpath(subpath)
    if subpath.startswith("/") or clean == ".." or clean.startswith("../"):
        raise InvalidArgument(f"invalid mount config: subpath {subpath!r} must be a relative "
                              "path within the volume")
    return "" if clean == "." else clean


def from_api_mount(m: dict[str, Any]) -> MountRequest:
    """``HostConfig.Mounts`` entry → MountRequest (validating like Docker does)."""
    spec = ",".join(f"{k}={v}" for k, v in m.items())
    typ = m.get("Type") or "volume"
    target = clean_destination(m.get("Target") or "", spec)
    source = m.get("Source") or ""
    ro = bool(m.get("ReadOnly"))
    if typ == "bind":
        if m.get("VolumeOptions") or m.get("TmpfsOptions"):
            raise InvalidArgument(f"invalid mount spec {spec!r}: volume/tmpfs options on a bind")
        if not source:
            raise InvalidArgument(f"invalid mount spec {spec!r}: source is required for a bind")
        if not source.startswith("/"):
            raise InvalidArgument(
                f"invalid mount spec {spec!r}: bind source {source!r} is not an absolute path")
        prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        return MountRequest("bind", target, posixpath.normpath(source), ro, prop,
                            mode="", create_host_path=False)
    if typ == "volume":
        if m.get("BindOptions") or m.get("TmpfsOptions"):
            raise InvalidArgument(f"invalid mount spec {spec!r}: bind/tmpfs options on a volume")
        if source:
            _check_volume_name(source, spec)
        vo = m.get("VolumeOptions") or {}
        return MountRequest("volume", target, source, ro, nocopy=bool(vo.get("NoCopy")),
                            labels=dict(vo.get("Labels") or {}),
                            subpath=check_subpath(vo.get("Subpath") or "", spec))
    if typ == "tmpfs":
        if source:
            raise InvalidArgument(f"invalid mount spec {spec!r}: tmpfs takes no source")
        if m.get("BindOptions") or m.get("VolumeOptions"):
            raise InvalidArgument(f"invalid mount spec {spec!r}: bind/volume options on a tmpfs")
        to = m.get("TmpfsOptions") or {}
        size = to.get("SizeBytes")
        mode = to.get("Mode")
        return MountRequest("tmpfs", target, "", ro,
                            tmpfs_size=int(size) if size else None,
                            tmpfs_mode=int(mode) if mode is not None else None)
    raise InvalidArgument(f"invalid mount spec {spec!r}: unknown mount type {typ!r}")


def collect(binds: Iterable[str] | None, mounts: Iterable[dict[str, Any]] | None,
            volumes: Iterable[str] | None = None) -> list[MountRequest]:
    """All requests of a container, in precedence order, rejecting duplicate destinations.

    ``binds`` (``-v``) and ``mounts`` (``--mount``) are explicit; ``volumes`` are the
    destinations of ``Config.Volumes`` (image ``VOLUME`` + container) and become anonymous
    volumes unless an explicit mount already covers that destination (Docker's rule).
    """
    out: list[MountRequest] = []
    seen: dict[str, str] = {}
    for spec in binds or ():
        req = parse_volume_flag(spec)
        if req.destination in seen:
            raise InvalidArgument(f"duplicate mount point: {req.destination}")
        seen[req.destination] = spec
        out.append(req)
    for m in mounts or ():
        req = from_api_mount(m)
        if req.destination in seen:
            raise InvalidArgument(f"duplicate mount point: {req.destination}")
        seen[req.destination] = str(m)
        out.append(req)
    for dst in volumes or ():
        d = clean_destination(dst, dst)
        if d in seen:
            continue
        seen[d] = dst
        out.append(MountRequest("volume", d))
    return out


def parse_tmpfs_flag(spec: str) -> dict[str, Any]:
    """``--tmpfs /dst[:size=64m,mode=1777]`` → a ``HostConfig.Mounts`` entry."""
    dst, _, opts = spec.partition(":")
    out: dict[str, Any] = {"Type": "tmpfs", "Target": dst}
    to: dict[str, Any] = {}
    for o in filter(None, opts.split(",")):
        k, _, v = o.partition("=")
        if k == "size":
            to["SizeBytes"] = parse_size(v)
        elif k == "mode":
            try:
                to["Mode"] = int(v, 8)
            except ValueError:
                raise InvalidArgument(f"invalid tmpfs spec {spec!r}: bad mode {v!r}") from None
        elif k == "ro":
            out["ReadOnly"] = True
        elif k in ("rw", "exec", "noexec", "nosuid", "nodev", "suid", "dev"):
            pass
        else:
            raise InvalidArgument(f"invalid tmpfs spec {spec!r}: unknown option {k!r}")
    if to:
        out["TmpfsOptions"] = to
    from_api_mount(out)
    return out
