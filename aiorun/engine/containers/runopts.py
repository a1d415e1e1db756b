"""The host side of ``docker run``'s process and device options: what needs a look at the
host (device nodes, the init binary, the networks), at create and at start.

The pure checks and conversions are in :mod:`aiorun.core.run_options`; this module adds
the I/O: a ``--device`` node's kind and major/minor (for the cgroup allow rule), whether
the ``--init`` binary is installed, whether the networks a create names exist.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from aiorun.core import run_options as ro
from aiorun.errors import InvalidArgument, NotFound
from aiorun.runtime import caps
from aiorun.runtime.seccomp_profile import ProfileError, compile_profile
from aiorun.runtime.spec import DeviceSpec, MountSpec

#: Debian's static tini (package ``tini``): static, so it runs in any image.
DEFAULT_INIT_BINARY = "/usr/bin/tini-static"

#: Network modes that name no network of the manager's.
_BUILTIN_MODES = ("", "default", "bridge", "host", "none")


def init_binary() -> str:
    """The host path of ``--init``'s binary (``AIORUN_INIT_BINARY`` in the daemon's
    environment overrides it, as dockerd's ``--init-path``)."""
    return os.environ.get("AIORUN_INIT_BINARY") or DEFAULT_INIT_BINARY


def check_init_binary() -> str:
    path = init_binary()
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"--init: the init binary {path} is not available "
                              f"({e.strerror}): install Debian's tini package "
                              "(apt-get install tini)") from None
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise InvalidArgument(f"--init: the init binary {path} is not an executable file")
    return path


def _node_rule(path: str, perms: str, follow: bool = True) -> str | None:
    """The allow rule of the device node at ``path`` (None: not a device node)."""
    st = os.stat(path) if follow else os.lstat(path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return ro.device_rule(kind, os.major(st.st_rdev), os.minor(st.st_rdev), perms)


def expand_device(mapping: dict[str, Any]) -> list[tuple[DeviceSpec, str]]:
    """One ``Devices`` entry → (node to bind, its cgroup rule) pairs. A directory
    (``--device /dev/snd``) gives every device node below it, at the same relative path
    under ``PathInContainer`` (as Docker). InvalidArgument in Docker's words when the host
    path is missing or holds no device node."""
    host = mapping["PathOnHost"]
    inside = mapping.get("PathInContainer") or host
    perms = mapping.get("CgroupPermissions") or "rwm"

    def refuse(why: str) -> InvalidArgument:
        return InvalidArgument(f"error gathering device information while adding custom "
                               f"device \"{host}\": {why}")
    try:
        if not os.path.isdir(host):
            rule = _node_rule(host, perms)
            if rule is None:
                raise refuse("not a device node")
            return [(DeviceSpec(host, inside, perms), rule)]
        out = []
        for top, dirs, files in os.walk(host):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(top, name)
                try:
                    # links below the directory are skipped (as Docker): their targets
                    # are nodes of their own
                    rule = _node_rule(path, perms, follow=False)
                except OSError:
                    continue              # vanished meanwhile
                if rule is not None:
                    dest = os.path.join(inside, os.path.relpath(path, host))
                    out.append((DeviceSpec(path, dest, perms), rule))
    except OSError as e:
        raise refuse((e.strerror or str(e)).lower()) from None
    if not out:
        raise refuse("not a device node")
    return out


def check_networks(networks: Any, host_config: dict[str, Any],
                   networking_config: dict[str, Any]) -> None:
    """A network named by ``NetworkMode`` or ``NetworkingConfig.EndpointsConfig`` must
    exist (Docker: "network foo not found", 404)."""
    if networks is None:
        return
    names = [host_config.get("NetworkMode") or ""]
    names += list((networking_config or {}).get("EndpointsConfig") or {})
    for name in names:
        if name in _BUILTIN_MODES or name.startswith("container:"):
            continue
        try:
            networks.get(name)
        except NotFound as e:
            # Docker's words; a 400 rather than its 404, on which the docker CLI would
            # take the image for missing and try to pull it
            raise InvalidArgument(e.message) from None


def seccomp_program(host_config: dict[str, Any]) -> str:
    """A custom seccomp profile (``SecurityOpt`` ``seccomp=<JSON>``) compiled for the
    container's capabilities, as hex for ``SecuritySpec.seccomp_program``; "" without one
    (or privileged: never filtered). InvalidArgument naming what is wrong in the profile."""
    text = ro.seccomp_profile(host_config.get("SecurityOpt") or [])
    if text is None or host_config.get("Privileged"):
        return ""
    kept = caps.effective_set(False, list(host_config.get("CapAdd") or []),
                              list(host_config.get("CapDrop") or []))
    try:
        return compile_profile(text, kept).hex()
    except ProfileError as e:
        raise InvalidArgument(f"--security-opt seccomp: {e}") from None


def check_at_create(networks: Any, host_config: dict[str, Any],
                    networking_config: dict[str, Any]) -> None:
    """What a create must refuse that needs the host: missing devices, a missing init
    binary, unknown networks, a seccomp profile that does not compile. Nothing has been
    made yet."""
    seccomp_program(host_config)
    for d in host_config.get("Devices") or []:
        expand_device(d)
    if host_config.get("Init"):
        check_init_binary()
    check_networks(networks, host_config, networking_config)


def runtime_options(host_config: dict[str, Any]) -> dict[str, Any]:
    """The runtime ``ContainerSpec`` fields of the options: ulimits, shm_size, pid_host,
    devices (the device rules go into the ``CgroupSpec``: :func:`device_rules`)."""
    hc = host_config
    return {"ulimits": ro.ulimits_of(hc), "shm_size": int(hc.get("ShmSize") or 0),
            "pid_host": hc.get("PidMode") == "host",
            "devices": [node for d in hc.get("Devices") or []
                        for node, _ in expand_device(d)]}


def device_rules(host_config: dict[str, Any]) -> list[str]:
    return [rule for d in host_config.get("Devices") or [] for _, rule in expand_device(d)]


def extra_mounts(host_config: dict[str, Any]) -> list[MountSpec]:
    """``HostConfig.Tmpfs`` mounts, and the init binary (read-only) with ``--init``."""
    out = [MountSpec(**m) for m in ro.tmpfs_mounts(host_config)]
    if host_config.get("Init"):
        out.append(MountSpec(ro.INIT_PATH_IN_CONTAINER, "bind", check_init_binary(),
                             ["ro", "nosuid", "nodev"], readonly=True))
    return out


def process_args(host_config: dict[str, Any], argv: list[str]) -> list[str]:
    """PID 1's argv: behind the init with ``--init``."""
    if not host_config.get("Init"):
        return argv
    return ro.init_args(argv, pid_host=host_config.get("PidMode") == "host")


def check_platform(images: Any, ref: str, platform: str | None) -> None:
    """``docker create --platform`` (the create's ``platform`` query): the local image must
    be of that platform, and so must the host (aiorun runs no emulator). A missing image is
    left to the create (its 404 makes the CLI pull)."""
    if not platform or images is None or not ref:
        return
    try:
        image = images.resolve(ref)
    except NotFound:
        return
    ro.check_platform(platform, image.config.get("os") or "linux",
                      image.config.get("architecture") or "", os.uname().machine, ref)
