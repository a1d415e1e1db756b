"""Processes the bench starts: subreaper, process trees, memory sampling, clean-up by PID.

The bench makes itself a child subreaper so that processes its engines leave behind
(containerd shims, conmon, aiorun's detached daemon) re-parent to it rather than to init:
they stay measurable as "everything the engine spawned" and the bench can end them by PID.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from dataclasses import dataclass, field

PR_SET_CHILD_SUBREAPER = 36
_PAGE = os.sysconf("SC_PAGE_SIZE")


def become_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may contain spaces and parentheses: split after the last ')'
        rest = stat[stat.rfind(b")") + 2:].split()
        kids.setdefault(int(rest[1]), []).append(int(name))
    return kids


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (not ``pid`` itself), breadth first."""
    kids = _children_map()
    out: list[int] = []
    todo = list(kids.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2:].split()[0].decode()
    except OSError:
        return "gone"


def rss_bytes(pid: int) -> int:
    """Resident set size from /proc/PID/statm (cheap enough to sample many processes)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages divided among sharers); 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def hwm_bytes(pid: int) -> int:
    """Peak RSS (VmHWM) of one process."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class TreeUsage:
    processes: int
    rss: int
    pss: int = 0
    by_comm: dict[str, tuple[int, int]] = field(default_factory=dict)  # comm -> (count, rss)

    def to_json(self) -> dict:
        return {"processes": self.processes, "rss_mb": round(self.rss / 2**20, 1),
                "pss_mb": round(self.pss / 2**20, 1),
                "by_comm": {k: {"count": c, "rss_mb": round(r / 2**20, 1)}
                            for k, (c, r) in sorted(self.by_comm.items())}}


def tree_usage(roots: list[int], *, pss: bool = False,
               exclude: set[int] = frozenset()) -> TreeUsage:
    """Process count and summed memory of ``roots`` and all their descendants.

    Zombies are skipped (they hold no memory); ``exclude`` pids are walked through but not
    counted (pass the bench's own pid as root and as exclude for "everything it started").
    """
    kids = _children_map()
    seen: set[int] = set()
    todo = list(roots)
    total_rss = total_pss = 0
    by_comm: dict[str, tuple[int, int]] = {}
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(kids.get(p, []))
        if p in exclude:
            continue
        r = rss_bytes(p)
        if r == 0 and state(p) in ("Z", "gone"):
            continue
        total_rss += r
        if pss:
            total_pss += pss_bytes(p)
        c = comm(p)
        n, m = by_comm.get(c, (0, 0))
        by_comm[c] = (n + 1, m + r)
    return TreeUsage(sum(n for n, _ in by_comm.values()), total_rss, total_pss, by_comm)


class PeakSampler:
    """Samples the summed RSS of a process set in a thread; ``peak`` holds the maximum.

    ``roots`` is a callable so the set can change while sampling (e.g. the bench's own
    children, minus client processes that come and go).
    """

    def __init__(self, roots, interval: float = 0.1, exclude: set[int] = frozenset(),
                 pss_every: int = 3) -> None:
        # roots: a callable returning the pids to walk. Summed RSS counts the pages forked
        # children share with their parent once per child; every ``pss_every``-th sample
        # also reads PSS (shared pages divided among sharers: smaps_rollup, costlier).
        self.roots = roots
        self.interval = interval
        self.exclude = exclude
        self.pss_every = pss_every
        self.peak = TreeUsage(0, 0)
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            with_pss = self.pss_every > 0 and i % self.pss_every == 0
            u = tree_usage(list(self.roots()), exclude=self.exclude, pss=with_pss)
            if u.rss > self.peak.rss:
                self.peak = u
            self.peak_pss = max(self.peak_pss, u.pss)
            i += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def reap_zombies(keep: set[int] = frozenset()) -> None:
    """Reap exited re-parented children (never those a ``Popen`` still owns: ``keep``)."""
    me = os.getpid()
    for p in _children_map().get(me, []):
        if p in keep:
            continue
        if state(p) == "Z":
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass


def terminate(pids: list[int], timeout: float = 10.0) -> list[int]:
    """SIGTERM each pid, wait up to ``timeout``, then SIGKILL the rest; returns those killed."""
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        reap_zombies()
        alive = [p for p in alive if state(p) not in ("Z", "gone")]
        if alive:
            time.sleep(0.05)
    for p in alive:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.05)
    reap_zombies()
    return alive


def started_by_bench() -> TreeUsage:
    """Everything the bench process has started and that is still alive (threads excluded)."""
    me = os.getpid()
    return tree_usage([me], pss=True, exclude={me})


_TICK = os.sysconf("SC_CLK_TCK")


def engine_cpu_seconds() -> float:
    """CPU time (user + system) used so far by everything the bench started.

    Live descendants' own and reaped-children times (/proc stat utime, stime, cutime,
    cstime) plus the bench's reaped children (getrusage). Take the difference of two calls
    around a phase: processes that ended in between are still counted, by whoever reaped
    them. The bench's own threads (API clients) are not included. Resolution: clock ticks.
    """
    import resource
    total = 0
    for p in descendants(os.getpid()):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()
        # fields 14..17 of stat; rest[0] is field 3 (state)
        total += sum(int(x) for x in rest[11:15])
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total / _TICK + ru.ru_utime + ru.ru_stime


def cpu_by_process() -> dict[int, tuple[str, list[int]]]:
    """pid -> (comm, [utime, stime, cutime, cstime] in clock ticks) of every live process
    the bench started (see :func:`cpu_split`)."""
    out: dict[int, tuple[str, list[int]]] = {}
    for p in descendants(os.getpid()):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.find(b"(") + 1:stat.rfind(b")")].decode(errors="replace")
        rest = stat[stat.rfind(b")") + 2:].split()
        out[p] = (name, [int(x) for x in rest[11:15]])
    return out


def cpu_split(before: dict[int, tuple[str, list[int]]],
              after: dict[int, tuple[str, list[int]]]) -> dict[str, float]:
    """Seconds of CPU between two :func:`cpu_by_process` snapshots of the processes alive at
    both, by ``<comm> user|sys`` for their own time and ``<comm> children user|sys`` for
    children they reaped meanwhile (the spawner's forked set-up children end up there).
    Processes born and gone in between are in the children figures of their reaper."""
    out: dict[str, float] = {}
    for pid, (name, t1) in after.items():
        if pid not in before:
            continue
        t0 = before[pid][1]
        for i, label in enumerate(("user", "sys", "children user", "children sys")):
            d = (t1[i] - t0[i]) / _TICK
            if d > 0:
                key = f"{name} {label}"
                out[key] = round(out.get(key, 0.0) + d, 2)
    return out
