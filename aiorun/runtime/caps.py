"""Capability names and the set a container keeps (pure logic).

Docker's default set, ``--privileged`` (everything), ``--cap-add`` / ``--cap-drop`` with
names spelled with or without the ``CAP_`` prefix, in any case, and ``ALL``.
"""

from __future__ import annotations

import functools

from ..errors import InvalidArgument

CAPS: dict[str, int] = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
    "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

DOCKER_DEFAULT = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                  "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                  "AUDIT_WRITE")


@functools.lru_cache(maxsize=1)
def last_cap() -> int:
    """The highest capability number this kernel knows (bounding-set drops go up to it).
    Read once per process (the spawner's children inherit the answer)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPS.values())


def normalize(name: str) -> str:
    n = name.strip().upper()
    if n.startswith("CAP_"):
        n = n[4:]
    if n != "ALL" and n not in CAPS:
        raise InvalidArgument(f"unknown capability: {name!r}")
    return n


def mask_of(names) -> int:
    m = 0
    for n in names:
        m |= 1 << CAPS[n]
    return m


def effective_set(privileged: bool, cap_add: list[str], cap_drop: list[str],
                  top: int | None = None) -> int:
    """The 64-bit mask of capabilities the container keeps.

    Docker's order: start from the default (or all when privileged), drop, then add; "ALL"
    in cap_drop empties the set before additions, "ALL" in cap_add grants everything.
    """
    top = last_cap() if top is None else top
    full = (1 << (top + 1)) - 1
    if privileged:
        return full
    adds = [normalize(c) for c in cap_add]
    drops = [normalize(c) for c in cap_drop]
    kept = mask_of(DOCKER_DEFAULT)
    if "ALL" in drops:
        kept = 0
    else:
        kept &= ~mask_of(drops)
    if "ALL" in adds:
        kept = full
    else:
        kept |= mask_of(a for a in adds if a != "ALL")
    return kept & full
