"""Docker seccomp profiles (``--security-opt seccomp=profile.json``) compiled to classic BPF.

Pure: :func:`compile_profile` takes the profile's JSON text and the container's capability
set and returns the filter program that :func:`aiorun.runtime.seccomp.install_program`
loads (x86_64 only, like aiorun's default filter). Docker's profile format (moby
``profiles/seccomp``):

* ``defaultAction`` (+ ``defaultErrnoRet``), ``syscalls``: a list of ``{"names": [...],
  "action": ..., "errnoRet": n, "args": [...], "includes": {...}, "excludes": {...}}``;
  ``name`` (one) is accepted too;
* actions ``SCMP_ACT_ALLOW``, ``SCMP_ACT_ERRNO``, ``SCMP_ACT_KILL`` (= thread),
  ``SCMP_ACT_KILL_THREAD``, ``SCMP_ACT_KILL_PROCESS``, ``SCMP_ACT_TRAP``, ``SCMP_ACT_LOG``;
  ``SCMP_ACT_TRACE`` and ``SCMP_ACT_NOTIFY`` need a tracer / an agent: refused;
* ``args``: ``{"index", "value", "valueTwo", "op"}`` with ``SCMP_CMP_EQ/NE/LT/LE/GT/GE/
  MASKED_EQ`` on the 64-bit argument, all of a rule's conditions must hold;
* ``includes``/``excludes``: ``caps`` (the container's capabilities), ``arches`` (this one is
  ``amd64``/``x86_64``), ``minKernel`` (compared with the running kernel's release);
* rules apply in order: the first whose name and conditions match decides, else the
  default action. Names unknown on x86_64 (other architectures' calls) are skipped, as
  libseccomp does.

Anything else malformed raises :class:`ProfileError` naming it.
"""

from __future__ import annotations

import errno as _errno
import json
import os
import struct
from typing import Any

from .caps import CAPS
from .syscall_table import X86_64

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

_LD_W_ABS = 0x20
_JEQ_K, _JGT_K, _JGE_K, _JSET_K = 0x15, 0x25, 0x35, 0x45
_AND_K = 0x54
_RET_K = 0x06
_OPS = ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT",
        "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ")
MY_ARCHES = ("amd64", "x86_64", "SCMP_ARCH_X86_64")


class ProfileError(ValueError):
    """The profile cannot be used; the message names what is wrong."""


def _action(name: Any, errno_ret: Any) -> int:
    if name == "SCMP_ACT_ALLOW":
        return RET_ALLOW
    if name == "SCMP_ACT_ERRNO":
        n = _errno.EPERM if errno_ret is None else errno_ret
        if not isinstance(n, int) or not 0 <= n < 4096:
            raise ProfileError(f"invalid errnoRet: {errno_ret!r}")
        return RET_ERRNO | n
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return RET_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return RET_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return RET_TRAP
    if name == "SCMP_ACT_LOG":
        return RET_LOG
    if name in ("SCMP_ACT_TRACE", "SCMP_ACT_NOTIFY"):
        raise ProfileError(f"action {name} is not supported by aiorun")
    raise ProfileError(f"unknown action {name!r}")


def _kernel_at_least(want: str, release: str) -> bool:
    def nums(v: str) -> tuple[int, ...]:
        out = []
        for part in v.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in part if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return nums(release) >= nums(want)


def _applies(rule: dict[str, Any], kept_caps: int, release: str) -> bool:
    def caps_of(names: Any) -> list[bool]:
        out = []
        for c in names or []:
            key = str(c).upper().removeprefix("CAP_")
            if key not in CAPS:
                raise ProfileError(f"unknown capability {c!r}")
            out.append(bool(kept_caps & (1 << CAPS[key])))
        return out
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if not isinstance(inc, dict) or not isinstance(exc, dict):
        raise ProfileError("includes/excludes must be objects")
    if inc.get("arches") and not any(a in MY_ARCHES for a in inc["arches"]):
        return False
    if inc.get("caps") and not all(caps_of(inc["caps"])):
        return False
    if inc.get("minKernel") and not _kernel_at_least(str(inc["minKernel"]), release):
        return False
    if exc.get("arches") and any(a in MY_ARCHES for a in exc["arches"]):
        return False
    if exc.get("caps") and any(caps_of(exc["caps"])):
        return False
    if exc.get("minKernel") and _kernel_at_least(str(exc["minKernel"]), release):
        return False
    return True


def _ins(code: int, jt: int, jf: int, k: int) -> tuple[int, int, int, int]:
    return (code, jt, jf, k & 0xFFFFFFFF)


# A condition is compiled with symbolic jump targets: "next" (the condition holds, go on)
# and "fail" (this rule does not match). They are resolved once the rule's length is known.
Sym = tuple[int, Any, Any, int]


def _condition(arg: dict[str, Any]) -> list[Sym]:
    index, op = arg.get("index"), arg.get("op")
    value, two = arg.get("value", 0), arg.get("valueTwo", 0)
    if not isinstance(index, int) or not 0 <= index < 6:
        raise ProfileError(f"invalid argument index: {index!r}")
    if op not in _OPS:
        raise ProfileError(f"unknown comparison {op!r}")
    for v in (value, two):
        if not isinstance(v, int) or v < 0 or v >= 1 << 64:
            raise ProfileError(f"invalid argument value: {v!r}")
    lo_off, hi_off = 16 + 8 * index, 20 + 8 * index
    vhi, vlo = value >> 32, value & 0xFFFFFFFF
    if op == "SCMP_CMP_MASKED_EQ":
        mhi, mlo, dhi, dlo = value >> 32, value & 0xFFFFFFFF, two >> 32, two & 0xFFFFFFFF
        return [(_LD_W_ABS, 0, 0, hi_off), (_AND_K, 0, 0, mhi), (_JEQ_K, 0, "fail", dhi),
                (_LD_W_ABS, 0, 0, lo_off), (_AND_K, 0, 0, mlo), (_JEQ_K, "next", "fail", dlo)]
    if op == "SCMP_CMP_EQ":
        return [(_LD_W_ABS, 0, 0, hi_off), (_JEQ_K, 0, "fail", vhi),
                (_LD_W_ABS, 0, 0, lo_off), (_JEQ_K, "next", "fail", vlo)]
    if op == "SCMP_CMP_NE":
        return [(_LD_W_ABS, 0, 0, hi_off), (_JEQ_K, 0, "next", vhi),
                (_LD_W_ABS, 0, 0, lo_off), (_JEQ_K, "fail", "next", vlo)]
    # unsigned 64-bit order: the high words decide unless equal, then the low words
    strict_hi = _JGT_K
    if op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
        lo_code = _JGT_K if op == "SCMP_CMP_GT" else _JGE_K
        return [(_LD_W_ABS, 0, 0, hi_off), (strict_hi, "next", 0, vhi),
                (_JEQ_K, 0, "fail", vhi),
                (_LD_W_ABS, 0, 0, lo_off), (lo_code, "next", "fail", vlo)]
    # LT / LE: the negation of GE / GT
    lo_code = _JGE_K if op == "SCMP_CMP_LT" else _JGT_K
    return [(_LD_W_ABS, 0, 0, hi_off), (strict_hi, "fail", 0, vhi),
            (_JEQ_K, 0, "next", vhi),
            (_LD_W_ABS, 0, 0, lo_off), (lo_code, "fail", "next", vlo)]


def _resolve(conds: list[list[Sym]], tail: int) -> list[tuple[int, int, int, int]]:
    """Symbolic targets → offsets. ``conds``: a rule's conditions in order, followed by
    ``tail`` instructions (its action). "next" goes to the instruction after the current
    condition (after the last one: the action), "fail" jumps past the tail."""
    flat = [(i, c) for i, cond in enumerate(conds) for c in cond]
    ends, at = [], -1
    for cond in conds:
        at += len(cond)
        ends.append(at)                   # index of each condition's last instruction
    n = len(flat)
    out = []
    for pos, (ci, (code, jt, jf, k)) in enumerate(flat):
        def target(t: Any) -> int:
            if t == "next":
                return ends[ci] - pos
            if t == "fail":
                return n - pos - 1 + tail
            return int(t)
        out.append(_ins(code, target(jt), target(jf), k))
    return out


def compile_profile(text: str, kept_caps: int, release: str | None = None) -> bytes:
    """The BPF program for the profile ``text`` (JSON), as ``struct sock_filter`` bytes."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise ProfileError(f"the profile is not valid JSON: {e}") from None
    if not isinstance(profile, dict):
        raise ProfileError("the profile must be a JSON object")
    release = release or os.uname().release
    default = _action(profile.get("defaultAction"), profile.get("defaultErrnoRet"))
    arches = profile.get("architectures") or []
    if arches and not any(a in MY_ARCHES for a in arches):
        raise ProfileError(f"the profile does not cover this architecture (x86_64): {arches}")
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list):
        raise ProfileError("syscalls must be an array")
    prog: list[tuple[int, int, int, int]] = [
        _ins(_LD_W_ABS, 0, 0, 4),                            # arch
        _ins(_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _ins(_RET_K, 0, 0, RET_KILL_PROCESS),                # another ABI: never
        _ins(_LD_W_ABS, 0, 0, 0),                            # nr
        _ins(_JGE_K, 0, 1, X32_SYSCALL_BIT),
        _ins(_RET_K, 0, 0, RET_ERRNO | _errno.EPERM),        # x32
    ]
    for rule in rules:
        if not isinstance(rule, dict):
            raise ProfileError("each syscalls entry must be an object")
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ProfileError("names must be an array of strings")
        action = _action(rule.get("action"), rule.get("errnoRet"))
        args = rule.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, dict) for a in args):
            raise ProfileError("args must be an array of objects")
        conds = [_condition(a) for a in args]
        if not _applies(rule, kept_caps, release):
            continue
        for name in names:
            nr = X86_64.get(name)
            if nr is None:
                continue                  # another architecture's call
            # A holds nr: test it; the conditions load the arguments, so a rule with any
            # ends in a reload of nr that only its failed conditions jump to
            body = _resolve(conds, 1) + [_ins(_RET_K, 0, 0, action)]
            prog.append(_ins(_JEQ_K, 0, len(body) + (1 if conds else 0), nr))
            prog += body
            if conds:
                prog.append(_ins(_LD_W_ABS, 0, 0, 0))
    prog.append(_ins(_RET_K, 0, 0, default))
    if len(prog) > 4096:
        raise ProfileError(f"the profile compiles to {len(prog)} BPF instructions, more than "
                           "the kernel's 4096")
    return b"".join(struct.pack("HBBI", *i) for i in prog)
