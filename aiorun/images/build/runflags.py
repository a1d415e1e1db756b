"""RUN's flags, parsed and checked: ``--network`` and ``--mount`` (BuildKit's CSV syntax and
its messages). Pure; :mod:`.runmounts` turns the parsed mounts into a step's mounts.

:func:`check_run_flags` is the parse-time check (values holding a ``$`` are checked again,
expanded, when the step runs: :func:`mounts_of`). What aiorun does not implement is refused by
name: ``--security``.
"""

from __future__ import annotations

import csv
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

from aiorun.errors import InvalidArgument
from aiorun.images.build.expand import expand_word
from aiorun.images.build.flags import Flags

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.images.build.dockerfile.parser import Instruction

NETWORKS = ("default", "none", "host")
_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_KEYS = ("type", "from", "source", "src", "target", "dst", "destination", "readonly", "ro",
         "readwrite", "rw", "required", "size", "id", "sharing", "mode", "uid", "gid")
_UNITS = {"b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30,
          "gb": 1 << 30}


@dataclass
class MountOpts:
    """One ``--mount``, parsed."""

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = ""
    required: bool = False
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None


def _bool(key: str, value: str) -> bool:
    v = value.lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def _int(key: str, value: str, base: int) -> int:
    try:
        return int(value, base)
    except ValueError:
        raise ValueError(f"invalid value {value} for {key}") from None


def _size(value: str) -> int:
    v = value.strip().lower()
    num = v.rstrip("bkmgi")
    unit = v[len(num):].replace("i", "")
    try:
        return int(float(num) * _UNITS[unit or "b"])
    except (ValueError, KeyError):
        raise ValueError(f"invalid value for size: {value}") from None


def parse_mount(value: str, expand: Callable[[str], str] | None = None) -> MountOpts:
    """A ``--mount`` value → :class:`MountOpts` (ValueError: BuildKit's message, or what
    aiorun refuses). Without ``expand`` (parse time) values holding a ``$`` are skipped:
    they are checked again, expanded, when the step runs."""
    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration):
        raise ValueError(f"failed to parse csv mounts: {value!r}") from None
    m = MountOpts()
    ro_auto = True
    for f in fields:
        key, eq, val = f.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                m.readonly, ro_auto = True, False
            elif key in ("readwrite", "rw"):
                m.readonly, ro_auto = False, False
            elif key == "required":
                if m.type not in ("secret", "ssh"):
                    raise ValueError(f"unexpected key '{key}' for mount type '{m.type}'")
                m.required = True
            else:
                raise ValueError(f"invalid field '{f}' must be a key=value pair")
            continue
        if key not in _KEYS:
            raise ValueError(f"unexpected key '{key}' in '{f}'")
        if "$" in val:
            if expand is None:
                if key == "from":
                    raise ValueError(f"'{key}' doesn't support variable expansion, define "
                                     "alias stage instead")
                continue
            val = expand(val)
        if key == "type":
            if val.lower() not in _TYPES:
                raise ValueError(f"unsupported mount type {val!r}")
            m.type = val.lower()
        elif key == "from":
            m.from_ = val
        elif key in ("source", "src"):
            m.source = val
        elif key in ("target", "dst", "destination"):
            m.target = val
        elif key in ("readonly", "ro"):
            m.readonly, ro_auto = _bool(key, val), False
        elif key in ("readwrite", "rw"):
            m.readonly, ro_auto = not _bool(key, val), False
        elif key == "required":
            if m.type not in ("secret", "ssh"):
                raise ValueError(f"unexpected key '{key}' for mount type '{m.type}'")
            m.required = _bool(key, val)
        elif key == "size":
            if m.type != "tmpfs":
                raise ValueError(f"unexpected key '{key}' for mount type '{m.type}'")
            m.size = _size(val)
        elif key == "id":
            m.id = val
        elif key == "sharing":
            if val.lower() not in ("shared", "private", "locked"):
                raise ValueError(f"unsupported sharing value {val!r}")
            m.sharing = val.lower()
        elif key == "mode":
            m.mode = _int("mode", val, 8)
        elif key == "uid":
            m.uid = _int("uid", val, 10)
        else:
            m.gid = _int("gid", val, 10)
    if m.type not in ("secret", "ssh", "cache"):
        for name in ("mode", "uid", "gid"):
            if getattr(m, name) is not None:
                raise ValueError(f"{name} not allowed for {m.type!r} type mounts")
    if ro_auto:
        m.readonly = m.type not in ("cache", "tmpfs")
    if m.type == "secret":
        if m.from_:
            raise ValueError("secret mount should not have a from")
        if m.sharing:
            raise ValueError("secret mount should not define sharing")
        if not (m.source or m.target or m.id) and expand is not None:
            raise ValueError("invalid secret mount. one of source, target required")
        if m.source and m.id:
            raise ValueError("both source and id can't be set")
    if m.sharing and m.type != "cache":
        raise ValueError(f"invalid cache sharing set for {m.type} mount")
    _refuse_unsupported(m)
    if m.type in ("bind", "cache", "tmpfs") and not m.target and expand is not None:
        raise ValueError(f"RUN --mount=type={m.type} needs a target")
    return m


def _refuse_unsupported(m: MountOpts) -> None:
    """What aiorun does not implement is an error naming it, never ignored."""
    if m.type == "ssh":
        if m.from_ or m.source:
            raise ValueError("ssh mount should not have a from or a source")


def check_run_flags(flags: Flags) -> str | None:
    """The problem with a RUN's flags, or None."""
    for name, value in flags:
        if name == "network":
            if value not in NETWORKS:
                return f"unsupported network mode {value!r} (use default, none or host)"
            # host: allowed here; the build's entitlements decide (.entitlements)
        elif name == "mount":
            try:
                parse_mount(value or "")
            except ValueError as exc:
                return str(exc)
        else:
            return f"RUN --{name} is not supported by aiorun"
    return None


def mounts_of(ins: "Instruction", env: Mapping[str, str], workdir: str) -> list[MountOpts]:
    """A RUN's ``--mount``s with their values expanded and targets absolute."""
    out = []
    ssh = 0
    for value in ins.flags.get_all("mount"):
        try:
            m = parse_mount(value, lambda w: expand_word(w, env, ins.escape))
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        if m.type == "secret":
            m.id = m.id or m.source or posixpath.basename(m.target)
            m.target = m.target or f"/run/secrets/{m.id}"
        elif m.type == "cache":
            m.id = m.id or m.target
        elif m.type == "ssh":     # BuildKit's defaults
            m.id = m.id or "default"
            m.target = m.target or f"/run/buildkit/ssh_agent.{ssh}"
            ssh += 1
        m.target = posixpath.normpath(posixpath.join(workdir or "/", m.target))
        out.append(m)
    return out
