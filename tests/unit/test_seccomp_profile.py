"""Docker seccomp profiles compiled to classic BPF (aiorun.runtime.seccomp_profile): a small
cBPF interpreter runs the program on system calls, table-driven."""

from __future__ import annotations

import errno
import json
import struct

import pytest

from aiorun.runtime import seccomp_profile as sp
from aiorun.runtime.caps import CAPS
from aiorun.runtime.syscall_table import X86_64 as NR

ARCH = sp.AUDIT_ARCH_X86_64


def run(prog: bytes, name: str | int, args: tuple[int, ...] = (), arch: int = ARCH) -> int:
    nr = NR[name] if isinstance(name, str) else name
    full = list(args) + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *full)
    insns = [struct.unpack("HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    a, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:                                  # ld [k]
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:                                # and #k
            a &= k
        elif code == 0x06:                                # ret #k
            return k
        elif code in (0x15, 0x25, 0x35, 0x45):
            ok = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if ok else jf
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def prof(default: str = "SCMP_ACT_ALLOW", *rules: dict, **extra) -> str:
    return json.dumps({"defaultAction": default, "syscalls": list(rules), **extra})


ALLOW, EPERM = sp.RET_ALLOW, sp.RET_ERRNO | errno.EPERM
ALL_CAPS = (1 << 41) - 1

ARGS_PROFILE = prof(
    "SCMP_ACT_ALLOW",
    {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
    {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]},
    {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
     "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
    {"names": ["read"], "action": "SCMP_ACT_KILL_PROCESS",
     "args": [{"index": 0, "value": 1 << 33, "op": "SCMP_CMP_GT"}]},
    {"names": ["write"], "action": "SCMP_ACT_TRAP",
     "args": [{"index": 2, "value": 10, "op": "SCMP_CMP_LT"},
              {"index": 0, "value": 2, "op": "SCMP_CMP_LE"}]},
    {"names": ["lseek"], "action": "SCMP_ACT_LOG",
     "args": [{"index": 1, "value": (5 << 32) | 7, "op": "SCMP_CMP_GE"}]},
)


@pytest.mark.parametrize("call,args,want", [
    ("chmod", (0, 0o777), sp.RET_ERRNO | 13),
    ("chmod", (0, 0o755), ALLOW),
    ("chmod", (0, (1 << 32) | 0o777), ALLOW),            # the high word counts too
    ("personality", (8,), ALLOW),
    ("personality", (0xFFFFFFFF,), EPERM),
    ("clone", (0x11,), EPERM),                            # no namespace flag: masked == 0
    ("clone", (0x10000000 | 0x11,), ALLOW),               # CLONE_NEWUSER
    ("read", (1 << 33,), ALLOW),
    ("read", ((1 << 33) + 1,), sp.RET_KILL_PROCESS),
    ("read", (1 << 34,), sp.RET_KILL_PROCESS),
    ("write", (1, 0, 9), sp.RET_TRAP),                    # both conditions hold
    ("write", (3, 0, 9), ALLOW),                          # fd > 2
    ("write", (1, 0, 10), ALLOW),                         # count not < 10
    ("lseek", (0, (5 << 32) | 7), sp.RET_LOG),
    ("lseek", (0, (5 << 32) | 6), ALLOW),
    ("lseek", (0, 6 << 32), sp.RET_LOG),
    ("lseek", (0, (4 << 32) | 9), ALLOW),
    ("getpid", (), ALLOW),
])
def test_arguments(call, args, want):
    assert run(sp.compile_profile(ARGS_PROFILE, ALL_CAPS, "6.1.0"), call, args) == want


def test_default_action_order_and_abi():
    p = sp.compile_profile(prof("SCMP_ACT_ERRNO",
                                {"names": ["getpid", "no_such_call_elsewhere"],
                                 "action": "SCMP_ACT_ALLOW"},
                                {"names": ["getpid"], "action": "SCMP_ACT_KILL"}),
                           ALL_CAPS, "6.1.0")
    assert run(p, "getpid") == ALLOW                      # the first matching rule decides
    assert run(p, "getppid") == EPERM                     # default (errno defaults to EPERM)
    assert run(p, 0x40000000 | 39) == EPERM               # x32 ABI
    assert run(p, "getpid", arch=0x40000003) == sp.RET_KILL_PROCESS    # i386
    p = sp.compile_profile(json.dumps({"defaultAction": "SCMP_ACT_ERRNO",
                                       "defaultErrnoRet": 38}), ALL_CAPS)
    assert run(p, "getpid") == sp.RET_ERRNO | 38


@pytest.mark.parametrize("rule_extra,caps,release,applies", [
    ({"includes": {"caps": ["CAP_SYS_ADMIN"]}}, ALL_CAPS, "6.1", True),
    ({"includes": {"caps": ["CAP_SYS_ADMIN"]}}, 0, "6.1", False),
    ({"excludes": {"caps": ["CAP_SYS_ADMIN"]}}, 0, "6.1", True),
    ({"excludes": {"caps": ["SYS_ADMIN"]}}, 1 << CAPS["SYS_ADMIN"], "6.1", False),
    ({"includes": {"arches": ["arm64"]}}, 0, "6.1", False),
    ({"includes": {"arches": ["amd64", "arm64"]}}, 0, "6.1", True),
    ({"excludes": {"arches": ["amd64"]}}, 0, "6.1", False),
    ({"includes": {"minKernel": "4.8"}}, 0, "6.1.0-13-amd64", True),
    ({"includes": {"minKernel": "6.2"}}, 0, "6.1.0-13-amd64", False),
])
def test_includes_excludes(rule_extra, caps, release, applies):
    p = sp.compile_profile(prof("SCMP_ACT_ALLOW", {"names": ["mkdir"],
                                                   "action": "SCMP_ACT_ERRNO", **rule_extra}),
                           caps, release)
    assert run(p, "mkdir") == (EPERM if applies else ALLOW)


@pytest.mark.parametrize("text,message", [
    ("nope", "not valid JSON"),
    ("[]", "must be a JSON object"),
    (prof("SCMP_ACT_BOGUS"), "unknown action 'SCMP_ACT_BOGUS'"),
    (prof("SCMP_ACT_ALLOW", {"names": ["x"], "action": "SCMP_ACT_NOTIFY"}),
     "SCMP_ACT_NOTIFY is not supported by aiorun"),
    (prof("SCMP_ACT_ALLOW", {"names": "mkdir", "action": "SCMP_ACT_ERRNO"}),
     "names must be an array"),
    (prof("SCMP_ACT_ALLOW", {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                             "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}),
     "invalid argument index: 6"),
    (prof("SCMP_ACT_ALLOW", {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}),
     "unknown comparison"),
    (prof("SCMP_ACT_ALLOW", {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                             "includes": {"caps": ["CAP_BOGUS"]}}), "unknown capability"),
    (prof("SCMP_ACT_ALLOW", architectures=["SCMP_ARCH_AARCH64"]),
     "does not cover this architecture"),
    (prof("SCMP_ACT_ERRNO", {"names": ["x"], "action": "SCMP_ACT_ERRNO", "errnoRet": -1}),
     "invalid errnoRet"),
])
def test_refused(text, message):
    with pytest.raises(sp.ProfileError, match=message):
        sp.compile_profile(text, ALL_CAPS, "6.1")
