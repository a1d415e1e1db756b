"""A compact seccomp filter in the spirit of Docker's default profile (x86_64).

Docker's profile is an allow-list of ~350 syscalls; what it actually takes away from a
container is a few dozen kernel interfaces that are not namespaced or are attack surface:
keyrings, kernel modules, kexec, BPF, perf, userfaultfd, io_uring, clock setting,
mount/namespace creation (unless CAP_SYS_ADMIN), ``clone3`` (ENOSYS so libc falls back to
``clone``), and ``clone`` with namespace flags. This module builds the equivalent
*deny-list* as classic BPF, gated on capabilities the same way Docker's profile is. Syscalls
denied get EPERM.

``build(kept_caps)`` is pure (unit-tested); ``install(kept_caps)`` loads it (needs
no_new_privs or CAP_SYS_ADMIN; the caller installs it while still holding all caps).
Other architectures: the filter lets everything through (documented limitation).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import platform
import struct

from .caps import CAPS

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
CLONE_NS_FLAGS = 0x7E020000        # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

#: always denied (x86_64 numbers)
ALWAYS = {
    "acct": 163, "add_key": 248, "create_module": 174, "get_kernel_syms": 177,
    "keyctl": 250, "kexec_file_load": 320, "kexec_load": 246, "nfsservctl": 180,
    "query_module": 178, "request_key": 249, "sysfs": 139, "_sysctl": 156, "uselib": 134,
    "userfaultfd": 323, "ustat": 136, "swapon": 167, "swapoff": 168,
    "get_mempolicy": 239, "set_mempolicy": 238, "mbind": 237, "move_pages": 279,
    # Docker >= 25 blocks io_uring (a large, frequently exploited interface)
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
}
#: denied unless the container keeps the capability
GATED = {
    "SYS_ADMIN": {"mount": 165, "umount2": 166, "unshare": 272, "setns": 308,
                  "pivot_root": 155, "bpf": 321, "perf_event_open": 298,
                  "fanotify_init": 300, "lookup_dcookie": 212, "name_to_handle_at": 303,
                  "quotactl": 179, "open_tree": 428, "move_mount": 429, "fsopen": 430,
                  "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
                  "setdomainname": 171, "sethostname": 170},
    "SYS_MODULE": {"init_module": 175, "finit_module": 313, "delete_module": 176},
    "SYS_BOOT": {"reboot": 169},
    "SYS_TIME": {"settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305,
                 "adjtimex": 159},
    "SYS_PTRACE": {"process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312},
    "DAC_READ_SEARCH": {"open_by_handle_at": 304},
    "SYS_RAWIO": {"iopl": 172, "ioperm": 173},
}
NR_CLONE = 56
NR_CLONE3 = 435


def denied(kept_caps: int) -> dict[str, int]:
    """name → number of every syscall the filter refuses for this capability set."""
    out = dict(ALWAYS)
    for cap, calls in GATED.items():
        if not kept_caps & (1 << CAPS[cap]):
            out.update(calls)
    return out


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


@functools.lru_cache(maxsize=32)
def build(kept_caps: int) -> bytes:
    """The BPF program (sequence of ``struct sock_filter``). Cached: the spawner builds it
    once per capability set before forking, so the containers' children only load it."""
    eperm = RET_ERRNO | errno.EPERM
    prog = [
        _ins(_LD_W_ABS, 0, 0, 4),                       # seccomp_data.arch
        _ins(_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _ins(_RET_K, 0, 0, RET_ALLOW),                  # other arch: not filtered
        _ins(_LD_W_ABS, 0, 0, 0),                       # seccomp_data.nr
        _ins(_JGE_K, 0, 1, X32_SYSCALL_BIT),
        _ins(_RET_K, 0, 0, eperm),                      # x32 ABI: refuse
        _ins(_JEQ_K, 0, 1, NR_CLONE3),
        _ins(_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),   # libc falls back to clone
    ]
    for nr in sorted(set(denied(kept_caps).values())):
        prog.append(_ins(_JEQ_K, 0, 1, nr))
        prog.append(_ins(_RET_K, 0, 0, eperm))
    if not kept_caps & (1 << CAPS["SYS_ADMIN"]):
        prog += [
            _ins(_JEQ_K, 0, 4, NR_CLONE),
            _ins(_LD_W_ABS, 0, 0, 16),                  # args[0], low 32 bits
            _ins(_JSET_K, 0, 1, CLONE_NS_FLAGS),
            _ins(_RET_K, 0, 0, eperm),
            _ins(_RET_K, 0, 0, RET_ALLOW),
        ]
    prog.append(_ins(_RET_K, 0, 0, RET_ALLOW))
    return b"".join(prog)


_X86_64 = platform.machine() == "x86_64"


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(kept_caps: int) -> bool:
    """Load the filter into this thread (inherited by execve). False when not x86_64."""
    if not _X86_64:
        return False
    return install_program(build(kept_caps))


def install_program(code: bytes) -> bool:
    """Load a compiled filter (``struct sock_filter`` bytes) into this thread."""
    if not _X86_64:
        return False
    from . import syscalls as sc
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _Fprog(len(code) // 8, ctypes.addressof(buf))
    sc.prctl(22, 2, ctypes.addressof(fprog))            # PR_SET_SECCOMP, MODE_FILTER
    return True
