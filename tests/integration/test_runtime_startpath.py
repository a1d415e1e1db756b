"""The start path's concurrency and ordering (spawner answers creates/starts as their
children get there; cgroup join overlapping the rootfs set-up), on the real kernel."""

from __future__ import annotations

import anyio
import pytest

from aiorun.runtime import ExecFailed
from aiorun.runtime.spec import MountSpec
from test_runtime import cg_parent, guard, make_spec, rootfs, run, runtime  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.mark.anyio
async def test_pid1_is_in_its_cgroup_namespace_and_spec_mounts_under_cgroupfs_win(
        aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent,
                         ["sh", "-c", "grep -c ':/$' /proc/self/cgroup; "
                                      "grep -vc ':/$' /proc/self/cgroup; "
                                      "ls /sys/fs/cgroup/memory | wc -l"],
                         mounts=[MountSpec(destination="/sys/fs/cgroup/memory",
                                           type="tmpfs")])
        status, out = await run(rt, spec)
        assert status.exit_code == 0, out
        in_root, elsewhere, memory_entries = out.decode().split()
        assert int(in_root) >= 2          # the joined hierarchies show "/" (cgroupns root)
        assert memory_entries == "0"      # the spec's tmpfs is on top of the cgroup mount
        assert rt.timings(spec.id) == {}  # forgotten with delete


@pytest.mark.anyio
async def test_many_creates_in_flight_with_failures_mixed_in(aiorun_paths, rootfs, cg_parent,
                                                             guard, tmp_path):
    """Good, bad-mount and not-found containers created and started at once on one
    connection: each gets its own answer, quick exits answer start before their exit,
    nothing is left behind (guard checks mounts, spawner; cg_parent checks cgroups)."""
    async with runtime(aiorun_paths, guard) as rt:
        kinds = ["ok", "badmount", "notfound", "ok", "ok", "badmount", "notfound", "ok"] * 3
        results: dict[str, str] = {}

        async def one(i: int, kind: str) -> None:
            mounts = []
            args = ["true"] if kind == "ok" else ["nope-not-here"]
            if kind == "badmount":
                args = ["true"]
                mounts = [MountSpec(destination="/x", source=str(tmp_path / "missing"))]
            spec = make_spec(aiorun_paths, rootfs, cg_parent, args, mounts=mounts,
                             id=f"c{i}-{kind}")
            try:
                await rt.create(spec)
            except Exception as e:
                results[spec.id] = f"create: {type(e).__name__}"
                return
            t = rt.timings(spec.id)
            assert t["create.rootfs"] >= 0 and t["create.cgroup_join"] >= 0, t
            try:
                await rt.start(spec.id)
                results[spec.id] = "started"
            except ExecFailed as e:
                results[spec.id] = f"start: {e.exit_code}"
            status = await rt.wait(spec.id)
            results[spec.id] += f" exit {status.exit_code}"
            await rt.delete(spec.id)

        async with anyio.create_task_group() as tg:
            for i, kind in enumerate(kinds):
                tg.start_soon(one, i, kind)
        for cid, res in results.items():
            kind = cid.split("-")[1]
            expect = {"ok": "started exit 0", "badmount": "create: InvalidArgument",
                      "notfound": "start: 127 exit 127"}[kind]
            if kind == "badmount":
                assert res.startswith("create: "), (cid, res)
            else:
                assert res == expect, (cid, res)
        assert len(results) == len(kinds)
        assert list(await rt.list()) == []
