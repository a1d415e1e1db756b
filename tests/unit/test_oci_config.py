"""config.json → Plan (aiorun.oci.config) and OCI seccomp profiles → BPF (the daemon's
compiler, aiorun.runtime.seccomp_profile, reached through the plan),
table-driven. The seccomp programs are run through a small classic-BPF interpreter here, so
each case checks what the kernel would decide, not the instruction bytes."""

from __future__ import annotations

import copy
import errno
import resource
import struct

import pytest

from aiorun.oci.config import ConfigError, plan_from
from aiorun.runtime.seccomp_profile import RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_LOG
from aiorun.oci.spec import default_spec
from aiorun.runtime.syscall_table import X86_64 as NUMBERS


def compile_profile(prof):
    plan = plan_from(cfg(linux__seccomp=prof), "/b")
    assert plan.seccomp is not None
    return plan.seccomp

BASE = default_spec()


def cfg(**changes):
    """The default spec with dotted-path changes (value None deletes the key)."""
    c = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split("__")
        d = c
        for p in parents:
            d = d.setdefault(p, {})
        if value is None:
            d.pop(last, None)
        else:
            d[last] = value
    return c


def test_default_spec_plans():
    p = plan_from(cfg(), "/b")
    assert p.rootfs == "/b/rootfs" and p.readonly_rootfs
    assert p.args == ["sh"] and p.terminal and p.cwd == "/"
    assert p.namespaces == {"pid": "", "network": "", "ipc": "", "uts": "", "mount": "",
                            "cgroup": ""}
    assert p.mounts == []                  # all standard: made by the runtime itself
    assert p.sys_readonly
    assert p.rlimits == [(resource.RLIMIT_NOFILE, 1024, 1024)]
    assert p.capabilities["bounding"] == ["CAP_AUDIT_WRITE", "CAP_KILL",
                                          "CAP_NET_BIND_SERVICE"]
    assert p.device_rules[0] == ("deny", "a")
    assert ("allow", "c 1:3 rwm") in p.device_rules      # runc's standard devices follow
    assert p.no_new_privileges and p.hostname == "aiorun"


@pytest.mark.parametrize("changes, field, expected", [
    ({"process__user": {"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 0o27}},
     "additional_gids", [5, 6]),
    ({"process__oomScoreAdj": 500}, "oom_score_adj", 500),
    ({"domainname": "example.org"}, "domainname", "example.org"),
    ({"linux__sysctl": {"net.ipv4.ip_forward": "1"}}, "sysctl", {"net.ipv4.ip_forward": "1"}),
    ({"linux__cgroupsPath": "/oci/t1"}, "cgroups_path", "/oci/t1"),
    ({"mounts": [{"destination": "/data", "type": "bind", "source": "/srv",
                  "options": ["rbind", "ro"]}]},
     "mounts", [{"destination": "/data", "type": "bind", "source": "/srv",
                 "options": ["rbind", "ro"], "readonly": True}]),
    ({"mounts": [{"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "size=1m"]}]},
     "mounts", [{"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "size=1m"], "readonly": False}]),
    ({"hostname": None, "linux__namespaces": [{"type": "mount"},
                                              {"type": "network", "path": "/run/netns/x"}]},
     "namespaces", {"mount": "", "network": "/run/netns/x"}),
    ({"linux__resources": {"memory": {"limit": 64 << 20, "swap": 128 << 20},
                           "cpu": {"quota": 50000, "period": 100000, "shares": 512},
                           "pids": {"limit": 64}}},
     "resources", None),
    ({"linux__resources": {"devices": [{"allow": False, "access": "rwm"},
                                       {"allow": True, "type": "c", "major": 1, "minor": 3,
                                        "access": "rw"}]}},
     "device_rules", [("deny", "a"), ("allow", "c 1:3 rw"), ("allow", "c *:* m")]),
    ({"linux__devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]},
     "devices", [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                  "mode": 0o666, "uid": 0, "gid": 0}]),
    ({"hooks": {"prestart": [{"path": "/bin/true", "args": ["true", "x"], "timeout": 2}],
                "somethingNew": [{"path": "/x"}]}},
     "hooks", None),
    ({"whateverNewProperty": {"x": 1}, "linux__newThing": 1}, "hostname", "aiorun"),
])
def test_plan_fields(changes, field, expected):
    p = plan_from(cfg(**changes), "/b")
    if field == "resources":
        r = p.resources
        assert (r.memory, r.memory_swap, r.cpus, r.cpu_shares, r.pids) == \
            (64 << 20, 128 << 20, 0.5, 512, 64)
    elif field == "hooks":
        assert list(p.hooks) == ["prestart"]
        assert p.hooks["prestart"][0].args == ["true", "x"]
    elif field == "device_rules":
        assert p.device_rules[:3] == expected
    else:
        assert getattr(p, field) == expected


@pytest.mark.parametrize("changes, message", [
    ({"ociVersion": "2.0.0"}, "ociVersion"),
    ({"ociVersion": None}, "ociVersion"),
    ({"root": None}, "root.path"),
    ({"process": None}, "process: missing"),
    ({"process__args": []}, "process.args"),
    ({"process__args": ["a", 1]}, "process.args"),
    ({"process__cwd": "relative"}, "process.cwd"),
    ({"process__user": {"uid": "0"}}, "process.user.uid"),
    ({"process__rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]},
     "process.rlimits[0].type"),
    ({"process__capabilities": {"bounding": ["NET_ADMIN"]}}, "process.capabilities.bounding"),
    ({"process__ioPriority": {"class": "IOPRIO_CLASS_RT"}}, "process.ioPriority"),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "bogus"}]},
     "linux.namespaces[1].type"),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "user"}]}, "user namespace"),
    ({"linux__namespaces": [{"type": "pid"}]}, "mount namespace is required"),
    ({"linux__namespaces": [{"type": "mount", "path": "/proc/1/ns/mnt"}]},
     "joining a mount namespace"),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "mount"}]}, "listed twice"),
    ({"linux__uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
     "linux.uidMappings"),
    ({"linux__intelRdt": {"closID": "x"}}, "linux.intelRdt"),
    ({"linux__resources": {"blockIO": {"weight": 10}}}, "linux.resources.blockIO"),
    ({"linux__resources": {"cpu": {"cpus": "0-1"}}}, "linux.resources.cpu.cpus"),
    ({"linux__resources": {"devices": [{"allow": True, "access": "rwx"}]}},
     "linux.resources.devices[0].access"),
    ({"linux__cgroupsPath": "system.slice:aiorun:x"}, "systemd slices"),
    ({"linux__cgroupsPath": "/a/../b"}, "linux.cgroupsPath"),
    ({"linux__rootfsPropagation": "shared"}, "linux.rootfsPropagation"),
    ({"linux__sysctl": {"../x": "1"}}, "linux.sysctl"),
    ({"linux__devices": [{"path": "/etc/x", "type": "c"}]}, "linux.devices[0].path"),
    ({"mounts": [{"destination": "data", "type": "tmpfs"}]}, "mounts[0].destination"),
    ({"mounts": [{"destination": "/d", "type": "bind", "source": "rel"}]},
     "absolute source"),
    ({"mounts": [{"destination": "/d", "type": "tmpfs", "options": ["rshared"]}]},
     "option 'rshared'"),
    ({"hooks": {"poststart": [{"path": "relative"}]}}, "hooks.poststart[0].path"),
    ({"hostname": "x", "linux__namespaces": [{"type": "mount"}]}, "uts namespace"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}, "SCMP_ACT_NOTIFY"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                         "architectures": ["SCMP_ARCH_AARCH64"]}}, "architectures"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["X"]}},
     "linux.seccomp.flags"),
    ({"linux__seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                         "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                       "args": [{"index": 0, "value": 1,
                                                 "op": "SCMP_CMP_BOGUS"}]}]}},
     "linux.seccomp: unknown comparison 'SCMP_CMP_BOGUS'"),
])
def test_refused(changes, message):
    with pytest.raises(ConfigError) as e:
        plan_from(cfg(**changes), "/b")
    assert message in str(e.value)


# --- seccomp: compile, then run the program as the kernel would --------------------------------

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003


def run_bpf(code: bytes, nr: int, args=(0,) * 6, arch=AUDIT_ARCH_X86_64) -> int:
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    prog = [struct.unpack("HBBI", code[i:i + 8]) for i in range(0, len(code), 8)]
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = prog[pc]
        pc += 1
        if op == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif op == 0x54:
            acc &= k
        elif op in (0x15, 0x25, 0x35):
            hit = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k}[op]
            pc += jt if hit else jf
        elif op == 0x05:
            pc += k
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


EPERM = RET_ERRNO | errno.EPERM
PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "architectures": ["SCMP_ARCH_X86_64"],
    "syscalls": [
        {"names": ["read", "write", "exit_group", "not_a_syscall_here"],
         "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x20008, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                   "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EAFNOSUPPORT,
         "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mmap"], "action": "SCMP_ACT_LOG",
         "args": [{"index": 1, "value": 1 << 33, "op": "SCMP_CMP_GE"}]},
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 1, "value": 1 << 33, "op": "SCMP_CMP_LT"}]},
        {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_NE"},
                  {"index": 0, "value": 1, "op": "SCMP_CMP_GT"}]},
        {"names": ["tgkill"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 2, "value": 15, "op": "SCMP_CMP_LE"}]},
    ],
}


@pytest.mark.parametrize("name, args, expected", [
    ("read", (), RET_ALLOW),
    ("write", (), RET_ALLOW),
    ("openat", (), EPERM),                              # default action
    ("personality", (0x20008,), RET_ALLOW),
    ("personality", (0xFFFFFFFF,), EPERM),
    ("personality", (0x20008 | (1 << 32),), EPERM),     # high word differs
    ("clone", (0x11,), RET_ALLOW),                      # SIGCHLD|..., no namespace flags
    ("clone", (0x40000000,), EPERM),                    # CLONE_NEWNET
    ("socket", (40,), RET_ERRNO | errno.EAFNOSUPPORT),  # AF_VSOCK: first rule
    ("socket", (2,), RET_ALLOW),                        # second rule
    ("mmap", (0, 1 << 34), RET_LOG),
    ("mmap", (0, (1 << 33) - 1), RET_ALLOW),
    ("mmap", (0, 1 << 33), RET_LOG),
    ("kill", (5, 15), RET_ALLOW),
    ("kill", (5, 9), EPERM),                            # NE fails
    ("kill", (1, 15), EPERM),                           # GT fails
    ("tgkill", (0, 0, 15), RET_ALLOW),
    ("tgkill", (0, 0, 16), EPERM),
])
def test_seccomp_decisions(name, args, expected):
    assert run_bpf(compile_profile(PROFILE), NUMBERS[name], args) == expected


def test_seccomp_architectures():
    """Only x86_64 calls pass the arch check (another ABI is killed, as libseccomp's default
    for an arch the filter does not cover); the x32 ABI is refused with EPERM."""
    code = compile_profile(PROFILE)
    assert run_bpf(code, 3, arch=AUDIT_ARCH_I386) == RET_KILL_PROCESS
    assert run_bpf(code, 0x40000000 | 1) == EPERM


def test_seccomp_default_errno_ret():
    code = compile_profile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})
    assert run_bpf(code, NUMBERS["read"]) == RET_ERRNO | 38
