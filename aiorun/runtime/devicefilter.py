"""The device allow-list on cgroup v2: an eBPF ``BPF_PROG_TYPE_CGROUP_DEVICE`` program.

cgroup v1 has a ``devices`` controller (``devices.allow``); v2 has none: the kernel asks the
eBPF programs attached to the cgroup instead (as runc and crun do). :func:`build` turns the
v1-style rules (``"c 1:3 rwm"``, ``"c *:* m"``, the defaults plus each ``--device``'s) into
that program (pure, unit-tested); :func:`attach` loads it and attaches it to a v2 cgroup
directory (``bpf(2)``; the attachment lives as long as the cgroup, so the fds are closed at
once). The program allows an access when one rule matches: the device type (``a`` = any),
major and minor (``*`` = any) and every requested access (mknod, read, write) is in the
rule's; everything else is denied (EPERM).

Used by the spawner only (no heavy imports: ctypes, already loaded for seccomp).
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

# bpf_cgroup_dev_ctx: u32 access_type (access << 16 | type), u32 major, u32 minor
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_TYPES = {"a": 0, "b": DEV_BLOCK, "c": DEV_CHAR}
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}

BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
_NR_BPF = {"x86_64": 321, "aarch64": 280}

# opcodes
_LDXW = 0x61          # BPF_LDX | BPF_MEM | BPF_W
_MOV64_K = 0xB7       # BPF_ALU64 | BPF_MOV | BPF_K
_MOV32_X = 0xBC       # BPF_ALU | BPF_MOV | BPF_X
_AND32_K = 0x54       # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74       # BPF_ALU | BPF_RSH | BPF_K
_JNE_K = 0x55         # BPF_JMP | BPF_JNE | BPF_K
_EXIT = 0x95


def _ins(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def parse_rule(rule: str) -> tuple[int, int, int, int]:
    """``"c 10:229 rwm"`` → (type, major, minor, access bits); -1 for ``*``."""
    try:
        kind, numbers, access = rule.split()
        major_s, minor_s = numbers.split(":")
        bits = 0
        for ch in access:
            bits |= _ACCESS[ch]
        return (_TYPES[kind], -1 if major_s == "*" else int(major_s),
                -1 if minor_s == "*" else int(minor_s), bits)
    except (ValueError, KeyError):
        raise ValueError(f"invalid device rule: {rule!r}") from None


def build(rules: list[str] | tuple[str, ...]) -> bytes:
    """The program's instructions (``struct bpf_insn``, little-endian)."""
    prog = [
        _ins(_LDXW, 2, 1, 0),            # r2 = ctx->access_type
        _ins(_MOV32_X, 3, 2),            # r3 = r2
        _ins(_AND32_K, 2, imm=0xFFFF),   # r2 = type
        _ins(_RSH32_K, 3, imm=16),       # r3 = access
        _ins(_LDXW, 4, 1, 4),            # r4 = major
        _ins(_LDXW, 5, 1, 8),            # r5 = minor
    ]
    for rule in rules:
        kind, major, minor, access = parse_rule(rule)
        # each test (jne) jumps past the rest of this rule's block when it fails
        block: list[tuple[str, tuple]] = []
        if kind:
            block.append(("jne", (2, kind)))
        block.append(("ins", (_MOV32_X, 6, 3)))                    # r6 = access
        block.append(("ins", (_AND32_K, 6, 0, 0, ~access & 0x7)))  # requested beyond rule
        block.append(("jne", (6, 0)))
        if major >= 0:
            block.append(("jne", (4, major)))
        if minor >= 0:
            block.append(("jne", (5, minor)))
        block.append(("ins", (_MOV64_K, 0, 0, 0, 1)))
        block.append(("ins", (_EXIT,)))
        for i, (what, args) in enumerate(block):
            if what == "jne":
                dst, imm = args
                prog.append(_ins(_JNE_K, dst, 0, len(block) - i - 1, imm))
            else:
                prog.append(_ins(*args))
    prog += [_ins(_MOV64_K, 0, imm=0), _ins(_EXIT)]
    return b"".join(prog)


def _bpf(cmd: int, attr: bytes) -> int:
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise OSError(38, f"bpf(2) number unknown on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return int(ret)


def attach(cgroup_dir: str, rules: list[str] | tuple[str, ...]) -> None:
    """Load the program for ``rules`` and attach it to the v2 cgroup ``cgroup_dir``."""
    code = build(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license = ctypes.create_string_buffer(b"Apache-2.0")
    attr = struct.pack("<IIQQIIQII16s", BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                       ctypes.addressof(insns), ctypes.addressof(license), 0, 0, 0, 0, 0,
                       b"aiorun_devices")
    prog = _bpf(BPF_PROG_LOAD, attr.ljust(128, b"\0"))
    try:
        fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _bpf(BPF_PROG_ATTACH, struct.pack("<IIIII", fd, prog, BPF_CGROUP_DEVICE,
                                              BPF_F_ALLOW_MULTI, 0).ljust(32, b"\0"))
        finally:
            os.close(fd)
    finally:
        os.close(prog)
