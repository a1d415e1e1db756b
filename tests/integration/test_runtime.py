"""The runtime against the real kernel: namespaces, rootfs, cgroups, caps, exec, tty, exit.

Each test uses its own cgroup parent (``aiorun-rt-<hex>``) so concurrent test runs of other
areas cannot confuse the leak checks, and shuts its spawner down (killing it by pid if the
test failed half-way).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from aiorun.runtime import ExecFailed, Runtime
from aiorun.runtime import cgroups
from aiorun.runtime.caps import DOCKER_DEFAULT, mask_of
from aiorun.runtime.spec import CgroupSpec, ContainerSpec, ExecSpec, MountSpec, SecuritySpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def rootfs(busybox_tar, tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    with tarfile.open(busybox_tar) as t:
        t.extractall(root)
    yield root
    # tmp_path removal follows no symlinks; nothing is mounted here after a clean test.


@pytest.fixture
def cg_parent():
    parent = f"aiorun-rt-{uuid.uuid4().hex[:8]}"
    yield parent
    leftovers = [d.parent for d in cgroups.plan(cgroups.read_layout(), "x", parent)
                 if os.path.exists(d.parent)]
    for p in leftovers:                      # clean up, then fail the test
        for sub in sorted(Path(p).glob("*/"), reverse=True):
            if sub.is_dir() and not sub.name.startswith(("cgroup.", "memory.")):
                try:
                    os.rmdir(sub)
                except OSError:
                    pass
        try:
            os.rmdir(p)
        except OSError:
            pass
    assert not leftovers, f"cgroups left behind: {leftovers}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _our_mounts(*roots) -> list[str]:
    keys = [str(r) for r in roots]
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if any(k in line for k in keys)]


@pytest.fixture
def guard(aiorun_paths, cg_parent, tmp_path):
    """Yields a list the test appends spawner pids to; afterwards fails the test (after
    cleaning up) if a spawner, a mount under the test's roots, or a cgroup is left.

    (conftest's host_state also compares links and nft tables, which other areas' tests
    running at the same time change; the runtime touches neither, so only mounts are
    compared here, restricted to the test's own roots.)"""
    pids: list[int] = []
    yield pids
    for _ in range(200):
        if not any(_alive(p) for p in pids):
            break
        import time
        time.sleep(0.01)
    alive = [p for p in pids if _alive(p)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    mounts = _our_mounts(tmp_path, aiorun_paths.run, aiorun_paths.root)
    for line in mounts:
        subprocess.run(["umount", "-l", line.split()[4]], check=False)
    assert not alive, f"spawner still running after the test: {alive}"
    assert not mounts, f"mounts left behind: {mounts}"


@asynccontextmanager
async def runtime(paths, guard):
    async with Runtime(paths) as rt:
        guard.append(rt.spawner_pid)
        try:
            yield rt
        finally:
            with anyio.move_on_after(5, shield=True):
                for id in await rt.list():
                    await rt.delete(id, force=True)
                await rt.shutdown_spawner()


def make_spec(paths, rootfs, cg_parent, args, **kw) -> ContainerSpec:
    cid = kw.pop("id", uuid.uuid4().hex[:12])
    sd = paths.containers / cid
    return ContainerSpec(id=cid, rootfs=str(rootfs), args=args, log_path=str(sd / "log.json"),
                         state_dir=str(sd), cgroup=kw.pop("cgroup", CgroupSpec(parent=cg_parent)),
                         **kw)


async def run(rt, spec):
    """create + start + collect output + wait + delete → (status, stdout+stderr bytes)."""
    await rt.create(spec)
    try:
        await rt.start(spec.id)
    except ExecFailed:
        pass
    out = b"".join([d async for _s, d in rt.output(spec.id)])
    status = await rt.wait(spec.id)
    await rt.delete(spec.id)
    return status, out


@pytest.mark.anyio
async def test_echo_logs_and_exit_codes(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent, ["echo", "hello"])
        st, out = await run(rt, spec)
        assert (st.exit_code, out) == (0, b"hello\n")
        import json
        lines = [json.loads(x) for x in Path(spec.log_path).read_text().splitlines()]
        assert lines[0]["log"] == "hello\n" and lines[0]["stream"] == "stdout"
        assert lines[0]["time"].endswith("Z") and "T" in lines[0]["time"]
        exit_json = json.loads((Path(spec.state_dir) / "exit.json").read_text())
        assert exit_json["exit_code"] == 0

        st, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent,
                                          ["sh", "-c", "echo err >&2; exit 3"]))
        assert (st.exit_code, out) == (3, b"err\n")
        # SIGPIPE is default again in the container (Python's SIG_IGN must not leak)
        st, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent,
                                          ["sh", "-c", "yes | head -n 1"]))
        assert (st.exit_code, out) == (0, b"y\n")

        spec = make_spec(aiorun_paths, rootfs, cg_parent, ["/nonexistent"])
        await rt.create(spec)
        with pytest.raises(ExecFailed) as ei:
            await rt.start(spec.id)
        assert ei.value.exit_code == 127 and '"/nonexistent"' in ei.value.message
        st = await rt.wait(spec.id)
        assert st.exit_code == 127 and st.error
        await rt.delete(spec.id)

        spec = make_spec(aiorun_paths, rootfs, cg_parent, ["nosuchcmd"])
        await rt.create(spec)
        with pytest.raises(ExecFailed) as ei:
            await rt.start(spec.id)
        assert ei.value.message == 'exec: "nosuchcmd": executable file not found in $PATH'
        await rt.wait(spec.id)
        await rt.delete(spec.id)

        st, _ = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent, ["/etc/passwd"]))
        assert st.exit_code == 126


@pytest.mark.anyio
async def test_namespaces_hostname_pid1_user_cwd(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent,
                         ["sh", "-c", "echo $$; hostname; id -u; pwd; ip link 2>/dev/null |"
                                      " grep -c UP || cat /sys/class/net/lo/operstate"],
                         hostname="boxy", user="nobody", cwd="/work/dir")
        pid = await rt.create(spec)
        for ns in ("mnt", "uts", "ipc", "net", "pid", "cgroup"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        # Paused before exec: nothing of the container is in the host's mount table.
        assert str(rootfs) not in Path("/proc/self/mountinfo").read_text()
        await rt.start(spec.id)
        out = b"".join([d async for _s, d in rt.output(spec.id)]).decode().split("\n")
        assert (await rt.wait(spec.id)).exit_code == 0
        assert out[:4] == ["1", "boxy", "65534", "/work/dir"]
        await rt.delete(spec.id)
        assert (rootfs / "work" / "dir").is_dir()


@pytest.mark.anyio
async def test_capabilities(aiorun_paths, rootfs, cg_parent, guard):
    cmd = ["sh", "-c", "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status"]
    async with runtime(aiorun_paths, guard) as rt:
        _, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent, cmd))
        eff = int(out.split()[1], 16)
        assert eff == mask_of(DOCKER_DEFAULT)
        assert out.split()[3] == b"1"
        _, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent, cmd,
                                         security=SecuritySpec(cap_drop=["NET_RAW"],
                                                               cap_add=["cap_sys_admin"])))
        eff = int(out.split()[1], 16)
        assert not eff & (1 << 13) and eff & (1 << 21)
        _, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent, cmd,
                                         security=SecuritySpec(privileged=True)))
        ours = next(line for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("CapEff"))
        assert int(out.split()[1], 16) == int(ours.split()[1], 16)


@pytest.mark.anyio
async def test_memory_limit_and_oom(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent,
                         ["sh", "-c", 'x=$(head -c 40000000 /dev/zero | tr "\\0" a); sleep 1'],
                         cgroup=CgroupSpec(parent=cg_parent, memory=8 << 20, memory_swap=8 << 20,
                                           pids=64, cpus=0.5))
        await rt.create(spec)
        dirs = {d.controllers[0]: d.path
                for d in cgroups.plan(cgroups.read_layout(), spec.id, cg_parent)}
        if "memory" in dirs:
            assert Path(dirs["memory"], "memory.limit_in_bytes").read_text().strip() == \
                str(8 << 20)
        if "pids" in dirs:
            assert Path(dirs["pids"], "pids.max").read_text().strip() == "64"
        if "cpu" in dirs:
            assert Path(dirs["cpu"], "cpu.cfs_quota_us").read_text().strip() == "50000"
        await rt.start(spec.id)
        st = await rt.wait(spec.id)
        assert st.oom_killed and st.exit_code == 137
        await rt.delete(spec.id)
        assert not any(os.path.exists(p) for p in dirs.values())


@pytest.mark.anyio
async def test_mounts_contained(aiorun_paths, rootfs, cg_parent, guard, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("from host\n")
    # A hostile image: /test -> /etc and /up -> ../../.. ; mounts through them must stay
    # inside the rootfs.
    os.symlink("/etc", rootfs / "test")
    os.symlink("../../../../../../..", rootfs / "up")
    host_evil = Path("/etc/aiorun-evil-mnt")
    assert not host_evil.exists()
    mounts = [MountSpec(destination="/data", source=str(data), options=["ro"]),
              MountSpec(destination="/test/aiorun-evil-mnt", type="tmpfs"),
              MountSpec(destination="/up/tmp/aiorun-evil-up", type="tmpfs")]
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent,
                         ["sh", "-c", "cat /data/f; touch /data/g 2>/dev/null || echo ro;"
                                      " grep -c aiorun-evil /proc/self/mountinfo; sleep 2"],
                         mounts=mounts)
        await rt.create(spec)
        await rt.start(spec.id)
        outs = []
        async for _s, d in rt.output(spec.id):
            outs.append(d)
            if b"".join(outs).count(b"\n") >= 3:
                host_mi = Path("/proc/self/mountinfo").read_text()
                assert str(data) not in host_mi and "aiorun-evil" not in host_mi
        assert (await rt.wait(spec.id)).exit_code == 0
        assert b"".join(outs) == b"from host\nro\n2\n"
        await rt.delete(spec.id)
    assert not host_evil.exists() and not Path("/tmp/aiorun-evil-up").exists()
    assert (rootfs / "etc" / "aiorun-evil-mnt").is_dir()
    assert (rootfs / "tmp" / "aiorun-evil-up").is_dir()


@pytest.mark.anyio
async def test_exec_joins_namespaces(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent, ["sleep", "30"], hostname="exy")
        pid = await rt.create(spec)
        await rt.start(spec.id)
        await rt.exec_create(ExecSpec(id="e1", container_id=spec.id,
                                      args=["sh", "-c", "hostname; echo $$; exit 5"]))
        epid = await rt.exec_start("e1")
        for ns in ("mnt", "uts", "ipc", "net", "pid", "cgroup"):
            try:
                assert os.readlink(f"/proc/{epid}/ns/{ns}") == os.readlink(f"/proc/{pid}/ns/{ns}")
            except FileNotFoundError:
                break                      # already exited: the output check below still holds
        out = b"".join([d async for _s, d in rt.output("e1")])
        assert await rt.wait_exec("e1") == 5
        host, inner_pid = out.decode().split()
        assert host == "exy" and int(inner_pid) > 1
        await rt.exec_create(ExecSpec(id="e2", container_id=spec.id, args=["nope"]))
        with pytest.raises(ExecFailed) as ei:
            await rt.exec_start("e2")
        assert ei.value.exit_code == 127
        assert await rt.wait_exec("e2") == 127
        # stdin through an exec
        await rt.exec_create(ExecSpec(id="e3", container_id=spec.id, args=["cat"], stdin=True))
        await rt.exec_start("e3")
        await rt.write_stdin("e3", b"ping\n")
        await rt.close_stdin("e3")
        out = b"".join([d async for _s, d in rt.output("e3")])
        assert out == b"ping\n" and await rt.wait_exec("e3") == 0
        await rt.kill(spec.id, "SIGKILL")
        assert (await rt.wait(spec.id)).exit_code == 137
        await rt.delete(spec.id)


@pytest.mark.anyio
async def test_tty_and_resize(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent,
                         ["sh", "-c", "read x; test -t 1 && echo tty:$x; stty size;"
                                      " test -c /dev/console && echo console; umask; tty"],
                         tty=True, stdin=True)
        await rt.create(spec)
        await rt.start(spec.id)
        await rt.resize(spec.id, 33, 99)
        await rt.write_stdin(spec.id, b"hi\n")
        out = b"".join([d async for _s, d in rt.output(spec.id)])
        assert (await rt.wait(spec.id)).exit_code == 0
        assert b"tty:hi\r\n" in out and b"33 99" in out and b"console\r\n0022" in out
        # the pty lives in the container's own devpts, as with Docker
        assert out.endswith(b"/dev/pts/0\r\n")
        await rt.delete(spec.id)


@pytest.mark.anyio
async def test_kill_term_and_reconnect(aiorun_paths, rootfs, cg_parent, guard):
    spec = make_spec(aiorun_paths, rootfs, cg_parent,
                     ["sh", "-c", "trap 'exit 143' TERM; while :; do sleep 0.05; done"])
    async with Runtime(aiorun_paths) as rt:
        guard.append(rt.spawner_pid)
        await rt.create(spec)
        await rt.start(spec.id)
    # The daemon side went away; the spawner and the container keep running.
    async with runtime(aiorun_paths, guard) as rt2:
        assert await rt2.list() == [spec.id]
        assert (await rt2.state(spec.id))["running"]
        with pytest.raises(Exception):
            await rt2.shutdown_spawner()          # refuses while a container runs

        async def killer():
            await anyio.sleep(0.2)
            await rt2.kill(spec.id, signal.SIGTERM)

        async with anyio.create_task_group() as tg:
            tg.start_soon(killer)
            st = await rt2.wait(spec.id)
        assert st.exit_code == 143
        await rt2.delete(spec.id)


@pytest.mark.anyio
async def test_exit_while_disconnected(aiorun_paths, rootfs, cg_parent, guard):
    spec = make_spec(aiorun_paths, rootfs, cg_parent, ["sh", "-c", "sleep 0.2; exit 7"])
    async with Runtime(aiorun_paths) as rt:
        guard.append(rt.spawner_pid)
        await rt.create(spec)
        await rt.start(spec.id)
    await anyio.sleep(0.5)                       # it exits while no daemon is connected
    async with runtime(aiorun_paths, guard) as rt2:
        assert await rt2.list() == [spec.id]
        st = await rt2.wait(spec.id)
        assert st.exit_code == 7 and st.finished_at_ns > 0
        from aiorun.runtime import read_exit_status
        assert read_exit_status(spec.state_dir).exit_code == 7
        await rt2.delete(spec.id)
        assert await rt2.list() == []


@pytest.mark.anyio
async def test_spawner_killed_container_readopted(aiorun_paths, rootfs, cg_parent, guard):
    """The spawner dies under a running container: the Runtime reconnects (starting a new
    spawner), which re-adopts the container by pidfd; its real status is unknowable, so it
    is reported as 255 when it exits."""
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent, ["sleep", "30"])
        pid = await rt.create(spec)
        await rt.start(spec.id)
        old = rt.spawner_pid
        os.kill(old, signal.SIGKILL)
        with anyio.fail_after(10):
            while rt.spawner_pid in (old, 0) or not rt.connected:
                await anyio.sleep(0.02)
        guard.append(rt.spawner_pid)
        assert (await rt.state(spec.id))["running"]
        # PID 1 is no longer our child: its pid is signalled through the new pidfd.
        await rt.kill(spec.id, signal.SIGKILL)
        st = await rt.wait(spec.id)
        assert st.exit_code == 255
        await rt.delete(spec.id)
        assert not os.path.exists(f"/proc/{pid}/ns") or _alive(pid) is False


@pytest.mark.anyio
async def test_readonly_rootfs_and_big_output(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        st, out = await run(rt, make_spec(
            aiorun_paths, rootfs, cg_parent,
            ["sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; touch /tmp/y || true"],
            security=SecuritySpec(readonly_rootfs=True)))
        assert out.startswith(b"ro\n")
        n = 8 << 20
        spec = make_spec(aiorun_paths, rootfs, cg_parent,
                         ["sh", "-c", f"head -c {n} /dev/zero | tr '\\0' x; echo"])
        st, out = await run(rt, spec)
        assert st.exit_code == 0 and len(out) == n + 1
        size = sum(len(__import__("json").loads(line)["log"])
                   for line in Path(spec.log_path).read_text().splitlines())
        assert size == n + 1


@pytest.mark.anyio
async def test_devices_restricted_unless_privileged(aiorun_paths, rootfs, cg_parent, guard):
    # A device outside the allow-list (here /dev/kmsg, 1:11) made with mknod must not open.
    cmd = ["sh", "-c", "rm -f /tmp/mem; mknod /tmp/mem c 1 11 && (head -c 1 /tmp/mem"
                       " >/dev/null 2>&1 && echo open || echo denied); rm /tmp/mem;"
                       " echo x > /dev/null && echo null-ok"]
    async with runtime(aiorun_paths, guard) as rt:
        _, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent, cmd))
        if "devices" in {c for d in cgroups.read_layout() if d.version == 1
                         for c in d.controllers}:
            assert out == b"denied\nnull-ok\n"
        _, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent, cmd,
                                         security=SecuritySpec(privileged=True)))
        assert out == b"open\nnull-ok\n"


@pytest.mark.anyio
async def test_cgroupfs_inside_shows_own_limits(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent,
                         ["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes ||"
                                      " cat /sys/fs/cgroup/memory.max; grep -c . /proc/self/cgroup"
                                      " >/dev/null; touch /sys/fs/cgroup/x 2>/dev/null || echo ro"],
                         cgroup=CgroupSpec(parent=cg_parent, memory=48 << 20))
        st, out = await run(rt, spec)
        assert st.exit_code == 0 and out == f"{48 << 20}\nro\n".encode()


@pytest.mark.anyio
async def test_stdin_logs_and_shared_netns(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        # stdin pipe into PID 1; partial last line and stderr are logged as Docker does.
        spec = make_spec(aiorun_paths, rootfs, cg_parent,
                         ["sh", "-c", "cat; echo oops >&2; printf tail"], stdin=True)
        await rt.create(spec)
        await rt.start(spec.id)
        await rt.write_stdin(spec.id, b"line1\n")
        await rt.write_stdin(spec.id, b"line2\n")
        await rt.close_stdin(spec.id)
        got = [(s, d) async for s, d in rt.output(spec.id)]
        assert (await rt.wait(spec.id)).exit_code == 0
        assert b"".join(d for s, d in got if s == 1) == b"line1\nline2\ntail"
        assert b"".join(d for s, d in got if s == 2) == b"oops\n"
        import json
        entries = [json.loads(x) for x in Path(spec.log_path).read_text().splitlines()]
        # (order across the two pipes is not defined, as with Docker; within one it is)
        assert [e["log"] for e in entries if e["stream"] == "stdout"] == \
            ["line1\n", "line2\n", "tail"]
        assert [e["log"] for e in entries if e["stream"] == "stderr"] == ["oops\n"]
        await rt.delete(spec.id)

        # network "host" shares the host's netns; a /proc/PID/ns/net path joins another's.
        a = make_spec(aiorun_paths, rootfs, cg_parent, ["sleep", "30"])
        pa = await rt.create(a)
        await rt.start(a.id)
        b = make_spec(aiorun_paths, rootfs, cg_parent, ["sleep", "30"],
                      network=f"/proc/{pa}/ns/net")
        pb = await rt.create(b)
        h = make_spec(aiorun_paths, rootfs, cg_parent, ["sleep", "30"], network="host")
        ph = await rt.create(h)
        net = lambda pid: os.readlink(f"/proc/{pid}/ns/net")  # noqa: E731
        assert net(pb) == net(pa) != net("self")
        assert net(ph) == net("self")
        assert os.readlink(f"/proc/{pb}/ns/mnt") != os.readlink(f"/proc/{pa}/ns/mnt")
        # exec into the host-network one works (shared namespaces are skipped by setns)
        await rt.start(h.id)
        await rt.exec_create(ExecSpec(id="eh", container_id=h.id, args=["true"]))
        await rt.exec_start("eh")
        assert await rt.wait_exec("eh") == 0
        for s in (a, b, h):
            await rt.delete(s.id, force=True)


@pytest.mark.anyio
async def test_exec_tty_user_env_cwd(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent, ["sleep", "30"], env=["A=1", "B=2"],
                         cwd="/tmp")
        pid = await rt.create(spec)
        await rt.start(spec.id)
        await rt.exec_create(ExecSpec(id="x1", container_id=spec.id,
                                      args=["sh", "-c", "echo $A$B; pwd; id -u; test -t 0 &&"
                                                        " echo tty; grep CapEff /proc/self/status;"
                                                        " tty"],
                                      env=["B=3"], tty=True, user="nobody", cwd="/home"))
        epid = await rt.exec_start("x1")
        assert epid > 0
        out = b"".join([d async for _s, d in rt.output("x1")]).replace(b"\r\n", b"\n")
        assert await rt.wait_exec("x1") == 0
        lines = out.decode().split("\n")
        assert lines[:4] == ["13", "/home", "65534", "tty"]
        assert lines[4].split()[1] == "0000000000000000"    # non-root: no effective caps
        assert lines[5].startswith("/dev/pts/")
        # the exec ran in the container's cgroups
        await rt.exec_create(ExecSpec(id="x2", container_id=spec.id,
                                      args=["cat", "/proc/self/cgroup"]))
        await rt.exec_start("x2")
        out = b"".join([d async for _s, d in rt.output("x2")])
        assert b"memory:/\n" in out
        assert Path(f"/proc/{pid}/cgroup").read_text().count(spec.id) >= 1
        with pytest.raises(Exception):
            await rt.exec_start("x2")                 # already started
        await rt.kill(spec.id)
        await rt.wait(spec.id)
        await rt.delete(spec.id)


@pytest.mark.anyio
async def test_bad_input_leaves_nothing(aiorun_paths, rootfs, cg_parent, guard, tmp_path):
    from aiorun.errors import AiorunError, InvalidArgument
    os.symlink("/nonexistent-target", rootfs / "dangling")
    async with runtime(aiorun_paths, guard) as rt:
        bad = [
            (InvalidArgument, dict(security=SecuritySpec(cap_add=["CAP_NOPE"]))),
            (InvalidArgument, dict(cgroup=CgroupSpec(parent="../escape"))),
            (AiorunError, dict(mounts=[MountSpec(destination="/x", source=str(tmp_path / "no"))])),
            (AiorunError, dict(mounts=[MountSpec(destination="/dangling/x", type="tmpfs")])),
        ]
        for exc, kw in bad:
            spec = make_spec(aiorun_paths, rootfs, cg_parent, ["true"], **kw)
            with pytest.raises(exc):
                await rt.create(spec)
            assert await rt.list() == []
        with pytest.raises(InvalidArgument):
            await rt.create(make_spec(aiorun_paths, tmp_path / "nope", cg_parent, ["true"]))
        for bad_id in ("../x", "a/b", "", ".hidden"):
            with pytest.raises(InvalidArgument):
                await rt.create(make_spec(aiorun_paths, rootfs, cg_parent, ["true"], id=bad_id))
        from aiorun.errors import NotFound
        with pytest.raises(NotFound):
            await rt.wait("nope")
        with pytest.raises(NotFound):
            await rt.kill("nope")
    assert not Path("/nonexistent-target").exists()


@pytest.mark.anyio
async def test_pause_resume_stats(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        spec = make_spec(aiorun_paths, rootfs, cg_parent,
                         ["sh", "-c", "while :; do echo t; sleep 0.02; done"],
                         cgroup=CgroupSpec(parent=cg_parent, memory=64 << 20))
        pid = await rt.create(spec)
        await rt.start(spec.id)
        it = rt.output(spec.id)
        await it.__anext__()
        await rt.pause(spec.id)
        fz = [d.path for d in cgroups.plan(cgroups.read_layout(), spec.id, cg_parent)
              if "freezer" in d.controllers]
        if fz:
            assert Path(fz[0], "freezer.state").read_text().strip() == "FROZEN"
        # frozen: after what was in flight, silence (it prints every 20 ms when running)
        quiet = False
        with anyio.move_on_after(3):
            while not quiet:
                with anyio.move_on_after(0.3) as scope:
                    await it.__anext__()
                quiet = scope.cancelled_caught
        assert quiet
        state = Path(f"/proc/{pid}/status").read_text()
        assert (await rt.state(spec.id))["paused"]
        from aiorun.errors import Conflict
        with pytest.raises(Conflict, match="paused"):
            await rt.exec_create(ExecSpec(id="px", container_id=spec.id, args=["true"]))
        with pytest.raises(Conflict):
            await rt.pause(spec.id)
        st = await rt.stats(spec.id)
        assert pid in st["pids"] and st["cpu_usage_ns"] > 0
        assert st["memory_limit"] == 64 << 20 and st["memory_usage"] > 0
        await rt.resume(spec.id)
        await rt.update(spec.id, CgroupSpec(memory=96 << 20, pids=33))
        assert (await rt.stats(spec.id))["memory_limit"] == 96 << 20
        await rt.update(spec.id, CgroupSpec(memory=32 << 20))
        assert (await rt.stats(spec.id))["memory_limit"] == 32 << 20
        from aiorun.errors import InvalidArgument
        with pytest.raises(InvalidArgument):
            await rt.update(spec.id, CgroupSpec(memory=1 << 20))
        await rt.kill(spec.id)
        assert (await rt.wait(spec.id)).exit_code == 137
        await it.aclose()
        await rt.delete(spec.id)
        assert "State:" in state


@pytest.mark.anyio
async def test_created_container_holds_no_foreign_fds(aiorun_paths, rootfs, cg_parent, guard):
    """A container paused before exec must not keep another's stdin open (EOF must come)."""
    async with runtime(aiorun_paths, guard) as rt:
        a = make_spec(aiorun_paths, rootfs, cg_parent, ["cat"], stdin=True)
        await rt.create(a)
        b = make_spec(aiorun_paths, rootfs, cg_parent, ["true"])
        pb = await rt.create(b)                  # created after a, never started
        fds = os.listdir(f"/proc/{pb}/fd")
        assert len(fds) <= 6, fds
        await rt.start(a.id)
        await rt.write_stdin(a.id, b"x\n")
        await rt.close_stdin(a.id)
        with anyio.fail_after(5):
            assert (await rt.wait(a.id)).exit_code == 0
        await rt.delete(b.id, force=True)
        await rt.delete(a.id)


@pytest.mark.anyio
async def test_hostile_passwd_fifo_does_not_block(aiorun_paths, rootfs, cg_parent, guard):
    (rootfs / "etc" / "passwd").unlink()
    os.mkfifo(rootfs / "etc" / "passwd")
    async with runtime(aiorun_paths, guard) as rt:
        with anyio.fail_after(5):
            st, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent, ["echo", "ok"]))
        assert st.exit_code == 0 and out == b"ok\n"


@pytest.mark.anyio
async def test_seccomp_default_and_unconfined(aiorun_paths, rootfs, cg_parent, guard):
    cmd = ["sh", "-c", "unshare -U true 2>/dev/null && echo userns || echo denied;"
                       " grep Seccomp: /proc/self/status"]
    async with runtime(aiorun_paths, guard) as rt:
        _, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent, cmd))
        assert out.split() == [b"denied", b"Seccomp:", b"2"]
        _, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent, cmd,
                                         security=SecuritySpec(seccomp="unconfined")))
        assert out.split() == [b"userns", b"Seccomp:", b"0"]
        _, out = await run(rt, make_spec(aiorun_paths, rootfs, cg_parent,
                                         ["sh", "-c", "echo ok; (sleep 0 &); wait"]))
        assert out == b"ok\n"                       # plain fork/clone still works


@pytest.mark.anyio
async def test_kill_and_force_delete_paused(aiorun_paths, rootfs, cg_parent, guard):
    async with runtime(aiorun_paths, guard) as rt:
        a = make_spec(aiorun_paths, rootfs, cg_parent, ["sleep", "30"])
        await rt.create(a)
        await rt.start(a.id)
        await rt.pause(a.id)
        await rt.kill(a.id)                         # SIGKILL of a frozen container works
        with anyio.fail_after(5):
            assert (await rt.wait(a.id)).exit_code == 137
        await rt.delete(a.id)
        b = make_spec(aiorun_paths, rootfs, cg_parent, ["sleep", "30"])
        await rt.create(b)
        await rt.start(b.id)
        await rt.pause(b.id)
        with anyio.fail_after(5):
            await rt.delete(b.id, force=True)
        assert await rt.list() == []


@pytest.mark.anyio
async def test_idle_spawner_exits_by_itself(aiorun_paths, guard):
    async with Runtime(aiorun_paths, spawner_idle_exit=0.3) as rt:
        pid = rt.spawner_pid
        guard.append(pid)
        await anyio.sleep(1.5)                   # a connected client keeps it alive
        assert _alive(pid)
    with anyio.fail_after(5):
        while _alive(pid):
            await anyio.sleep(0.05)
    assert not aiorun_paths.spawner_socket.exists()
    # and the next connect simply starts a new one
    async with runtime(aiorun_paths, guard) as rt:
        assert rt.spawner_pid != pid


@pytest.mark.anyio
async def test_corrupt_record_does_not_stop_the_spawner(aiorun_paths, guard):
    rec_dir = aiorun_paths.run / "runtime"
    rec_dir.mkdir(parents=True, exist_ok=True)
    (rec_dir / "broken.json").write_text("{not json")
    (rec_dir / "weird.json").write_text('{"id": "../x", "kind": "container", "spec": {}}')
    async with runtime(aiorun_paths, guard) as rt:
        assert await rt.list() == []
    assert (rec_dir / "broken.json.bad").exists() and (rec_dir / "weird.json.bad").exists()


@pytest.mark.anyio
async def test_concurrent_containers(aiorun_paths, rootfs, cg_parent, guard):
    """Many requests in flight on one connection; replies and outputs are not mixed up."""
    results: dict[str, tuple[int, bytes]] = {}
    async with runtime(aiorun_paths, guard) as rt:
        async def one(i: int) -> None:
            spec = make_spec(aiorun_paths, rootfs, cg_parent, ["sh", "-c", f"echo c{i}; exit {i}"],
                             id=f"conc{i}")
            results[spec.id] = await run(rt, spec)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
    assert {k: (st.exit_code, out) for k, (st, out) in results.items()} == \
        {f"conc{i}": (i, f"c{i}\n".encode()) for i in range(8)}
