"""The ``*Limit`` fields of ``/info`` come from the runtime's cgroup layout (issue 11, item
10): true only where a controller would enforce the limit. Table-driven over layouts; the
no-cgroup daemon is tests/integration/test_no_cgroups.py."""

from __future__ import annotations

import pytest

from aiorun.runtime.cgroup_layout import Hierarchy
from aiorun.runtime.cgroup_support import FIELDS, limit_support

V1 = "/sys/fs/cgroup"
OWN = "/system.slice/aiorun.service"


def v1(*ctrls: str) -> Hierarchy:
    return Hierarchy(1, ctrls, f"{V1}/{','.join(ctrls)}", OWN)


def v2(*ctrls: str, own: str = OWN) -> Hierarchy:
    return Hierarchy(2, ctrls, "/sys/fs/cgroup", own)


HYBRID = [v1("memory"), v1("cpu", "cpuacct"), v1("pids"), v1("freezer"),
          v2("hugetlb")]
HYBRID_FILES = {f"{V1}/memory{OWN}/memory.memsw.limit_in_bytes",
                f"{V1}/cpu,cpuacct{OWN}/cpu.cfs_quota_us"}
V2_OWN = f"/sys/fs/cgroup{OWN}"

CASES = [
    # (name, layout, files that exist, file contents, fields expected true)
    ("no cgroups at all", [], set(), {}, set()),
    ("v1 hybrid, swap accounting on", HYBRID, HYBRID_FILES, {},
     {"MemoryLimit", "SwapLimit", "CpuCfsPeriod", "CpuCfsQuota", "CPUShares", "PidsLimit"}),
    ("v1 hybrid, swap accounting off", HYBRID,
     {f"{V1}/cpu,cpuacct{OWN}/cpu.cfs_quota_us"}, {},
     {"MemoryLimit", "CpuCfsPeriod", "CpuCfsQuota", "CPUShares", "PidsLimit"}),
    ("v1 kernel without CFS bandwidth", [v1("cpu", "cpuacct")], set(), {}, {"CPUShares"}),
    ("v1 with only freezer mounted", [v1("freezer")], set(), {}, set()),
    ("v2, controllers delegated below the daemon", [v2("memory", "cpu", "pids", "io")],
     {f"{V2_OWN}/cgroup.type", f"{V2_OWN}/memory.swap.max"},
     {f"{V2_OWN}/cgroup.subtree_control": "memory cpu pids io\n"},
     {"MemoryLimit", "SwapLimit", "CpuCfsPeriod", "CpuCfsQuota", "CPUShares", "PidsLimit"}),
    ("v2, non-root cgroup with processes: nothing can be delegated",
     [v2("memory", "cpu", "pids")], {f"{V2_OWN}/cgroup.type"}, {}, set()),
    ("v2, only pids delegated", [v2("memory", "cpu", "pids")],
     {f"{V2_OWN}/cgroup.type"}, {f"{V2_OWN}/cgroup.subtree_control": "pids"}, {"PidsLimit"}),
    ("v2 root cgroup may always delegate", [v2("memory", "cpu", "pids", own="/")],
     {"/sys/fs/cgroup/aiorun/memory.swap.max"}, {},
     {"MemoryLimit", "SwapLimit", "CpuCfsPeriod", "CpuCfsQuota", "CPUShares", "PidsLimit"}),
    ("hybrid with only hugetlb on v2", [v2("hugetlb")], set(), {}, set()),
]


@pytest.mark.parametrize("name,layout,files,contents,want", CASES, ids=[c[0] for c in CASES])
def test_limit_support(name, layout, files, contents, want):
    got = limit_support(layout, exists=lambda p: p in files or p in contents,
                        read=lambda p: contents.get(p, ""))
    assert set(got) == set(FIELDS)
    assert {k for k, v in got.items() if v} == want
    assert not got["CPUSet"] and not got["OomKillDisable"]    # not implemented: refused
