"""Session-level guard for the test suite: nothing aiorun makes may outlive the run.

:func:`isolate_environment` (called once, before any test) points ``AIORUN_ROOT`` /
``AIORUN_RUN`` at a fallback directory of the session, so a test that runs aiorun without
the ``aiorun_paths`` fixture can never reach the user's ``/var/lib/aiorun`` or ``/run/aiorun``,
and marks every process the tests start with ``AIORUN_TEST_SESSION=<token>`` in its
environment (inherited by daemons, spawners and containers' helpers alike), so processes
left running are attributed exactly, even on a host where other people run aiorun too.

:func:`snapshot` records the host state aiorun may touch; :func:`leaks` compares two
snapshots. Host-wide state (mounts, links, nft tables, netns, cgroup dirs) cannot be
attributed to one session, so on a shared host (``AIORUN_TEST_SHARED_HOST=1``) only the exact
findings fail the run (processes of this session, use of the default or fallback roots);
the rest is reported.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from aiorun.config import DEFAULT_ROOT, DEFAULT_RUN

MARKER = "AIORUN_TEST_SESSION"
#: Categories attributable to this session exactly (always fatal).
EXACT = ("processes", "default roots", "fallback root")
_AIORUN_MOUNT = re.compile(r"aiorun|/overlay/|merged")
_AIORUN_LINK = re.compile(r"^(veth|aior)|aiorun")


def isolate_environment() -> tuple[str, Path]:
    """Set the session marker and the fallback roots in ``os.environ``. (token, fallback dir)."""
    token = os.urandom(8).hex()
    base = Path(tempfile.mkdtemp(prefix="aiorun-session-", dir="/tmp"))
    os.environ[MARKER] = token
    # Not created: their mere existence at the end means a test used them.
    os.environ["AIORUN_ROOT"] = str(base / "root")
    os.environ["AIORUN_RUN"] = str(base / "run")
    os.environ.pop("AIORUN_SOCKET", None)
    # Every daemon the tests start (directly or auto-started by the CLI) inherits this: no
    # test can make it contact a registry off the machine (not even resolve its name).
    os.environ["AIORUN_REGISTRY_LOOPBACK_ONLY"] = "1"
    # ... nor trust (or depend on) the host's /etc/{aiorun,docker}/certs.d: an empty dir
    os.environ["AIORUN_REGISTRY_CERTS_DIR"] = str(base / "certs.d")
    return token, base


def _lines(cmd: list[str]) -> list[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []


def _cgroup_dirs() -> set[str]:
    """``aiorun*`` cgroup dirs and their children, at each controller's root and under this
    process's own cgroup (where the runtime nests its ``aiorun`` parent)."""
    own: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            for c in names.split(","):
                own[c.replace("name=", "")] = path
    except OSError:
        pass
    found: set[str] = set()
    root = Path("/sys/fs/cgroup")
    try:
        ctrls = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return found
    for ctrl in ctrls:
        bases = {ctrl, ctrl / own.get(ctrl.name, own.get("", "/")).lstrip("/")}
        for base in bases:
            try:
                parents = [p for p in base.iterdir() if p.is_dir() and p.name.startswith("aiorun")]
            except OSError:
                continue
            for parent in parents:
                found.add(str(parent))
                try:
                    found.update(str(p) for p in parent.iterdir() if p.is_dir())
                except OSError:
                    pass
    return found


def session_processes(token: str) -> dict[int, str]:
    """Live processes (not zombies) whose environment carries this session's marker."""
    want = f"{MARKER}={token}".encode()
    found: dict[int, str] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if want not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(") ", 1)[-1][:1] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return found


def snapshot(token: str, fallback: Path) -> dict[str, set[str]]:
    """What aiorun may have made on this host, by category (sets of printable items)."""
    mounts = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if _AIORUN_MOUNT.search(line):
            mounts.add(line.split(" ")[4])
    links = set()
    for line in _lines(["ip", "-o", "link"]):
        parts = line.split(":", 2)
        if len(parts) == 3:
            name = parts[1].strip().split("@")[0]
            if _AIORUN_LINK.search(name) or "alias aiorun:" in line:
                links.add(name)
    return {
        "mounts": mounts,
        "links": links,
        "nft tables": {t for t in _lines(["nft", "list", "tables"]) if "aiorun" in t},
        "netns": set(_lines(["ip", "netns", "list"])),
        "cgroups": _cgroup_dirs(),
        "processes": {f"{pid} {cmd}" for pid, cmd in session_processes(token).items()},
        "default roots": {p for p in (DEFAULT_ROOT, DEFAULT_RUN) if os.path.exists(p)},
        "fallback root": {str(p) for p in (fallback / "root", fallback / "run") if p.exists()},
    }


def leaks(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, list[str]]:
    return {k: sorted(after[k] - before.get(k, set())) for k in after
            if after[k] - before.get(k, set())}


def settled_leaks(before: dict[str, set[str]], token: str, fallback: Path,
                  wait: float = 5.0) -> dict[str, list[str]]:
    """:func:`leaks` against a fresh snapshot, re-taken for up to ``wait`` seconds while
    anything differs (daemons and spawners of the last test may still be exiting)."""
    deadline = time.monotonic() + wait
    while True:
        found = leaks(before, snapshot(token, fallback))
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.25)


def stop_session_processes(token: str, timeout: float = 10.0) -> None:
    """SIGTERM (then SIGKILL) the processes carrying this session's marker, by PID."""
    procs = session_processes(token)
    for pid in procs:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and session_processes(token):
        time.sleep(0.1)
    for pid in session_processes(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def report(found: dict[str, list[str]]) -> str:
    lines = ["the test session left aiorun state on the host:"]
    for k, items in found.items():
        lines.append(f"  {k}:")
        lines.extend(f"    {i}" for i in items[:20])
        if len(items) > 20:
            lines.append(f"    ... and {len(items) - 20} more")
    if "fallback root" in found:
        lines.append("  (a test ran aiorun without the aiorun_paths fixture or its own roots)")
    if set(found) - set(EXACT):
        lines.append("  (mounts, links, tables, netns and cgroups cannot be attributed to this run: "
                     "if other aiorun users share this host, AIORUN_TEST_SHARED_HOST=1 only "
                     "reports them)")
    return "\n".join(lines)
