"""HostConfig's process and device options → what the runtime is asked for (pure, I/O free).

The flags ``docker run`` sends in HostConfig beyond limits and capabilities: ``--ulimit``
(``Ulimits``), ``--shm-size`` (``ShmSize``), ``--tmpfs`` (``Tmpfs``, a map), ``--pid``
(``PidMode``), ``--security-opt`` (``SecurityOpt``), ``--group-add`` (``GroupAdd``),
``--device`` (``Devices``), ``--init`` (``Init``), ``--platform`` (the create's query) and
``--gpus`` (``DeviceRequests``: refused). Each ``check_*`` raises InvalidArgument in
Docker's words at create; each ``*_of`` gives the runtime's value from a checked HostConfig.
Looking a device up on the host (its major/minor) is the engine's, see
``aiorun.engine.containers.runopts``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiorun.errors import InvalidArgument

#: Docker's ``--ulimit`` names (``man setrlimit``, without the RLIMIT_ prefix).
ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as")

#: Where the init binary appears in the container (Docker's path for its own init).
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"

#: tmpfs flags Docker applies unless the options say otherwise (``exec``, ``suid``, ``dev``).
TMPFS_DEFAULT_FLAGS = ("noexec", "nosuid", "nodev")


# --------------------------------------------------------------------------- ulimits

def parse_ulimit(value: str) -> dict[str, Any]:
    """``--ulimit nofile=1024[:2048]`` → ``{"Name": "nofile", "Soft": 1024, "Hard": 2048}``
    (one number sets both, as the docker CLI does)."""
    name, sep, limits = value.partition("=")
    if not sep:
        raise InvalidArgument(f"invalid ulimit argument: {value}")
    soft_s, _, hard_s = limits.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if hard_s else soft
    except ValueError:
        raise InvalidArgument(f"invalid ulimit argument: {value}") from None
    out = {"Name": name, "Soft": soft, "Hard": hard}
    check_ulimits([out])
    return out


def check_ulimits(ulimits: list[dict[str, Any]]) -> None:
    for u in ulimits:
        name, soft, hard = u.get("Name"), u.get("Soft"), u.get("Hard")
        if name not in ULIMIT_NAMES:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (soft, hard)):
            raise InvalidArgument(f"invalid ulimit {name}: the limits must be integers")
        assert isinstance(soft, int) and isinstance(hard, int)
        if soft > hard and hard != -1:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard "
                                  f"limit: {soft} > {hard}")


def ulimits_of(hc: dict[str, Any]) -> list[list[Any]]:
    """The runtime's ``[name, soft, hard]`` list."""
    return [[u["Name"], u["Soft"], u["Hard"]] for u in hc.get("Ulimits") or []]


# --------------------------------------------------------------------------- tmpfs, shm

def check_shm_size(value: Any) -> None:
    if value is not None and (not isinstance(value, int) or value < 0):
        raise InvalidArgument("SHM size can not be less than 0")


def check_tmpfs(tmpfs: dict[str, str]) -> None:
    for dest, options in tmpfs.items():
        if not dest.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"tmpfs\": invalid mount "
                                  f"path: '{dest}' mount path must be absolute")
        if dest == "/":
            raise InvalidArgument("invalid mount config for type \"tmpfs\": destination "
                                  "can't be '/'")
        for opt in filter(None, options.split(",")):
            key = opt.partition("=")[0]
            if key not in ("rw", "ro", "size", "mode", "uid", "gid", "exec", "noexec",
                           "suid", "nosuid", "dev", "nodev", "nr_inodes", "nr_blocks",
                           "mpol", "tmpfs-mode", "tmpfs-size"):
                raise InvalidArgument(f"invalid tmpfs option [\"{opt}\"]")


def tmpfs_mounts(hc: dict[str, Any]) -> list[dict[str, Any]]:
    """``HostConfig.Tmpfs`` (``{"/run": "rw,size=64m"}``, what the docker CLI sends for
    ``--tmpfs``) → the runtime's MountSpec fields. Docker's defaults noexec, nosuid, nodev
    unless the options turn them back on."""
    out = []
    for dest, options in sorted((hc.get("Tmpfs") or {}).items()):
        opts = [o for o in options.split(",") if o]
        given = {o.partition("=")[0] for o in opts}
        flags = [f for f in TMPFS_DEFAULT_FLAGS if f[2:] not in given and f not in given]
        readonly = "ro" in given
        opts = [o for o in opts if o not in ("rw", "ro", "exec", "suid", "dev")]
        out.append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                    "options": flags + opts, "readonly": readonly})
    return out


# --------------------------------------------------------------------------- pid, security

def check_pid_mode(mode: str) -> None:
    if mode in ("", "host", "private"):
        return
    if mode.startswith("container:"):
        raise InvalidArgument(f"--pid {mode}: sharing another container's PID namespace is "
                              "not supported by aiorun")
    raise InvalidArgument(f"invalid --pid: {mode!r}")


def security_opts(opts: list[str]) -> dict[str, Any]:
    """``SecurityOpt`` → ``{"seccomp": "default"|"unconfined"|"profile",
    "no_new_privileges": bool (asked for explicitly), "unmasked_paths": bool}``.

    aiorun always sets no_new_privileges for unprivileged containers (stricter than Docker's
    default), so ``no-new-privileges`` (``=true``) matters for a privileged container only,
    and ``no-new-privileges=false`` is refused rather than silently ignored. A custom seccomp
    profile (the docker CLI sends the file's JSON) gives ``"profile"``: the engine compiles
    it (:func:`seccomp_profile` has its text).
    """
    out: dict[str, Any] = {"seccomp": "default", "no_new_privileges": False,
                           "unmasked_paths": False}
    for opt in opts:
        key, sep, value = opt.partition("=" if "=" in opt else ":")
        if key == "no-new-privileges":
            if value not in ("", "true", "1", "false", "0"):
                raise InvalidArgument(f"invalid --security-opt 2: {opt!r}")
            if value in ("false", "0"):
                raise InvalidArgument("--security-opt no-new-privileges=false is not "
                                      "supported by aiorun: unprivileged containers always "
                                      "run with no_new_privs")
            out["no_new_privileges"] = True
            continue
        if key == "seccomp" and sep:
            if value == "unconfined":
                out["seccomp"] = "unconfined"
            elif value == "builtin" or value == "default":
                out["seccomp"] = "default"
            else:
                _check_profile_json(value)
                out["seccomp"] = "profile"
            continue
        if (key, value) in (("label", "disable"), ("apparmor", "unconfined")):
            continue                      # what aiorun does anyway: no LSM labels/profiles
        if (key, value) == ("systempaths", "unconfined"):
            out["unmasked_paths"] = True  # /proc, /sys: no masked or read-only paths
            continue
        if key in ("apparmor", "label", "systempaths", "writable-cgroups"):
            raise InvalidArgument(f"--security-opt {opt}: {key} is not supported by aiorun")
        raise InvalidArgument(f"invalid --security-opt 1: {opt!r}")
    return out


def _check_profile_json(value: str) -> None:
    """The JSON shape only: the engine compiles the profile at create
    (``aiorun.runtime.seccomp_profile``), which checks the rest."""
    try:
        profile = json.loads(value)
    except ValueError:
        raise InvalidArgument("--security-opt seccomp: the profile is not valid JSON (the "
                              "client sends the profile file's content)") from None
    if not isinstance(profile, dict):
        raise InvalidArgument("--security-opt seccomp: the profile must be a JSON object")


def seccomp_profile(opts: list[str]) -> str | None:
    """The JSON text of a custom ``seccomp=<profile>`` in ``SecurityOpt``, if any."""
    for opt in opts:
        key, sep, value = opt.partition("=" if "=" in opt else ":")
        if key == "seccomp" and sep and value not in ("unconfined", "builtin", "default"):
            return value
    return None


def check_system_paths(hc: dict[str, Any]) -> None:
    """``MaskedPaths``/``ReadonlyPaths``: the docker CLI sends both as ``[]`` for
    ``--security-opt systempaths=unconfined`` (null otherwise); custom lists are refused."""
    masked, readonly = hc.get("MaskedPaths"), hc.get("ReadonlyPaths")
    if masked or readonly:
        raise InvalidArgument("HostConfig.MaskedPaths/ReadonlyPaths: custom lists are not "
                              "supported by aiorun (only systempaths=unconfined: both empty)")
    if (masked == []) != (readonly == []):
        raise InvalidArgument("HostConfig.MaskedPaths and ReadonlyPaths must both be empty "
                              "(systempaths=unconfined) or both unset")


def unmasked_paths(hc: dict[str, Any]) -> bool:
    """``systempaths=unconfined``, as an option or as the CLI's two empty lists."""
    return bool(security_opts(hc.get("SecurityOpt") or [])["unmasked_paths"]) or \
        (hc.get("MaskedPaths") == [] and hc.get("ReadonlyPaths") == [])


def check_group_add(groups: list[str]) -> None:
    for g in groups:
        if not g or ":" in g or "\n" in g:
            raise InvalidArgument(f"invalid --group-add: {g!r}")


# --------------------------------------------------------------------------- devices

_PERMS_RE = re.compile(r"^[rwm]{1,3}$")


def parse_device(value: str) -> dict[str, str]:
    """``--device /dev/fuse[:/dev/fuse][:rwm]`` → Docker's DeviceMapping."""
    parts = value.split(":")
    if len(parts) > 3 or not parts[0]:
        raise InvalidArgument(f"invalid device specification: {value}")
    host = parts[0]
    inside, perms = host, "rwm"
    if len(parts) == 2:
        if _PERMS_RE.match(parts[1]):
            perms = parts[1]
        else:
            inside = parts[1]
    elif len(parts) == 3:
        inside, perms = parts[1], parts[2]
    out = {"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": perms}
    check_devices([out])
    return out


def check_devices(devices: list[dict[str, Any]]) -> None:
    for d in devices:
        host, inside = d.get("PathOnHost") or "", d.get("PathInContainer") or ""
        perms = d.get("CgroupPermissions") or "rwm"
        if not isinstance(host, str) or not host.startswith("/"):
            raise InvalidArgument(f"invalid device path on host: {host!r}: it must be "
                                  "absolute")
        if inside and (not isinstance(inside, str) or not inside.startswith("/")):
            raise InvalidArgument(f"{inside} is not an absolute path")
        if not isinstance(perms, str) or not _PERMS_RE.match(perms) \
                or len(set(perms)) != len(perms):
            raise InvalidArgument(f"invalid device mode: {perms}")


def device_rule(kind: str, major: int, minor: int, perms: str) -> str:
    """A v1 ``devices.allow`` line: ``c 10:229 rwm``."""
    return f"{kind} {major}:{minor} {perms}"


# --------------------------------------------------------------------------- init, gpus

def init_args(argv: list[str], pid_host: bool = False) -> list[str]:
    """PID 1's argv with ``--init``: the init runs the command (``tini -- cmd ...``). With
    ``--pid host`` it is not PID 1, so it registers as a child subreaper (``-s``) to still
    reap the orphans."""
    return [INIT_PATH_IN_CONTAINER, *(["-s"] if pid_host else []), "--", *argv]


def check_device_requests(requests: Any) -> None:
    """``--gpus`` sends ``DeviceRequests``: refused clearly (aiorun has no GPU support)."""
    if requests:
        raise InvalidArgument("--gpus (HostConfig.DeviceRequests) is not supported by aiorun: "
                              "it has no GPU device support")


# --------------------------------------------------------------------------- platform

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "i386": "386", "i686": "386"}


def normalize_arch(arch: str) -> str:
    return _ARCH_ALIASES.get(arch.lower(), arch.lower())


def check_platform(requested: str, image_os: str, image_arch: str, host_arch: str,
                   image_ref: str) -> None:
    """``--platform os[/arch[/variant]]`` must match the image (and the host: aiorun runs no
    emulator). Docker's wording for a local image of another platform."""
    if not requested:
        return
    parts = requested.lower().split("/")
    os_ = parts[0]
    arch = normalize_arch(parts[1]) if len(parts) > 1 and parts[1] else ""
    img_os = (image_os or "linux").lower()
    img_arch = normalize_arch(image_arch or host_arch)
    if os_ != img_os or (arch and arch != img_arch):
        raise InvalidArgument(f"image with reference {image_ref} was found but does not match "
                              f"the specified platform: wanted {requested}, actual: "
                              f"{img_os}/{img_arch}")
    if os_ != "linux" or (arch and arch != normalize_arch(host_arch)):
        raise InvalidArgument(f"platform {requested} does not match the host "
                              f"(linux/{normalize_arch(host_arch)}): aiorun runs no emulator")
