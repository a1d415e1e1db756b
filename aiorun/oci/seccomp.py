"""An OCI ``linux.seccomp`` profile → a classic-BPF seccomp filter (x86_64), as runc builds
with libseccomp.

:func:`compile_profile` is pure (unit-tested instruction by instruction and, in the
integration tests, loaded into real containers). Semantics, following libseccomp:

- a syscall name this table does not know is skipped (runc ignores names libseccomp does not
  know); other architectures than x86_64 (and the x32 ABI) get ``KILL_PROCESS``, libseccomp's
  default bad-arch action, unless the profile lists them (then the default action);
- rules are tried in order; the first whose syscall and argument conditions all match gives
  the action; none matching gives ``defaultAction``;
- arguments are 64-bit: each condition compares the high and the low words.

Refused with ConfigError (named): ``SCMP_ACT_NOTIFY`` / ``listenerPath``, filter ``flags``,
unknown actions or operators, architectures other than x86_64/x86/x32.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from typing import Any

from .config import ConfigError
from .syscalls_x86_64 import NUMBERS

AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
ARCHES = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}

LD_ABS = 0x20                         # BPF_LD | BPF_W | BPF_ABS
JEQ, JGT, JGE = 0x15, 0x25, 0x35      # BPF_JMP | op | BPF_K
JA = 0x05
AND = 0x54                            # BPF_ALU | BPF_AND | BPF_K
RET = 0x06

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000


def action_value(action: Any, errno_ret: Any, where: str) -> int:
    base = {"SCMP_ACT_KILL": RET_KILL_THREAD, "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS, "SCMP_ACT_TRAP": RET_TRAP,
            "SCMP_ACT_ERRNO": RET_ERRNO, "SCMP_ACT_TRACE": RET_TRACE,
            "SCMP_ACT_LOG": RET_LOG, "SCMP_ACT_ALLOW": RET_ALLOW}
    if action == "SCMP_ACT_NOTIFY":
        raise ConfigError(f"{where}: SCMP_ACT_NOTIFY is not supported by aiorun-runtime")
    if action not in base:
        raise ConfigError(f"{where}: unknown seccomp action {action!r}")
    value = base[action]
    if action == "SCMP_ACT_ERRNO":
        value |= (errno.EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF
    elif action == "SCMP_ACT_TRACE":
        value |= (errno.EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF
    return value


class _Asm:
    """Instructions with symbolic forward jump targets, resolved by :meth:`code`."""

    def __init__(self) -> None:
        self.ins: list[list[Any]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int = 0, jt: Any = 0, jf: Any = 0) -> None:
        self.ins.append([code, jt, jf, k & 0xFFFFFFFF])

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def code(self) -> bytes:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.ins):
            def rel(t: Any) -> int:
                if isinstance(t, int):
                    return t
                off = self.labels[t] - (i + 1)
                if not 0 <= off <= 255:
                    raise ConfigError("linux.seccomp: a rule is too large to compile")
                return off
            out.append(struct.pack("HBBI", code, rel(jt), rel(jf), k))
        return b"".join(out)


def _arg_words(i: int) -> tuple[int, int]:
    """Offsets of args[i]'s low and high 32-bit words in struct seccomp_data."""
    lo = 16 + 8 * i
    return lo, lo + 4


def _condition(a: _Asm, c: dict[str, Any], ok: str, fail: str, where: str) -> None:
    idx = c.get("index")
    if not isinstance(idx, int) or not 0 <= idx <= 5:
        raise ConfigError(f"{where}.index: 0..5 expected")
    value = int(c.get("value") or 0) & 0xFFFFFFFFFFFFFFFF
    two = int(c.get("valueTwo") or 0) & 0xFFFFFFFFFFFFFFFF
    lo_off, hi_off = _arg_words(idx)
    v_hi, v_lo = value >> 32, value & 0xFFFFFFFF
    op = c.get("op")
    if op == "SCMP_CMP_EQ":
        a.op(LD_ABS, hi_off); a.op(JEQ, v_hi, 0, fail)
        a.op(LD_ABS, lo_off); a.op(JEQ, v_lo, ok, fail)
    elif op == "SCMP_CMP_NE":
        a.op(LD_ABS, hi_off); a.op(JEQ, v_hi, 0, ok)
        a.op(LD_ABS, lo_off); a.op(JEQ, v_lo, fail, ok)
    elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
        a.op(LD_ABS, hi_off); a.op(JGT, v_hi, ok, 0); a.op(JEQ, v_hi, 0, fail)
        a.op(LD_ABS, lo_off); a.op(JGT if op == "SCMP_CMP_GT" else JGE, v_lo, ok, fail)
    elif op in ("SCMP_CMP_LT", "SCMP_CMP_LE"):
        a.op(LD_ABS, hi_off); a.op(JGT, v_hi, fail, 0); a.op(JEQ, v_hi, 0, ok)
        a.op(LD_ABS, lo_off); a.op(JGE if op == "SCMP_CMP_LT" else JGT, v_lo, fail, ok)
    elif op == "SCMP_CMP_MASKED_EQ":
        m_hi, m_lo = value >> 32, value & 0xFFFFFFFF
        a.op(LD_ABS, hi_off); a.op(AND, m_hi); a.op(JEQ, two >> 32, 0, fail)
        a.op(LD_ABS, lo_off); a.op(AND, m_lo); a.op(JEQ, two & 0xFFFFFFFF, ok, fail)
    else:
        raise ConfigError(f"{where}.op: unknown operator {op!r}")


def compile_profile(prof: dict[str, Any]) -> bytes:
    """The filter program (``struct sock_filter`` array) for an OCI seccomp object."""
    if prof.get("listenerPath"):
        raise ConfigError("linux.seccomp.listenerPath: seccomp notify is not supported")
    if prof.get("flags"):
        raise ConfigError(f"linux.seccomp.flags: {prof['flags']} not supported")
    arches = set(prof.get("architectures") or [])
    if arches - ARCHES:
        raise ConfigError(f"linux.seccomp.architectures: {sorted(arches - ARCHES)} not "
                          "supported (x86_64, x86, x32)")
    default = action_value(prof.get("defaultAction"), prof.get("defaultErrnoRet"),
                           "linux.seccomp.defaultAction")
    a = _Asm()
    a.op(LD_ABS, 4)                                       # seccomp_data.arch
    a.op(JEQ, AUDIT_ARCH_X86_64, 1, 0)
    a.op(RET, default if arches - {"SCMP_ARCH_X86_64"} else RET_KILL_PROCESS)
    a.op(LD_ABS, 0)                                       # seccomp_data.nr
    a.op(JGE, X32_BIT, 0, 1)
    a.op(RET, default if "SCMP_ARCH_X32" in arches else RET_KILL_PROCESS)
    n = 0
    for i, rule in enumerate(prof.get("syscalls") or []):
        where = f"linux.seccomp.syscalls[{i}]"
        action = action_value(rule.get("action"), rule.get("errnoRet"), f"{where}.action")
        conds = rule.get("args") or []
        for name in rule.get("names") or ([rule["name"]] if rule.get("name") else []):
            nr = NUMBERS.get(name)
            if nr is None:
                continue                                  # unknown here: skipped, as runc
            n += 1
            nxt = f"next{n}"
            a.op(LD_ABS, 0)
            a.op(JEQ, nr, 0, nxt)
            for j, c in enumerate(conds):
                ok = f"c{n}_{j}"
                _condition(a, c, ok, nxt, f"{where}.args[{j}]")
                a.label(ok)
            a.op(RET, action)
            a.label(nxt)
    a.op(RET, default)
    return a.code()


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(code: bytes) -> None:
    """Load the program into this thread (inherited across execve). The caller holds
    CAP_SYS_ADMIN or has set no_new_privs."""
    from ..runtime import syscalls as sc
    if len(code) // 8 > 4096:
        raise ConfigError("linux.seccomp: the compiled filter exceeds 4096 instructions")
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _Fprog(len(code) // 8, ctypes.addressof(buf))
    sc.prctl(22, 2, ctypes.addressof(fprog))             # PR_SET_SECCOMP, MODE_FILTER
