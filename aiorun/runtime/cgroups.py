"""Container cgroups under cgroup v1, v2 and the hybrid layout: the effectful part.

Only the spawner calls these (single-threaded, so create/remove never race). The pure part —
parsing the layout, planning a container's directories, turning limits into writes — is
:mod:`aiorun.runtime.cgroup_layout`, re-exported here so callers have one module to import.
"""

from __future__ import annotations

import errno
import os
import time

from .cgroup_layout import (  # noqa: F401  (re-exported)
    CFS_PERIOD_US, CgroupDir, DEFAULT_DEVICES, DEFAULT_PARENT, Hierarchy, V1_CONTROLLERS,
    V2_CONTROLLERS, check_parent, limit_writes, parse_layout, parse_oom_kills, plan)


# --- effectful part (spawner only) ---------------------------------------------------------

#: ``GET /info``'s warning (and the daemon log's, at start) when containers get no cgroup.
NO_CGROUP_WARNING = ("WARNING: No cgroup hierarchy found: containers run without resource "
                     "accounting or limits")


def read_layout() -> list[Hierarchy]:
    """The usable hierarchies: one whose directory is unreachable (its mount covered, e.g. by
    a tmpfs over /sys/fs/cgroup, yet still in mountinfo) is left out, never faked."""
    with open("/proc/self/cgroup") as f:
        pc = f.read()
    with open("/proc/self/mountinfo") as f:
        mi = f.read()
    v2: tuple[str, ...] = ()
    for h in parse_layout(pc, mi):
        if h.version == 2:
            try:
                with open(os.path.join(h.mountpoint, h.own.lstrip("/"),
                                       "cgroup.controllers")) as f:
                    v2 = tuple(f.read().split())
            except OSError:
                v2 = ()
    return [h for h in parse_layout(pc, mi, v2)
            if os.path.exists(os.path.join(h.mountpoint, h.own.lstrip("/"), "cgroup.procs"))]


def layout_warnings(layout: list[Hierarchy]) -> list[str]:
    return [] if layout else [NO_CGROUP_WARNING]


def warnings() -> list[str]:
    """This process's (the daemon starts the spawner: same mount namespace)."""
    try:
        return layout_warnings(read_layout())
    except OSError:
        return [NO_CGROUP_WARNING]


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def required_controllers(spec) -> set[str]:
    """Controllers the limits of a ``CgroupSpec``-like object need."""
    need = set()
    if spec.memory:
        need.add("memory")
    if spec.cpus or spec.cpu_shares:
        need.add("cpu")
    if spec.pids:
        need.add("pids")
    return need


def missing_controllers(dirs: list[CgroupDir], spec) -> list[str]:
    """Required controllers no directory provides (a limit would silently not apply)."""
    have = {c for d in dirs for c in (d.controllers if d.version == 1 else d.enable)}
    return sorted(required_controllers(spec) - have)


def _enable_v2(d: CgroupDir) -> None:
    """Enable ``d.enable`` in ``own`` and ``parent``'s subtree_control, keeping in
    ``d.enable`` only what really got enabled. A non-root cgroup that holds processes
    cannot delegate controllers (the v2 "no internal processes" rule: EBUSY); the container
    then gets a cgroup without them, and limits needing them are refused by the caller."""
    want = list(d.enable)
    for p in (d.own, d.parent):
        os.makedirs(p, exist_ok=True)
        have = set(_read(os.path.join(p, "cgroup.subtree_control")).split())
        for c in [c for c in want if c not in have]:
            try:
                _write(os.path.join(p, "cgroup.subtree_control"), "+" + c)
            except OSError:
                want.remove(c)
    d.enable = tuple(want)


def create(dirs: list[CgroupDir], spec, restrict_devices: bool = False) -> None:
    """Make the directories and write the limits; on failure remove what was made.

    Raises OSError(ENOTSUP) naming the controllers when a requested limit has no controller
    to enforce it (not mounted, or not delegated on v2)."""
    made: list[CgroupDir] = []
    try:
        for d in dirs:
            if d.version == 2 and d.enable:
                _enable_v2(d)
            else:
                os.makedirs(d.parent, exist_ok=True)
            os.mkdir(d.path)
            made.append(d)
        apply_limits(dirs, spec, restrict_devices)
    except BaseException:
        remove(made)
        raise


def apply_limits(dirs: list[CgroupDir], spec, restrict_devices: bool = False) -> None:
    """Write the limits (and with ``restrict_devices`` the device allow-list: v1
    ``devices``, else the v2 eBPF filter) into existing directories: :func:`create`'s
    second half, and what a claimed warm sandbox's renamed directories get. Raises
    OSError(ENOTSUP) when a requested limit has no controller, OSError naming the file
    when a write fails."""
    missing = missing_controllers(dirs, spec)
    if missing:
        raise OSError(errno.ENOTSUP, f"cgroup controller(s) {', '.join(missing)} not "
                                     "available to aiorun here: cannot apply the "
                                     "requested limits")
    for path, value in limit_writes(dirs, spec, restrict_devices):
        if path.endswith(("memsw.limit_in_bytes", "memory.swap.max")) \
                and not os.path.exists(path):
            continue                  # swap accounting off: Docker ignores it too
        try:
            _write(path, value)
        except OSError as e:
            raise OSError(e.errno, f"cgroup: writing {value!r} to {path}: "
                                   f"{os.strerror(e.errno or 0)}") from None
    if restrict_devices:
        _v2_device_filter(dirs, spec)


def _v2_device_filter(dirs: list[CgroupDir], spec) -> None:
    """Pure v2 (no v1 ``devices`` hierarchy): the device allow-list as an eBPF program on
    the container's v2 directory (:mod:`.devicefilter`). A kernel that refuses it fails the
    create: the container would otherwise reach every device of the host."""
    if any(d.version == 1 and "devices" in d.controllers for d in dirs):
        return                                    # v1 devices.allow did it
    v2 = next((d for d in dirs if d.version == 2), None)
    if v2 is None:
        return
    from . import devicefilter
    try:
        devicefilter.attach(v2.path, list(DEFAULT_DEVICES) + list(spec.device_rules or ()))
    except OSError as e:
        raise OSError(e.errno, f"cgroup v2 device filter on {v2.path}: {e.strerror}") \
            from None


def join(dirs: list[CgroupDir], pid: int = 0) -> None:
    """Move ``pid`` (0 = the caller) into every directory."""
    val = str(pid or os.getpid())
    for d in dirs:
        _write(os.path.join(d.path, "cgroup.procs"), val)


def oom_kills(dirs: list[CgroupDir]) -> int:
    for d in dirs:
        if d.version == 1 and "memory" in d.controllers:
            name = "memory.oom_control"
        elif d.version == 2 and "memory" in d.enable:
            name = "memory.events"
        else:
            continue
        try:
            with open(os.path.join(d.path, name)) as f:
                return parse_oom_kills(f.read())
        except OSError:
            return 0
    return 0


def pids_in(dirs: list[CgroupDir]) -> list[int]:
    for d in dirs:
        try:
            with open(os.path.join(d.path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            continue
    return []


def remove(dirs: list[CgroupDir], timeout: float = 2.0, parents: bool = True) -> list[str]:
    """rmdir every container dir (retrying while exiting tasks drain) and then (with
    ``parents``) the parent when it became empty. Returns the paths that could not be
    removed."""
    left: list[str] = []
    deadline = time.monotonic() + timeout
    for d in dirs:
        while True:
            try:
                os.rmdir(d.path)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.005)
                    continue
                left.append(d.path)
                break
        if not parents:
            continue
        try:
            os.rmdir(d.parent)
        except OSError:
            pass                          # other containers still there, or not ours
    return left


def remove_leftovers(container_id: str, parent: str = "",
                     layout: list[Hierarchy] | None = None) -> list[str]:
    """Remove the empty cgroup directories of a container the runtime does not know (a
    create cut short by a spawner killed before it recorded them); returns those removed.
    Never waits and never touches one with tasks in it. Called by the daemon at start, for
    its own containers the runtime just said it does not know, before it serves anyone (so
    no create of that id can race it)."""
    try:
        dirs = plan(read_layout() if layout is None else layout, container_id, parent)
    except (OSError, ValueError):
        return []
    found = [d.path for d in dirs if os.path.isdir(d.path)]
    if not found:
        return []
    left = remove(dirs, timeout=0)
    return [p for p in found if p not in left]


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _int(text: str) -> int | None:
    t = text.strip()
    if not t or t == "max":
        return None
    try:
        return int(t)
    except ValueError:
        return None


def _find(dirs: list[CgroupDir], ctrl: str) -> CgroupDir | None:
    for d in dirs:
        if (d.version == 1 and ctrl in d.controllers) or (d.version == 2 and ctrl in d.enable):
            return d
    return None


def freeze(dirs: list[CgroupDir], frozen: bool, timeout: float = 5.0) -> None:
    """Freeze (``docker pause``) or thaw every process of the container: v1 freezer
    (``freezer.state``), else v2 ``cgroup.freeze``. Waits until the kernel reports the
    new state. Raises OSError(ENOTSUP) when neither is available."""
    d = _find(dirs, "freezer")
    deadline = time.monotonic() + timeout
    if d is not None:
        want = "FROZEN" if frozen else "THAWED"
        path = os.path.join(d.path, "freezer.state")
        _write(path, want)
        while _read(path).strip() != want:
            if time.monotonic() > deadline:
                raise OSError(errno.ETIMEDOUT, f"freezer did not reach {want}")
            time.sleep(0.002)
        return
    v2 = next((x for x in dirs if x.version == 2), None)
    if v2 is None:
        raise OSError(errno.ENOTSUP, "no freezer cgroup for this container")
    _write(os.path.join(v2.path, "cgroup.freeze"), "1" if frozen else "0")
    want = f"frozen {1 if frozen else 0}"
    while want not in _read(os.path.join(v2.path, "cgroup.events")):
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, f"cgroup did not reach {want}")
        time.sleep(0.002)


def is_frozen(dirs: list[CgroupDir]) -> bool:
    """Whether the container's freezer says frozen (v1 ``freezer.state`` FROZEN or
    FREEZING, else v2 ``cgroup.events`` "frozen 1"): the truth a restarted spawner reports
    for a container it re-adopts."""
    d = _find(dirs, "freezer")
    if d is not None:
        return _read(os.path.join(d.path, "freezer.state")).strip() in ("FROZEN", "FREEZING")
    v2 = next((x for x in dirs if x.version == 2), None)
    return v2 is not None and "frozen 1" in _read(os.path.join(v2.path, "cgroup.events"))


def stats(dirs: list[CgroupDir]) -> dict:
    """Resource usage: memory usage/limit (bytes), cpu usage (ns), pids (host pids)."""
    out: dict = {"memory_usage": None, "memory_limit": None, "cpu_usage_ns": None,
                 "pids": pids_in(dirs), "oom_kills": oom_kills(dirs)}
    m = _find(dirs, "memory")
    if m is not None and m.version == 1:
        out["memory_usage"] = _int(_read(os.path.join(m.path, "memory.usage_in_bytes")))
        lim = _int(_read(os.path.join(m.path, "memory.limit_in_bytes")))
        out["memory_limit"] = lim if lim is not None and lim < (1 << 62) else None
    elif m is not None:
        out["memory_usage"] = _int(_read(os.path.join(m.path, "memory.current")))
        out["memory_limit"] = _int(_read(os.path.join(m.path, "memory.max")))
    c = _find(dirs, "cpuacct")
    if c is not None and c.version == 1:
        out["cpu_usage_ns"] = _int(_read(os.path.join(c.path, "cpuacct.usage")))
    else:
        v2 = next((x for x in dirs if x.version == 2), None)
        if v2 is not None:
            for line in _read(os.path.join(v2.path, "cpu.stat")).splitlines():
                k, _, v = line.partition(" ")
                if k == "usage_usec":
                    out["cpu_usage_ns"] = int(v) * 1000
    from . import cgroup_stats      # the figures docker stats shows (lazy: spawner start-up)
    out.update(cgroup_stats.detail(dirs))
    return out


def update(dirs: list[CgroupDir], spec) -> None:
    """Change the limits of an existing container (``docker update``). Only the limits set
    in ``spec`` are written. On v1 raising memory above the current memory+swap limit needs
    the memsw write first, lowering needs it last: failed writes are retried once after the
    others."""
    missing = missing_controllers(dirs, spec)
    if missing:
        raise OSError(errno.ENOTSUP, f"cgroup controller(s) {', '.join(missing)} not "
                                     "available to aiorun here")
    pending = [(p, v) for p, v in limit_writes(dirs, spec)
               if not (p.endswith(("memsw.limit_in_bytes", "memory.swap.max"))
                       and not os.path.exists(p))]
    for attempt in range(2):
        failed = []
        for path, value in pending:
            try:
                _write(path, value)
            except OSError as e:
                failed.append((path, value, e))
        if not failed:
            return
        pending = [(p, v) for p, v, _ in failed]
    path, value, err = failed[0]
    raise OSError(err.errno,
                  f"cgroup: writing {value!r} to {path}: {os.strerror(err.errno or 0)}")
