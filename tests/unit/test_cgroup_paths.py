"""Pure cgroup layout logic: v1, v2 and hybrid hosts, nested daemons, limit files."""

from __future__ import annotations

import pytest

from aiorun.runtime.cgroups import (check_parent, limit_writes,
                                    missing_controllers, parse_layout, parse_oom_kills, plan)
from aiorun.runtime.spec import CgroupSpec

HYBRID_CG = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/3d62
2:cpu,cpuacct:/
1:freezer:/
0::/
"""
HYBRID_MI = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_CG = "0::/user.slice/daemon.service\n"
V2_MI = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_hybrid_layout_nests_under_own_cgroup():
    layout = parse_layout(HYBRID_CG, HYBRID_MI, ("hugetlb",))
    dirs = {d.controllers: d for d in plan(layout, "abc")}
    assert dirs[("memory",)].path == "/sys/fs/cgroup/memory/process_api/3d62/aiorun/abc"
    assert dirs[("memory",)].parent == "/sys/fs/cgroup/memory/process_api/3d62/aiorun"
    assert dirs[("cpu", "cpuacct")].path == "/sys/fs/cgroup/cpu,cpuacct/aiorun/abc"
    assert dirs[("pids",)].path == "/sys/fs/cgroup/pids/aiorun/abc"
    # systemd (named) is skipped; v2 with only hugetlb is not needed.
    assert all(d.version == 1 for d in dirs.values())
    assert len(dirs) == 4


def test_hybrid_v2_with_useful_controllers_is_joined():
    layout = parse_layout(HYBRID_CG, HYBRID_MI, ("memory", "io", "hugetlb"))
    v2 = [d for d in plan(layout, "abc") if d.version == 2]
    # memory is served by v1 already; io is not.
    assert len(v2) == 1 and v2[0].enable == ("io",)
    assert v2[0].path == "/sys/fs/cgroup/unified/aiorun/abc"


def test_pure_v2():
    layout = parse_layout(V2_CG, V2_MI, ("cpuset", "cpu", "io", "memory", "pids"))
    (d,) = plan(layout, "abc", "mine/sub")
    assert d.version == 2
    assert d.path == "/sys/fs/cgroup/user.slice/daemon.service/mine/sub/abc"
    assert d.own == "/sys/fs/cgroup/user.slice/daemon.service"
    assert set(d.enable) == {"cpu", "io", "memory", "pids"}
    writes = dict(limit_writes([d], CgroupSpec(memory=64 << 20, cpus=1.5, pids=100,
                                               cpu_shares=1024)))
    p = d.path + "/"
    assert writes[p + "memory.max"] == str(64 << 20)
    assert writes[p + "memory.swap.max"] == str(64 << 20)      # swap = 2x memory by default
    assert writes[p + "cpu.max"] == "150000 100000"
    assert writes[p + "pids.max"] == "100"
    assert writes[p + "cpu.weight"] == "39"


def test_v2_without_controllers_is_skipped():
    assert plan(parse_layout(V2_CG, V2_MI, ()), "abc") == []


def test_mount_of_a_subtree():
    # Inside a container the hierarchy is mounted from our own cgroup: root != "/".
    cg = "4:memory:/docker/xyz\n"
    mi = "35 31 0:32 /docker/xyz /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    (d,) = plan(parse_layout(cg, mi), "abc")
    assert d.path == "/sys/fs/cgroup/memory/aiorun/abc"


def test_v1_limit_files():
    layout = parse_layout(HYBRID_CG, HYBRID_MI)
    dirs = plan(layout, "abc")
    w = dict(limit_writes(dirs, CgroupSpec(memory=8 << 20, memory_swap=-1, cpus=0.5,
                                           cpu_shares=512, pids=10)))
    mem = "/sys/fs/cgroup/memory/process_api/3d62/aiorun/abc/"
    assert w[mem + "memory.limit_in_bytes"] == str(8 << 20)
    assert w[mem + "memory.memsw.limit_in_bytes"] == "-1"
    cpu = "/sys/fs/cgroup/cpu,cpuacct/aiorun/abc/"
    assert w[cpu + "cpu.cfs_quota_us"] == "50000" and w[cpu + "cpu.cfs_period_us"] == "100000"
    assert w[cpu + "cpu.shares"] == "512"
    assert w["/sys/fs/cgroup/pids/aiorun/abc/pids.max"] == "10"
    # memory limit first, then memsw (the kernel requires memsw >= limit)
    keys = [k for k, _ in limit_writes(dirs, CgroupSpec(memory=1 << 20))]
    assert keys.index(mem + "memory.limit_in_bytes") < \
        keys.index(mem + "memory.memsw.limit_in_bytes")
    assert limit_writes(dirs, CgroupSpec()) == []


def test_device_allow_list():
    mi = HYBRID_MI + "36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n"
    dirs = plan(parse_layout(HYBRID_CG + "5:devices:/\n", mi), "abc")
    w = limit_writes(dirs, CgroupSpec(), restrict_devices=True)
    base = "/sys/fs/cgroup/devices/aiorun/abc/"
    assert w[0] == (base + "devices.deny", "a")
    assert (base + "devices.allow", "c 1:3 rwm") in w
    assert (base + "devices.allow", "c 136:* rwm") in w
    assert limit_writes(dirs, CgroupSpec(), restrict_devices=False) == []


@pytest.mark.parametrize("bad", ["..", "a/../b", "./x"])
def test_bad_parent(bad):
    with pytest.raises(ValueError):
        check_parent(bad)


@pytest.mark.parametrize("bad", ["", "a/b", ".."])
def test_bad_id(bad):
    with pytest.raises(ValueError):
        plan(parse_layout(HYBRID_CG, HYBRID_MI), bad)


def test_oom_counter():
    assert parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n") == 2
    assert parse_oom_kills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n") == 1
    assert parse_oom_kills("") == 0


def test_missing_controllers():
    hybrid = plan(parse_layout(HYBRID_CG, HYBRID_MI), "abc")
    assert missing_controllers(hybrid, CgroupSpec(memory=1, cpus=1.0, pids=5)) == []
    only_mem = [d for d in hybrid if d.controllers == ("memory",)]
    assert missing_controllers(only_mem, CgroupSpec(memory=1, cpus=1.0, pids=5)) == \
        ["cpu", "pids"]
    v2 = plan(parse_layout(V2_CG, V2_MI, ("memory", "pids", "cpu")), "abc")
    v2[0].enable = ("pids",)            # what delegation actually allowed
    assert missing_controllers(v2, CgroupSpec(memory=1)) == ["memory"]
    assert missing_controllers(v2, CgroupSpec()) == []


@pytest.mark.parametrize("path, memory, pids", [
    # absolute: from each hierarchy's root (containerd: /<namespace>/<id>)
    ("/default/c1", "/sys/fs/cgroup/memory/default/c1", "/sys/fs/cgroup/pids/default/c1"),
    # relative: from the caller's own cgroup, as runc
    ("oci/c1", "/sys/fs/cgroup/memory/process_api/3d62/oci/c1", "/sys/fs/cgroup/pids/oci/c1"),
])
def test_oci_cgroups_path(path, memory, pids):
    from aiorun.runtime.cgroup_layout import plan_at
    dirs = {d.controllers: d for d in plan_at(parse_layout(HYBRID_CG, HYBRID_MI, ()), path)}
    assert dirs[("memory",)].path == memory and dirs[("pids",)].path == pids
    assert dirs[("memory",)].parent == memory.rsplit("/", 1)[0]
    assert len(dirs) == 4                 # the same hierarchies as the daemon's containers


@pytest.mark.parametrize("bad", ["", "/", "a/../b", "./a"])
def test_oci_cgroups_path_refused(bad):
    from aiorun.runtime.cgroup_layout import plan_at
    with pytest.raises(ValueError):
        plan_at(parse_layout(HYBRID_CG, HYBRID_MI, ()), bad)
