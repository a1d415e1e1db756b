"""The fault suite's instruments: a cgroup scope per test daemon, an exact inventory of what
that daemon owns on the host, and a check of the event journal.

* :class:`CgroupScope` — a cgroup of its own, in every hierarchy the runtime uses. The daemon
  is started inside it (:meth:`CgroupScope.wrapper`), the spawner it starts inherits it, and
  the runtime nests every container's cgroup under its own: so every process and cgroup
  below the scope is exactly this daemon's, even while other aiorun daemons run on the host.
* :func:`inventory` — what the daemon on ``paths`` holds: mounts under its roots, its links
  and nft table, cgroups and processes in its scope, storage and container directories,
  spool and temporary files. Two inventories taken around a fault (after a restart and
  after removing what the faulted operation made through the API) must be equal: any
  difference is a leak.
* :func:`journal_gaps` — the event journal read from disk: sequence numbers strictly
  increasing by one (never reused across restarts, no gap).

No mocks: everything here reads the real kernel and the real state root.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path

from aiorun.config import Paths
from aiorun.runtime import cgroups

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_POOL = re.compile(r"^pool-(\d+)-\d+$")


def live_pool(rel: str) -> bool:
    """Whether the relative cgroup dir ``rel`` is a warm sandbox of a spawner that runs
    (aiorun.runtime.spawner.pool): transient state of that spawner, made and drained as it
    pleases, not a leak. A pool cgroup of a spawner that is gone is one."""
    from aiorun.runtime.spawner.pool import pid_alive
    m = _POOL.match(rel.rsplit("/", 1)[-1])
    return m is not None and pid_alive(int(m.group(1)))


class CgroupScope:
    """``<own cgroup>/aiorun-fault-<token>`` in each hierarchy the runtime would use."""

    def __init__(self, token: str = "") -> None:
        self.name = f"aiorun-fault-{token or secrets.token_hex(4)}"
        layout = cgroups.read_layout()
        # the hierarchies the runtime uses are those its plan gives a container a dir in
        self.dirs = [os.path.dirname(d.parent) + "/" + self.name
                     for d in cgroups.plan(layout, "probe")]

    def create(self) -> "CgroupScope":
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
        return self

    def wrapper(self) -> list[str]:
        """argv prefix that moves the process into the scope, then execs the rest."""
        files = " ".join(f"'{d}/cgroup.procs'" for d in self.dirs)
        return ["sh", "-c", f'for f in {files}; do echo $$ > "$f" || exit 111; done; '
                'exec "$@"', "aiorun-fault-scope"]

    def tree(self) -> set[str]:
        """Every cgroup dir below the scope, relative (the same in each hierarchy)."""
        out: set[str] = set()
        for top in self.dirs:
            for dirpath, dirnames, _ in os.walk(top):
                for n in dirnames:
                    out.add(os.path.relpath(os.path.join(dirpath, n), top))
        return out

    def processes(self) -> dict[int, str]:
        """pid → relative cgroup dir for every process in the scope (first hierarchy)."""
        out: dict[int, str] = {}
        if not self.dirs:
            return out
        top = self.dirs[0]
        for dirpath, _, filenames in os.walk(top):
            if "cgroup.procs" not in filenames:
                continue
            try:
                pids = Path(dirpath, "cgroup.procs").read_text().split()
            except OSError:
                continue
            for p in pids:
                out[int(p)] = os.path.relpath(dirpath, top)
        return out

    def remove(self, timeout: float = 10.0) -> list[str]:
        """rmdir the scope bottom-up (waiting for exiting tasks); what could not be removed."""
        left: list[str] = []
        deadline = time.monotonic() + timeout
        for top in self.dirs:
            if not os.path.isdir(top):
                continue
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                while True:
                    try:
                        os.rmdir(dirpath)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() < deadline:
                            time.sleep(0.05)
                            continue
                        left.append(dirpath)
                        break
        return left


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _process_kinds(scope: CgroupScope, live_ids: set[str]) -> set[str]:
    """The daemon and the spawner by kind (numbered when there are several: a second one is
    a leak), and any other process outside a live container's cgroup by its command."""
    seen: Counter[str] = Counter()
    out: set[str] = set()
    for pid, rel in scope.processes().items():
        parts = rel.split("/")
        if len(parts) >= 2 and _HEX64.match(parts[-1]) and parts[-1] in live_ids:
            continue                          # a live container's own processes
        if live_pool(rel):
            continue                          # a live spawner's warm sandbox
        cmd = cmdline(pid)
        if not cmd:
            continue                          # exited meanwhile (or a zombie)
        kind = ("daemon" if " serve " in f" {cmd} " else
                "spawner" if "spawner" in cmd else f"process {cmd[:80]} in {rel}")
        seen[kind] += 1
        out.add(f"{kind} #{seen[kind]}")
    return out


def _owned_net(paths: Paths) -> set[str]:
    """The daemon's nft table, links carrying its alias and veths on its bridges (or on no
    bridge): exact even while other daemons run (see tests/integration/netns_util.py)."""
    from aiorun_plugins.network.bridge import BridgeDriver
    drv = BridgeDriver(paths.networks / "drivers" / "bridge")
    out: set[str] = set()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    if f"table ip {drv.table}" in tables.splitlines():
        out.add(f"nft table ip {drv.table}")
    links = json.loads(subprocess.run(["ip", "-j", "-d", "link"], capture_output=True,
                                      text=True).stdout or "[]")
    ours = {ln["ifname"] for ln in links if ln.get("ifalias") == drv.alias}
    for ln in links:
        name = ln["ifname"]
        if name in ours or (name.startswith("aiorv") and ln.get("master") in ours):
            out.add(f"link {name}")
    return out


def _entries(d: Path, pattern: str = "*") -> set[str]:
    try:
        return {str(p) for p in d.glob(pattern)}
    except OSError:
        return set()


def inventory(paths: Paths, scope: CgroupScope, live_ids: set[str]) -> dict[str, set[str]]:
    """What the daemon on ``paths`` (started in ``scope``) holds, by category.
    ``live_ids``: the containers the daemon lists (their processes are theirs)."""
    roots = (str(paths.root) + "/", str(paths.run) + "/")
    mounts = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split(" ")[4]
        if mp.startswith(roots):
            mounts.add(mp)
    storage = set()
    for drv in _entries(paths.root / "storage"):
        storage |= _entries(Path(drv) / "containers")
        storage |= _entries(Path(drv), "*/.tmp-*")
    spool = (_entries(paths.tmp) | _entries(paths.root, "*/.tmp-*")
             | _entries(paths.root, "*/*/.tmp-*") | _entries(paths.images, "**/aiorun-layer-*"))
    return {
        "mounts": mounts,
        "network": _owned_net(paths),
        "cgroups": {d for d in scope.tree() if not live_pool(d)},
        "processes": _process_kinds(scope, live_ids),
        "storage": storage,
        "container dirs": _entries(paths.containers),
        "spool/temp files": spool,
    }


def leaks(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, list[str]]:
    """Items gained per category. (Items gone are not leaks: an exited container's rootfs
    may be unmounted later; what must survive a fault is checked through the API.)"""
    return {k: sorted(after[k] - before.get(k, set())) for k in after
            if after[k] - before.get(k, set())}


def journal_seqs(paths: Paths) -> list[int]:
    """Every sequence number in the on-disk journal, in file order (segments by name)."""
    from aiorun.bus.journal import _read_records, _SEG
    seqs: list[int] = []
    try:
        names = sorted(n for n in os.listdir(paths.events) if _SEG.match(n))
    except FileNotFoundError:
        return seqs
    for n in names:
        seqs.extend(rec["seq"] for _, rec in _read_records(paths.events / n))
    return seqs


def journal_gaps(paths: Paths) -> list[str]:
    """Problems of the journal: a seq not one more than the one before (gap or reuse)."""
    seqs = journal_seqs(paths)
    out = []
    for a, b in zip(seqs, seqs[1:]):
        if b != a + 1:
            out.append(f"seq {b} after {a}" + (" (reused)" if b <= a else " (gap)"))
    return out
