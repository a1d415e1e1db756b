"""What the runtime needs to know to start a container or an exec process.

Pure data: the engine fills these in from the image config, the create request and the
drivers; the runtime (``aiorun.runtime``) turns them into namespaces, mounts, cgroups and an
``execve``. They travel to the spawner as plain dicts (``asdict`` / ``from_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class MountSpec:
    """A mount made inside the container's mount namespace, after the rootfs is ready and
    before pivot_root, so the host's mount table never shows it.

    ``type`` is "bind", "tmpfs" (or another fs type); ``source`` is a host path for binds.
    ``destination`` is resolved inside the rootfs without following symlinks out of it.
    """

    destination: str
    type: str = "bind"
    source: str = ""
    options: list[str] = field(default_factory=list)   # e.g. ["ro"], ["size=64m"]
    readonly: bool = False


@dataclass
class CgroupSpec:
    """Resource limits. ``parent`` is relative to the cgroup the daemon runs in (per
    controller); empty means the default ``aiorun`` parent."""

    parent: str = ""
    memory: int | None = None        # bytes
    memory_swap: int | None = None   # bytes, -1 unlimited
    cpus: float | None = None        # CPU quota in cores
    cpu_shares: int | None = None
    pids: int | None = None
    #: extra v1 ``devices.allow`` rules ("c 10:229 rwm") of ``--device`` (v2 has no device
    #: controller aiorun programs: no restriction there, so nothing to add)
    device_rules: list[str] = field(default_factory=list)


@dataclass
class DeviceSpec:
    """A host device node made available inside the container (``--device``): the node is
    bind-mounted from the host onto ``path_in_container`` in the container's /dev."""

    path_on_host: str
    path_in_container: str
    permissions: str = "rwm"


@dataclass
class SecuritySpec:
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    no_new_privileges: bool = True
    readonly_rootfs: bool = False
    #: "default" (aiorun.runtime.seccomp: Docker-like deny-list), "unconfined", or
    #: "profile": ``seccomp_program`` (hex of the BPF a Docker profile compiled to,
    #: aiorun.runtime.seccomp_profile); privileged containers are never filtered.
    seccomp: str = "default"
    seccomp_program: str = ""
    #: ``--group-add``: supplementary groups (names resolved in the container's /etc/group,
    #: or numeric gids) added to the user's own
    group_add: list[str] = field(default_factory=list)
    #: ``--security-opt systempaths=unconfined``: no masked or read-only /proc, /sys paths
    unmasked_paths: bool = False


@dataclass
class ContainerSpec:
    id: str
    rootfs: str                       # host path of the rootfs assembled by the storage driver
    args: list[str]                   # argv of PID 1 (entrypoint + cmd, already merged)
    env: list[str] = field(default_factory=list)   # "K=V"
    cwd: str = "/"
    user: str = ""                    # "uid[:gid]" or "name[:group]", resolved in the rootfs
    hostname: str = ""
    mounts: list[MountSpec] = field(default_factory=list)
    #: "none"  -> new net namespace with loopback only (the engine may attach more later),
    #: "host"  -> share the host's, or a path like /proc/PID/ns/net to join.
    network: str = "none"
    cgroup: CgroupSpec = field(default_factory=CgroupSpec)
    security: SecuritySpec = field(default_factory=SecuritySpec)
    tty: bool = False
    stdin: bool = False               # keep stdin open (-i)
    log_path: str = ""                # JSON-lines log written by the runtime
    #: json-file rotation (``--log-opt max-size/max-file``): 0 = one file without limit
    log_max_size: int = 0
    log_max_file: int = 1
    state_dir: str = ""               # per-container runtime files (exit status, pids)
    #: ``--ulimit``: [name, soft, hard] with Docker's names ("nofile", "nproc", ...)
    ulimits: list[list[Any]] = field(default_factory=list)
    shm_size: int = 0                 # bytes of /dev/shm; 0 = Docker's default (64 MiB)
    pid_host: bool = False            # ``--pid host``: no PID namespace of its own
    devices: list[DeviceSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ContainerSpec":
        d = dict(d)
        d["mounts"] = [MountSpec(**m) for m in d.get("mounts", [])]
        d["cgroup"] = CgroupSpec(**d.get("cgroup", {}))
        d["security"] = SecuritySpec(**d.get("security", {}))
        d["devices"] = [DeviceSpec(**x) for x in d.get("devices", [])]
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ExecSpec:
    id: str                           # exec id
    container_id: str
    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = ""                     # "" = the container's working dir
    user: str = ""
    tty: bool = False
    stdin: bool = False
    privileged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExitStatus:
    exit_code: int
    oom_killed: bool = False
    finished_at_ns: int = 0
    error: str = ""                   # set when the process never started (exec failed)
