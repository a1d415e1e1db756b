"""The cgroup v2 device filter's program (aiorun.runtime.devicefilter.build), table-driven:
an interpreter for the few eBPF instructions it emits runs it on device accesses."""

from __future__ import annotations

import struct

import pytest

from aiorun.runtime import devicefilter as df
from aiorun.runtime.cgroup_layout import DEFAULT_DEVICES


def run(prog: bytes, kind: int, major: int, minor: int, access: int) -> int:
    """Execute the program on one ``bpf_cgroup_dev_ctx``."""
    ctx = {0: (access << 16) | kind, 4: major, 8: minor}
    regs = [0] * 11
    pc = 0
    insns = [struct.unpack("<BBhi", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    for _ in range(10_000):
        code, regs_b, off, imm = insns[pc]
        dst, src = regs_b & 0xF, regs_b >> 4
        pc += 1
        if code == df._LDXW:
            assert src == 1
            regs[dst] = ctx[off]
        elif code == df._MOV32_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == df._MOV64_K:
            regs[dst] = imm
        elif code == df._AND32_K:
            regs[dst] = regs[dst] & imm & 0xFFFFFFFF
        elif code == df._RSH32_K:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == df._JNE_K:
            if regs[dst] != imm:
                pc += off
        elif code == df._EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("no exit")


C, B = df.DEV_CHAR, df.DEV_BLOCK
R, W, M = df.ACC_READ, df.ACC_WRITE, df.ACC_MKNOD
PROG = df.build(list(DEFAULT_DEVICES) + ["c 10:229 r", "b 8:* rw"])


@pytest.mark.parametrize("kind,major,minor,access,allowed", [
    (C, 1, 3, R | W, 1),          # /dev/null
    (C, 1, 9, R, 1),              # /dev/urandom
    (C, 136, 4, R | W, 1),        # a pty
    (C, 5, 2, R | W | M, 1),      # /dev/ptmx
    (C, 10, 229, R, 1),           # --device /dev/fuse:r
    (C, 10, 229, W, 0),           # ...but not for writing
    (C, 10, 229, R | W, 0),
    (C, 10, 200, R | W, 1),       # /dev/net/tun (Docker's default list)
    (C, 4, 1, M, 1),              # "c *:* m": any char node may be made...
    (C, 4, 1, R, 0),              # ...not opened
    (B, 8, 0, R | W, 1),          # "b 8:* rw"
    (B, 8, 17, M, 1),             # "b *:* m"
    (B, 8, 17, M | R, 0),         # one rule must grant all: b *:* lacks r, b 8:* lacks m
    (B, 9, 0, R, 0),
    (C, 1, 3, R, 1),
])
def test_allow_list(kind, major, minor, access, allowed):
    assert run(PROG, kind, major, minor, access) == allowed


def test_any_type_rule_and_empty_list():
    assert run(df.build(["a *:* rwm"]), B, 1, 1, R | W | M) == 1
    assert run(df.build([]), C, 1, 3, R) == 0


@pytest.mark.parametrize("rule,parsed", [
    ("c 1:3 rwm", (C, 1, 3, R | W | M)), ("b *:* m", (B, -1, -1, M)),
    ("a 7:* r", (0, 7, -1, R)),
])
def test_parse_rule(rule, parsed):
    assert df.parse_rule(rule) == parsed


@pytest.mark.parametrize("rule", ["c 1:3", "x 1:3 r", "c 1 r", "c a:3 r", "c 1:3 rx"])
def test_parse_rule_refuses(rule):
    with pytest.raises(ValueError, match="invalid device rule"):
        df.parse_rule(rule)
