"""What moving a process into a container's cgroups costs, v1 hierarchies against cgroup v2.

``python -m bench.cgroup_join [--n N] [--gap-ms MS]`` (about 10 s, root).

Why: a container start moves its PID 1 into its cgroups, and on cgroup v1 that is one
``cgroup.procs`` write per hierarchy (aiorun uses seven). Every migration takes the kernel's
global ``cgroup_threadgroup_rwsem`` for writing, and taking that per-CPU rwsem for writing
waits for an RCU grace period unless another writer passed one moments before — so a start
after an idle spell pays a grace period, and a burst shares them. This host is a v1 hybrid:
the unified (v2) hierarchy is mounted but every resource controller is bound to v1, so a
whole v2 start cannot be measured here. What can be measured is the migration itself, which
is the part the issue asks about: one write into a v2 directory (no controllers) against the
seven v1 writes, after an idle gap (sequential starts) and back to back (a burst). Also
timed: the operations a warm pool puts on the critical path instead (renaming a pre-made
cgroup directory: v1 only, cgroup v2 refuses rename with EPERM), the removal (``rmdir``),
and on v2 a process born in its cgroup (``clone3(CLONE_INTO_CGROUP)``, which takes the rwsem
only for reading: no grace period).

Cgroups are made under ``/aiorun-bench-cg`` in each hierarchy and removed at the end; the
child processes are this script's own, ended by PID.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import struct
import signal
import statistics
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
V1 = ["memory", "cpu", "cpuacct", "pids", "blkio", "freezer", "devices"]
NAME = "aiorun-bench-cg"


def hierarchies(mode: str) -> list[Path]:
    if mode == "v2":
        for cand in (ROOT / "unified", ROOT):
            if (cand / "cgroup.controllers").exists():
                return [cand]
        return []
    found = [ROOT / h for h in V1 if (ROOT / h / "cgroup.procs").exists()]
    return found if len(found) == len(V1) else []


def sleeper() -> int:
    pid = os.fork()
    if pid == 0:
        try:
            signal.pause()
        finally:
            os._exit(0)
    return pid


CLONE_INTO_CGROUP = 0x200000000
SYS_CLONE3 = 435                # x86_64 and aarch64 (the generic syscall table)
SYS_EXIT = 60 if os.uname().machine == "x86_64" else 93


def clone3_into(cgroup_dir: Path) -> float:
    """Seconds for ``clone3(CLONE_INTO_CGROUP)``: the child is born in ``cgroup_dir``
    (cgroup v2 only) and leaves at once through the raw exit syscall (it never runs Python
    code: no interpreter state is touched after a raw clone)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        args = ctypes.create_string_buffer(struct.pack(
            "11Q", CLONE_INTO_CGROUP, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, fd))
        t = time.perf_counter()
        pid = libc.syscall(SYS_CLONE3, args, 88)
        if pid == 0:
            libc.syscall(SYS_EXIT, 0)
        took = time.perf_counter() - t
        if pid < 0:
            raise OSError(ctypes.get_errno(), "clone3(CLONE_INTO_CGROUP)")
        os.waitpid(pid, 0)
        return took
    finally:
        os.close(fd)


def median_ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1e3:7.3f}" if xs else "  (none)"


def run(mode: str, n: int, gap: float) -> dict[str, list[float]]:
    hs = hierarchies(mode)
    if not hs:
        return {}
    out: dict[str, list[float]] = {"join idle": [], "join burst": [], "rename": [],
                                   "rmdir": [], "clone3 idle": []}
    bases = [h / NAME for h in hs]
    for b in bases:
        b.mkdir(exist_ok=True)
    pids: list[int] = []
    try:
        for pattern in ("join idle", "join burst"):
            for i in range(n):
                dirs = [b / f"{pattern[5:]}{i}" for b in bases]
                for d in dirs:
                    d.mkdir()
                pid = sleeper()
                pids.append(pid)
                if pattern == "join idle":
                    time.sleep(gap)
                t = time.perf_counter()
                for d in dirs:
                    (d / "cgroup.procs").write_text(str(pid))
                out[pattern].append(time.perf_counter() - t)
        if mode == "v2":                  # born in the cgroup: no migration at all
            for i in range(n):
                d = bases[0] / f"c{i}"
                d.mkdir()
                time.sleep(gap)
                out["clone3 idle"].append(clone3_into(d))
                d.rmdir()
        for pid in pids:                  # out of the cgroups, so they can be removed
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        pids.clear()
        try:
            for b in bases:
                for i, d in enumerate(sorted(p for p in b.iterdir() if p.is_dir())):
                    t = time.perf_counter()
                    d.rename(b / f"r{i}")
                    out["rename"].append(time.perf_counter() - t)
        except PermissionError:         # cgroup v2 has no rename (kernfs: v1 only)
            out["rename"] = []
        for i in range(n):
            t = time.perf_counter()
            for b in bases:
                for d in sorted(p for p in b.iterdir() if p.is_dir())[:2]:
                    d.rmdir()
            out["rmdir"].append((time.perf_counter() - t) / 2)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for b in bases:
            for d in [p for p in b.iterdir() if p.is_dir()]:
                d.rmdir()
            b.rmdir()
    # rename is per directory: report it per container (one per hierarchy)
    k = len(hs)
    if not out["rename"]:
        return out
    out["rename"] = [sum(out["rename"][i:i + k]) for i in range(0, len(out["rename"]), k)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--gap-ms", type=float, default=100.0,
                    help="idle time before each 'join idle' migration")
    a = ap.parse_args()
    print(f"== cgroup migration per container (medians, ms; n={a.n}, idle gap {a.gap_ms} ms)")
    print(f"{'layout':<26} {'join idle':>9} {'join burst':>10} {'rename':>8} {'rmdir':>8} "
          f"{'clone3 into, idle':>17}")
    for mode, label in (("v1", "v1: 7 hierarchies"), ("v2", "v2: 1 dir (no controllers)")):
        r = run(mode, a.n, a.gap_ms / 1e3)
        if not r:
            print(f"{label:<26} (not available on this host)")
            continue
        print(f"{label:<26} {median_ms(r['join idle']):>9} {median_ms(r['join burst']):>10} "
              f"{median_ms(r['rename']):>8} {median_ms(r['rmdir']):>8} "
              f"{median_ms(r['clone3 idle']):>17}")


if __name__ == "__main__":
    main()
