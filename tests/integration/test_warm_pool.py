"""Warm sandboxes against the real kernel: a container started from the pool is
indistinguishable from a cold one (namespaces, cgroup view and limits, hostname, files,
PID 1, exit statuses), sees mounts made after the pool was filled, and the pool leaves
nothing behind (processes, cgroups) when the spawner stops or a member dies.

The pool only serves the default cgroup parent, so these tests use it (their container
ids are unique, and they check their own ids' and their spawner's pool cgroups only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from aiorun.runtime import Runtime, cgroups
from aiorun.runtime.spec import CgroupSpec, ContainerSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

if any(d.version != 1 for d in cgroups.plan(cgroups.read_layout(), "x", "")):
    pytest.skip("the warm pool needs cgroup v1 (v2 directories cannot be renamed)",
                allow_module_level=True)


@pytest.fixture
def rootfs(busybox_tar, tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    with tarfile.open(busybox_tar) as t:
        t.extractall(root)
    (root / "etc" / "hostname").write_text("fromimage\n")
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc" / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    return root


def pool_dirs(spawner_pid: int) -> list[Path]:
    out = []
    for d in cgroups.plan(cgroups.read_layout(), "x", ""):
        p = Path(d.parent)
        if p.is_dir():
            out += sorted(p.glob(f"pool-{spawner_pid}-*"))
    return out


def pool_pids(spawner_pid: int) -> set[int]:
    pids: set[int] = set()
    for p in pool_dirs(spawner_pid):
        try:
            pids |= {int(x) for x in (p / "cgroup.procs").read_text().split()}
        except OSError:
            pass
    return pids


async def wait_pool(rt: Runtime, n: int) -> None:
    """Until ``n`` members sit in their cgroups (W1 gone: one task each)."""
    with anyio.fail_after(20):
        while True:
            mem = [p for p in pool_dirs(rt.spawner_pid)
                   if "memory" in str(p) and (p / "cgroup.procs").exists()]
            if len(mem) >= n and all(len((p / "cgroup.procs").read_text().split()) == 1
                                     for p in mem):
                await anyio.sleep(0.05)   # W2 says "ready" right after its cgroup ns
                return
            await anyio.sleep(0.02)


@asynccontextmanager
async def runtime(paths, monkeypatch, size: int):
    monkeypatch.setenv("AIORUN_WARM_POOL", str(size))
    ids: list[str] = []
    async with Runtime(paths) as rt:
        spid = rt.spawner_pid
        try:
            yield rt, ids
        finally:
            with anyio.move_on_after(10, shield=True):
                for id in await rt.list():
                    await rt.delete(id, force=True)
                await rt.shutdown_spawner()
    for _ in range(300):
        try:
            os.kill(spid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    else:
        os.kill(spid, signal.SIGKILL)
        pytest.fail("spawner still running after shutdown")
    assert pool_dirs(spid) == [], "pool cgroups left behind"
    left = [d.path for id in ids for d in cgroups.plan(cgroups.read_layout(), id, "")
            if os.path.exists(d.path)]
    assert left == [], f"container cgroups left behind: {left}"


PROBE = ("echo pid=$$; hostname; cat /etc/hostname /etc/hosts /etc/resolv.conf; "
         "cat /proc/self/cgroup | sort; "
         "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
         "/sys/fs/cgroup/cpu/cpu.cfs_quota_us; "
         "(for i in 1 2 3 4 5 6 7 8; do sleep 1 & done) 2>/tmp/forks; sleep 1.5; "
         "sed 's/[0-9]*: //' /tmp/forks | sort -u; "
         "cat /sys/class/net/lo/operstate; ls /proc/self/ns | wc -l; id")


def spec_for(paths, rootfs, ids: list[str], args: list[str], **kw) -> ContainerSpec:
    cid = "pool-t-" + uuid.uuid4().hex[:10]
    ids.append(cid)
    sd = paths.containers / cid
    return ContainerSpec(id=cid, rootfs=str(rootfs), args=args, log_path=str(sd / "log.json"),
                         state_dir=str(sd),
                         cgroup=kw.pop("cgroup", CgroupSpec(memory=64 << 20, pids=6,
                                                            cpus=0.5)), **kw)


async def run_probe(rt: Runtime, spec: ContainerSpec) -> tuple[int, str, dict, dict]:
    """(exit code, output, {ns: differs from ours}, timings)."""
    pid = await rt.create(spec)
    ns = {n: os.readlink(f"/proc/{pid}/ns/{n}") != os.readlink(f"/proc/self/ns/{n}")
          for n in ("mnt", "uts", "ipc", "net", "pid", "cgroup")}
    await rt.start(spec.id)
    out = b"".join([d async for _s, d in rt.output(spec.id)]).decode()
    st = await rt.wait(spec.id)
    timings = rt.timings(spec.id)
    await rt.delete(spec.id)
    return st.exit_code, out, ns, timings


@pytest.mark.anyio
async def test_warm_container_is_like_a_cold_one(aiorun_paths, rootfs, monkeypatch):
    results = {}
    for size in (0, 2):
        async with runtime(aiorun_paths, monkeypatch, size) as (rt, ids):
            if size:
                await wait_pool(rt, size)
            spec = spec_for(aiorun_paths, rootfs, ids, ["sh", "-c", PROBE], hostname="boxy")
            results[size] = await run_probe(rt, spec)
    (c_code, c_out, c_ns, c_t), (w_code, w_out, w_ns, w_t) = results[0], results[2]
    assert "create.claimed" in w_t and "create.claimed" not in c_t, (c_t, w_t)
    assert c_ns == w_ns == {n: True for n in c_ns}
    assert (w_code, w_out) == (c_code, c_out)
    lines = w_out.splitlines()
    assert lines[:5] == ["pid=1", "boxy", "fromimage", "127.0.0.1 localhost",
                         "nameserver 192.0.2.53"]
    assert all(x.endswith(":/") for x in lines[5:14] if ":" in x), w_out   # cgroup ns root
    assert str(64 << 20) in lines and "6" in lines and "50000" in lines
    assert any("can't fork" in x or "Resource temporarily" in x for x in lines), w_out


@pytest.mark.anyio
async def test_pool_refills_sees_new_mounts_and_survives_a_dead_member(
        aiorun_paths, rootfs, tmp_path, monkeypatch):
    async with runtime(aiorun_paths, monkeypatch, 2) as (rt, ids):
        await wait_pool(rt, 2)
        # a rootfs mounted after the pool was filled (the daemon's overlay, in real life)
        late = tmp_path / "late"
        late.mkdir()
        subprocess.run(["mount", "--bind", str(rootfs), str(late)], check=True)
        try:
            for _ in range(3):        # two warm, then (maybe) cold, then warm again
                code, out, ns, t = await run_probe(
                    rt, spec_for(aiorun_paths, late, ids, ["sh", "-c", "echo $$; cat /etc/hostname"]))
                assert (code, out) == (0, "1\nfromimage\n")
            await wait_pool(rt, 2)
            code, out, ns, t = await run_probe(
                rt, spec_for(aiorun_paths, late, ids, ["true"]))
            assert code == 0 and "create.claimed" in t
        finally:
            subprocess.run(["umount", "-l", str(late)], check=False)
        # a member killed behind the spawner's back is dropped and replaced
        await wait_pool(rt, 2)
        victims = pool_pids(rt.spawner_pid)
        assert len(victims) == 2
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(20):
            while pool_pids(rt.spawner_pid) & victims or \
                    len(pool_pids(rt.spawner_pid)) < 2:
                await anyio.sleep(0.05)
        await wait_pool(rt, 2)
        code, out, ns, t = await run_probe(rt, spec_for(aiorun_paths, rootfs, ids, ["true"]))
        assert code == 0 and "create.claimed" in t
        # ineligible specs take the cold path and leave the pool alone
        code, out, ns, t = await run_probe(
            rt, spec_for(aiorun_paths, rootfs, ids, ["true"], pid_host=True))
        assert code == 0 and "create.claimed" not in t
        assert await rt.list() == []          # pool members are no processes of ours
        members = pool_pids(rt.spawner_pid)
    for pid in members:                       # drained with the spawner
        assert not os.path.exists(f"/proc/{pid}"), pid


@pytest.mark.anyio
async def test_stale_pool_cgroups_of_a_dead_spawner_are_removed(aiorun_paths, monkeypatch):
    dead = 1
    while True:                               # a pid nobody has
        dead = int.from_bytes(os.urandom(3), "big") % 4_000_000 + 300_000
        if not os.path.exists(f"/proc/{dead}"):
            break
    stale = [Path(d.parent) / f"pool-{dead}-0"
             for d in cgroups.plan(cgroups.read_layout(), "x", "")]
    made = [p.parent for p in stale if not p.parent.exists()]
    for p in stale:
        p.mkdir(parents=True)
    try:
        async with runtime(aiorun_paths, monkeypatch, 1) as (rt, ids):
            assert not any(p.exists() for p in stale)
    finally:
        for p in stale + made:
            try:
                p.rmdir()
            except OSError:
                pass                          # gone already, or another user's now
