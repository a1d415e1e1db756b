"""Run the bench in its own mount + network namespace, and clean up after it.

Why: the peers change host state when they run with networking (docker and podman add a
bridge, veths and iptables/nft rules; podman writes CNI state under /var/lib/cni and netns
files under /run/netns) and every engine mounts overlays. Inside a private mount namespace
and a fresh network namespace all of that happens on the bench's own copies: only the
bench's loopback and namespaces see traffic, other tests' ``host_state`` snapshots never see
the bench's mounts or links, and when the namespace's last process exits the kernel drops
whatever was left.

What is global and cleaned explicitly: cgroups (the peers' go under ``/aiorun-bench`` in
every hierarchy), the bench's scratch dir, and the mask mount points the bench had to create.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# Host paths the peers write to even with their roots redirected: inside the namespace a
# tmpfs is mounted over each, so nothing reaches the host's copy.
MASKS = ["/var/lib/cni", "/run/cni", "/run/netns", "/var/lib/containers", "/run/containers",
         "/run/libpod", "/dev/shm"]         # /dev/shm: podman's lock file (libpod_lock)
#: cgroup parents peers make by default (podman's and conmon's); removed after the run
#: when they were not there before it
PEER_CGROUPS = ["libpod_parent"]
CGROUP_NAME = "aiorun-bench"
INNER_FLAG = "--inner-workdir"
REPO = Path(__file__).resolve().parent.parent


def outer_main(argv: list[str]) -> int:
    """Create the scratch dir, re-run the bench inside ``unshare``, clean up afterwards."""
    if os.geteuid() != 0:
        sys.stderr.write("bench: needs root (namespaces, mounts, cgroups)\n")
        return 2
    unshare = shutil.which("unshare")
    if not unshare:
        sys.stderr.write("bench: util-linux 'unshare' not found\n")
        return 2
    ws = Path(tempfile.mkdtemp(prefix="aiorun-bench-", dir="/tmp"))
    peer_cgroups = [n for n in PEER_CGROUPS
                    if not any(h.joinpath(n).exists() for h in Path("/sys/fs/cgroup").iterdir())]
    created = []
    for m in MASKS:
        if not os.path.exists(m):
            os.makedirs(m)
            created.append(m)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [unshare, "--mount", "--net", "--propagation", "private", "--",
           sys.executable, "-m", "bench", INNER_FLAG, str(ws), *argv]
    p = subprocess.Popen(cmd, env=env)  # unshare execs: p.pid is the inner bench
    # SIGTERM/SIGINT: pass it on and keep waiting, so the inner bench stops its engines
    # and this process still cleans the host side
    old = {s: signal.signal(s, lambda signum, _f: p.send_signal(signum))
           for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        rc = p.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        leftovers = cleanup_host(ws, created, peer_cgroups)
    if leftovers:
        sys.stderr.write("bench: could not remove: " + ", ".join(leftovers) + "\n")
        rc = rc or 1
    return rc


def cleanup_host(ws: Path, created: list[str], peer_cgroups: list[str] | None = None) -> list[str]:
    """Remove the scratch dir, the mask dirs we created, the bench's cgroups and the peers'
    default cgroup parents the run made (``peer_cgroups``)."""
    left = []
    subprocess.run(["rm", "-rf", "--one-file-system", str(ws)], check=False)
    if ws.exists():
        left.append(str(ws))
    for m in reversed(created):
        # inside the namespace these were covered by a tmpfs: anything in them now was put
        # there by another program on the host while we ran, so it stays
        try:
            os.rmdir(m)
        except FileNotFoundError:
            pass
        except OSError:
            sys.stderr.write(f"bench: {m} (created as a mount point) is in use by something "
                             "else now: left in place\n")
    left += remove_cgroups()
    for name in peer_cgroups or []:
        left += remove_cgroups(name)
    return left


def remove_cgroups(name: str = CGROUP_NAME, base: Path = Path("/sys/fs/cgroup")) -> list[str]:
    """rmdir ``/<name>`` (depth first) in every cgroup hierarchy under ``base``; returns
    the directories that stayed (a cgroup that still has processes)."""
    left: list[str] = []
    for h in base.iterdir():
        left += rmdir_cgroup_tree(h / name)
    return left


def rmdir_cgroup_tree(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    left = []
    for dirpath, _, _ in os.walk(root, topdown=False):  # children before parents
        try:
            os.rmdir(dirpath)
        except OSError:
            left.append(dirpath)
    return left


def inner_setup(ws: Path) -> list[str]:
    """Inside the namespace: loopback up, masks, a v1 hugetlb hierarchy for crun.

    Returns notes for the report (what could not be set up)."""
    notes = []
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for m in MASKS:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "bench-mask", m], check=True)
    # /sys still shows the host's network devices (sysfs follows the netns of whoever
    # mounted it). Engines read /sys/class/net/<dev>/... (bridge ports, hairpin): graft the
    # net parts of a sysfs mounted from inside our netns over the host's, keeping the rest
    # of /sys (cgroup hierarchies live under /sys/fs/cgroup).
    sysfs = ws / "sysfs"
    sysfs.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "sysfs", "bench-sysfs", str(sysfs)], check=True)
    for sub in ("class/net", "devices/virtual/net"):
        subprocess.run(["mount", "--bind", str(sysfs / sub), f"/sys/{sub}"], check=True)
    # crun 1.8 refuses this hybrid layout while hugetlb sits on cgroup2; a v1 hugetlb
    # hierarchy mounted anywhere fixes it (design.md). The mount is private to us.
    hug = ws / "hugetlb"
    hug.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "bench-hugetlb", str(hug)],
                       capture_output=True, text=True)
    if r.returncode:
        notes.append(f"v1 hugetlb hierarchy not mounted ({r.stderr.strip()}): crun may refuse")
    return notes


def inner_teardown(ws: Path) -> None:
    for sub in ("class/net", "devices/virtual/net"):
        subprocess.run(["umount", f"/sys/{sub}"], check=False)
    subprocess.run(["umount", str(ws / "sysfs")], check=False)
    hug = ws / "hugetlb"
    if os.path.ismount(hug):
        rmdir_cgroup_tree(hug / CGROUP_NAME)
        subprocess.run(["umount", str(hug)], check=False)
