"""Container cgroups, the pure part: where the hierarchies are and what a container gets.

Unit-tested with texts of /proc/self/cgroup and /proc/self/mountinfo: :func:`parse_layout`
finds every hierarchy this process belongs to and where it is mounted; :func:`plan` says which
directories a container gets; :func:`limit_writes` turns a ``CgroupSpec`` into ``(file,
value)`` writes for those directories. The effectful part is :mod:`aiorun.runtime.cgroups`,
which re-exports all of this.

Every container directory is ``<this process's own cgroup in that hierarchy>/<parent>/<id>``
(parent defaults to ``aiorun``): nested under the daemon's cgroup, never at a hierarchy root
it does not own. v1 hierarchies are used for the controllers in :data:`V1_CONTROLLERS`; the
unified (v2) hierarchy is used when it offers controllers of V2_CONTROLLERS that no v1
hierarchy serves (pure v2; a hybrid host with only hugetlb on v2 skips it), with the needed
controllers enabled in ``cgroup.subtree_control`` along the way.
"""

from __future__ import annotations

import os

#: v1 controllers a container joins (cpuset/devices left out: they need seeding / are not
#: needed for the limits we set, and each extra hierarchy costs start latency).
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "blkio", "freezer", "devices")
#: Docker's default device allow-list (v1 devices controller; everything else is denied so a
#: root container with CAP_MKNOD cannot open host disks). Privileged containers skip it.
DEFAULT_DEVICES = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
                   "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",
                   "c 10:200 rwm")
#: v2 controllers we enable for a container when the unified hierarchy offers them.
V2_CONTROLLERS = ("memory", "cpu", "pids", "io")
DEFAULT_PARENT = "aiorun"
CFS_PERIOD_US = 100_000


class _Record:
    """A tiny dataclass stand-in (``dataclasses`` costs ~8 ms of spawner start-up)."""

    __fields__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class Hierarchy(_Record):
    """One mounted hierarchy this process is in. ``controllers``: v1 its controllers; v2
    those offered at our cgroup. ``own``: our cgroup path inside the hierarchy."""

    def __init__(self, version: int, controllers: tuple[str, ...], mountpoint: str,
                 own: str) -> None:
        self.version = version
        self.controllers = tuple(controllers)
        self.mountpoint = mountpoint
        self.own = own


class CgroupDir(_Record):
    """A container's directory in one hierarchy: ``path`` (absolute), ``parent`` (the
    ``<own>/<parent>`` dir), ``own`` (this process's cgroup dir), ``enable`` (v2 controllers
    to enable on the way down)."""

    def __init__(self, version: int, controllers: tuple[str, ...], path: str, parent: str,
                 own: str = "", enable: tuple[str, ...] = ()) -> None:
        self.version = version
        self.controllers = tuple(controllers)
        self.path = path
        self.parent = parent
        self.own = own
        self.enable = tuple(enable)


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return (s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def parse_layout(proc_cgroup: str, mountinfo: str,
                 v2_controllers: tuple[str, ...] = ()) -> list[Hierarchy]:
    """The hierarchies this process is in, with mountpoints; unmounted ones are skipped.

    ``v2_controllers`` is the content of ``cgroup.controllers`` at our own v2 cgroup (the
    caller reads it; empty means the unified hierarchy carries no controllers here).
    """
    mounts_v1: list[tuple[set[str], str, str]] = []   # (controllers, mountpoint, root)
    mount_v2: tuple[str, str] | None = None
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields_ = pre.split()
        fstype, _src, superopts = (post.split() + ["", "", ""])[:3]
        root, mnt = _unescape(fields_[3]), _unescape(fields_[4])
        if fstype == "cgroup":
            opts = set(superopts.split(","))
            mounts_v1.append((opts, mnt, root))
        elif fstype == "cgroup2" and mount_v2 is None:
            mount_v2 = (mnt, root)
    out: list[Hierarchy] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, ctrls, path = parts
        if ctrls == "":
            if mount_v2 is None:
                continue
            mnt, root = mount_v2
            out.append(Hierarchy(2, tuple(v2_controllers), mnt, _relative(path, root)))
            continue
        names = [c for c in ctrls.split(",") if c]
        if any(n.startswith("name=") for n in names):
            continue                      # named hierarchies (systemd) carry no controllers
        for opts, mnt, root in mounts_v1:
            if set(names) <= opts:
                out.append(Hierarchy(1, tuple(names), mnt, _relative(path, root)))
                break
    return out


def _relative(path: str, root: str) -> str:
    """Our cgroup path as seen below the mount's root (mounts of a subtree, e.g. in a
    container, show only part of the hierarchy)."""
    if root in ("", "/"):
        return path
    if path == root:
        return "/"
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")):]
    return path


def check_parent(parent: str) -> str:
    """Validate a relative cgroup parent ("" → the default)."""
    p = (parent or DEFAULT_PARENT).strip("/")
    if not p or any(c in ("", ".", "..") for c in p.split("/")):
        raise ValueError(f"invalid cgroup parent: {parent!r}")
    return p


def _useful(layout: list[Hierarchy]) -> list[tuple[Hierarchy, tuple[str, ...], str]]:
    """The hierarchies a container joins: (hierarchy, v2 controllers to enable, our own
    cgroup dir in it)."""
    out = []
    for h in layout:
        if h.version == 1:
            if not any(c in V1_CONTROLLERS for c in h.controllers):
                continue
            enable: tuple[str, ...] = ()
        else:
            enable = tuple(c for c in h.controllers if c in V2_CONTROLLERS)
            if not enable:
                continue                  # hybrid with e.g. only hugetlb on v2: not needed
        out.append((h, enable, os.path.join(h.mountpoint, h.own.lstrip("/"))))
    return out


def _no_double_controllers(dirs: list[CgroupDir]) -> list[CgroupDir]:
    """A controller served by a v1 hierarchy cannot be enabled on v2 at the same time."""
    v1_all = {c for d in dirs if d.version == 1 for c in d.controllers}
    for d in dirs:
        if d.version == 2:
            d.enable = tuple(c for c in d.enable if c not in v1_all)
    return [d for d in dirs if d.version == 1 or d.enable]


def plan(layout: list[Hierarchy], container_id: str, parent: str = "") -> list[CgroupDir]:
    """The directories a container gets, one per useful hierarchy."""
    par = check_parent(parent)
    if not container_id or "/" in container_id or container_id in (".", ".."):
        raise ValueError(f"invalid container id for a cgroup: {container_id!r}")
    dirs: list[CgroupDir] = []
    for h, enable, own in _useful(layout):
        base = os.path.join(own, par)
        dirs.append(CgroupDir(h.version, h.controllers, os.path.join(base, container_id),
                              base, own.rstrip("/") or "/", enable))
    return _no_double_controllers(dirs)


def plan_at(layout: list[Hierarchy], cgroups_path: str) -> list[CgroupDir]:
    """The directories for an OCI ``linux.cgroupsPath``: absolute paths are taken from each
    hierarchy's root, relative ones from this process's own cgroup (as runc does). Same
    hierarchy choice as :func:`plan`."""
    parts = [p for p in cgroups_path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"invalid cgroups path: {cgroups_path!r}")
    dirs: list[CgroupDir] = []
    for h, enable, own in _useful(layout):
        own = own.rstrip("/") or "/"
        top = h.mountpoint if cgroups_path.startswith("/") else own
        path = os.path.join(top, *parts)
        dirs.append(CgroupDir(h.version, h.controllers, path, os.path.dirname(path),
                              own, enable))
    return _no_double_controllers(dirs)


def _v2_weight(shares: int) -> int:
    # The conversion runc/crun use: shares [2, 262144] → weight [1, 10000].
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def limit_writes(dirs: list[CgroupDir], spec,
                 restrict_devices: bool = False) -> list[tuple[str, str]]:
    """``(file path, value)`` writes, in order, for a ``CgroupSpec``-like object; with
    ``restrict_devices`` also the v1 device allow-list (on pure v2 the same rules become an
    eBPF program: ``cgroups._v2_device_filter``)."""
    out: list[tuple[str, str]] = []
    owner: dict[str, CgroupDir] = {}
    for d in dirs:
        ctrls = d.controllers if d.version == 1 else d.enable
        for c in ctrls:
            owner.setdefault(c, d)
    mem = owner.get("memory")
    if mem is not None and spec.memory:
        swap = spec.memory_swap
        if mem.version == 1:
            out.append((os.path.join(mem.path, "memory.limit_in_bytes"), str(spec.memory)))
            if swap is None:
                swap = 2 * spec.memory       # Docker's default: as much swap as memory
            out.append((os.path.join(mem.path, "memory.memsw.limit_in_bytes"),
                        "-1" if swap == -1 else str(swap)))
        else:
            out.append((os.path.join(mem.path, "memory.max"), str(spec.memory)))
            if swap is None:
                swap = 2 * spec.memory
            out.append((os.path.join(mem.path, "memory.swap.max"),
                        "max" if swap == -1 else str(max(swap - spec.memory, 0))))
    cpu = owner.get("cpu")
    if cpu is not None:
        if spec.cpus:
            quota = max(int(spec.cpus * CFS_PERIOD_US), 1000)
            if cpu.version == 1:
                out.append((os.path.join(cpu.path, "cpu.cfs_period_us"), str(CFS_PERIOD_US)))
                out.append((os.path.join(cpu.path, "cpu.cfs_quota_us"), str(quota)))
            else:
                out.append((os.path.join(cpu.path, "cpu.max"), f"{quota} {CFS_PERIOD_US}"))
        if spec.cpu_shares:
            if cpu.version == 1:
                out.append((os.path.join(cpu.path, "cpu.shares"), str(spec.cpu_shares)))
            else:
                out.append((os.path.join(cpu.path, "cpu.weight"),
                            str(_v2_weight(spec.cpu_shares))))
    dev = owner.get("devices")
    if dev is not None and dev.version == 1 and restrict_devices:
        out.append((os.path.join(dev.path, "devices.deny"), "a"))
        out.extend((os.path.join(dev.path, "devices.allow"), rule) for rule in DEFAULT_DEVICES)
        # --device: each one's rule after the defaults
        out.extend((os.path.join(dev.path, "devices.allow"), rule)
                   for rule in spec.device_rules or ())
    pids = owner.get("pids")
    if pids is not None and spec.pids:
        out.append((os.path.join(pids.path, "pids.max"),
                    "max" if spec.pids < 0 else str(spec.pids)))
    return out


def parse_oom_kills(text: str) -> int:
    """The ``oom_kill`` counter of v1 ``memory.oom_control`` or v2 ``memory.events``."""
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == "oom_kill":
            try:
                return int(v)
            except ValueError:
                return 0
    return 0
