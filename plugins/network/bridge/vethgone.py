"""Detaching the endpoint of a container that has exited: let the kernel remove the veth.

A veth pair dies with the network namespace of its container end. Deleting the host end
ourselves (RTM_DELLINK) holds the RTNL lock through an RCU grace period (≈ 10–20 ms per
link) while the kernel dismantles the container's namespace anyway, so a burst of N removals
queued N of those one after another (a teardown of 1,000 containers took ≈ 10–14 s). When
the namespace's owner is gone, the kernel's namespace clean-up removes the pair by itself,
and it batches every namespace that died meanwhile into one pass: so we wait for the host
end to vanish (polling its index, which takes no lock), and delete it only if it is still
there after a bound (the namespace kept alive by another holder, e.g. a ``container:``
sharer).

``owner_of(netns_path)`` is recorded in the endpoint's data at attach (pid and namespace
inode of the process it was attached to); ``owner_gone`` answers from /proc whether that
process (and so its hold on the namespace) is gone.
"""

from __future__ import annotations

import os
import socket

import anyio

from aiorun.net import netlink as nl

#: How long a detach waits for the kernel to remove the veth of an exited container before
#: deleting it itself.
WAIT_S = 5.0


def owner_of(netns_path: str) -> str:
    """``"<pid>:<netns inode>"`` for a ``/proc/<pid>/ns/net`` path; "" when not that form
    or not readable (the detach then deletes the link as before)."""
    parts = netns_path.split("/")
    if len(parts) != 5 or parts[1] != "proc" or not parts[2].isdigit() or \
            parts[3:] != ["ns", "net"]:
        return ""
    try:
        return f"{parts[2]}:{os.stat(netns_path).st_ino}"
    except OSError:
        return ""


def owner_gone(owner: str) -> bool:
    """True when the process recorded by :func:`owner_of` no longer holds that namespace
    (exited, or its pid reused by a process elsewhere). False when it does, or unknown."""
    pid, _, ino = owner.partition(":")
    if not pid.isdigit() or not ino.isdigit():
        return False
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino != int(ino)
    except OSError:
        return True


def link_exists(name: str) -> bool:
    """Until the kernel is done with it: a link leaves the name index first and sysfs
    (``/sys/class/net``, what users and the host guard list) a little later."""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return os.path.lexists(f"/sys/class/net/{name}")


async def remove_host_end(host_if: str, owner: str, wait_s: float = WAIT_S) -> None:
    """Make ``host_if`` go away: wait for the kernel when the namespace's owner has exited,
    else (or after ``wait_s``) delete it."""
    if owner and owner_gone(owner):
        delay = 0.002
        with anyio.move_on_after(wait_s):
            while link_exists(host_if):
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.05)
            return
    await nl.run(nl.delete_link, host_if)
