"""Reconcile at start and the orphan sweep, against the real daemon, spawner and kernel
(issue 11, items 3, 4 and 11).

Crashes are real ``kill -9``s at named points (``aiorun.core.faultpoint``:
``AIORUN_FAULT_POINT`` on the daemon, inherited by the spawner it starts; ``AIORUN_FAULT_ONCE``
makes each fire once and proves it fired). Every test ends with the ``env`` fixture's
checks from ``test_containers``: no cgroup, mount, process or container directory of this
test left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest

from aiorun.testing.daemon import start_daemon, stop_spawner
from aiorun.testing.util import wait_until

from test_containers import (BOTH, cgroup_dirs, env, host_guard,  # noqa: F401 (fixtures)
                             own_mounts)

pytestmark = pytest.mark.integration


def _restart(env, **fault: str) -> None:
    """Restart the daemon (after a crash or not), armed with a fault point if given."""
    if env.daemon.alive():
        env.daemon.stop()
    extra = {}
    if fault:
        extra = {"AIORUN_FAULT_POINT": fault["point"], "AIORUN_FAULT_ONCE": fault["once"]}
    env.daemon = start_daemon(env.paths, backend=env.backend, storage_driver=env.driver,
                              extra_env=extra)


def _armed(env, tmp_path: Path, point: str, fresh_spawner: bool = False) -> Path:
    """Restart the daemon armed with ``point``; returns the file that proves it fired."""
    once = tmp_path / f"fired-{point}"
    if env.daemon.alive():
        env.daemon.stop()
    if fresh_spawner:                    # so the spawner inherits the armed environment
        stop_spawner(env.paths, force=True)
    _restart(env, point=point, once=str(once))
    return once


def _crashed(env, once: Path) -> None:
    wait_until(lambda: not env.daemon.alive(), 30, "the daemon killed at its fault point")
    assert once.exists(), "the fault point was not reached"
    env.daemon.kill9()                   # reap it


def _status(env, cid: str) -> str:
    return env.inspect(cid)["State"]["Status"]


def _spawner_pid(env) -> int:
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        if b"aiorun.runtime.spawner" in cmd and str(env.paths.run).encode() in cmd:
            return int(p)
    raise AssertionError("no spawner running")


def _cgroups_of(cid: str) -> list[str]:
    return [p for p in cgroup_dirs() if Path(p).name == cid]


# --------------------------------------------------------------------------- item 3

@pytest.mark.parametrize("env", BOTH, indirect=True, ids=["asyncio-overlay", "trio-copy"])
def test_saved_paused_while_running_is_reconciled(env):
    """A commit on a full disk thawed the container but could not save "running": after a
    restart it must show running, and pause/unpause/stop must work."""
    cid = env.ok("run", "-d", "busybox", "sleep", "300").strip()
    env.daemon.kill9()
    f = env.paths.containers / cid / "config.v2.json"
    saved = json.loads(f.read_text())
    saved["State"]["status"] = "paused"     # what the failed save left on disk
    f.write_text(json.dumps(saved))
    _restart(env)
    assert _status(env, cid) == "running"
    assert "(Paused)" not in env.ok("ps")
    assert json.loads(f.read_text())["State"]["status"] == "running"
    r = env.cli("unpause", cid)
    assert r.returncode != 0 and "is not paused" in r.stderr
    env.ok("pause", cid)
    assert _status(env, cid) == "paused"
    env.ok("unpause", cid)
    env.ok("stop", "-t", "1", cid)
    assert _status(env, cid) == "exited"
    env.ok("rm", cid)


@pytest.mark.parametrize("env", BOTH, indirect=True, ids=["asyncio-overlay", "trio-copy"])
def test_records_survive_kill9_and_old_layout_loads(env):
    """One record file per container: a running and a created container survive a
    ``kill -9`` of the daemon right after their replies; records in the old two-file
    layout (state in state.json, per-container overlay init layer) load after a restart,
    are rewritten as one file and work (exec, stop, start, rm)."""
    run = env.ok("run", "-d", "--name", "rec-run", "busybox", "sleep", "300").strip()
    made = env.ok("create", "--name", "rec-made", "busybox", "true").strip()
    env.daemon.kill9()
    _restart(env)
    assert _status(env, run) == "running" and _status(env, made) == "created"
    env.ok("exec", run, "true")
    env.daemon.kill9()
    for cid in (run, made):                     # back to the layout of earlier versions
        rec = env.paths.containers / cid / "config.v2.json"
        d = json.loads(rec.read_text())
        (env.paths.containers / cid / "state.json").write_text(json.dumps(d.pop("State")))
        rec.write_text(json.dumps(d))
        if env.driver == "overlay":             # a per-container init layer, as before
            ctr = env.paths.storage("overlay") / "containers" / cid
            lines = (ctr / "lower").read_text().split()
            shared = [x for x in lines if x.startswith("init:")]
            assert len(shared) == 1
            shutil.copytree(env.paths.storage("overlay") / "init" / shared[0][5:] / "layer",
                            ctr / "init", symlinks=True)
            (ctr / "lower").write_text("".join(f"{x}\n" for x in lines if x not in shared))
    _restart(env)
    for cid in (run, made):
        assert not (env.paths.containers / cid / "state.json").exists()
        assert "State" in json.loads((env.paths.containers / cid / "config.v2.json")
                                     .read_text())
    assert _status(env, run) == "running" and _status(env, made) == "created"
    env.ok("exec", run, "true")
    env.ok("stop", "-t", "1", run)
    assert _status(env, run) == "exited"
    env.ok("start", run)
    assert _status(env, run) == "running"
    env.ok("rm", "-f", run)
    env.ok("start", made)
    env.ok("rm", "-f", made)


def test_commit_on_a_full_disk_then_restart_is_not_stuck_paused(env):
    """The issue's repro on a real full filesystem: the container records and the commit
    spool on an 8 MiB tmpfs; the commit fills it, unpauses the container and cannot save
    that. After a crash and a restart the container must be running, not "Up (Paused)"."""
    cid = env.ok("run", "-d", "busybox", "sh", "-c",
                 "head -c 12000000 /dev/zero > /big && touch /done; sleep 300").strip()
    wait_until(lambda: env.cli("exec", cid, "test", "-e", "/done").returncode == 0, 30,
               "the container's big file")
    env.daemon.stop()                     # the container keeps running
    small = env.paths.root / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    moved = ("containers", "tmp")
    try:
        for name in moved:
            real = env.paths.root / name
            shutil.copytree(real, small / name, symlinks=True)
            shutil.rmtree(real)
            real.symlink_to(small / name)
        _restart(env)
        r = env.cli("commit", cid, "snap")
        assert r.returncode != 0, "the commit did not run out of space"
        record = env.paths.containers / cid / "config.v2.json"
        assert json.loads(record.read_text())["State"]["status"] == "paused"  # failed save
        assert _status(env, cid) == "running"
        env.daemon.kill9()
        _restart(env)
        assert _status(env, cid) == "running"
        assert "(Paused)" not in env.ok("ps")
        env.ok("pause", cid)
        env.ok("unpause", cid)
        env.ok("stop", "-t", "1", cid)
        env.ok("rm", cid)
    finally:
        if env.daemon.alive():
            env.cli("rm", "-f", cid)
            env.daemon.stop()
        for name in moved:
            real = env.paths.root / name
            if real.is_symlink():
                real.unlink()
                shutil.copytree(small / name, real, symlinks=True)
        subprocess.run(["umount", str(small)], check=True)
        small.rmdir()
        _restart(env)                     # for the env fixture's teardown checks


def test_paused_container_stays_paused_across_spawner_restart(env):
    """Daemon and spawner both killed while a container is paused: the new spawner reads
    the freezer, so the reconcile keeps it paused, and unpause works."""
    cid = env.ok("run", "-d", "busybox", "sleep", "300").strip()
    env.ok("pause", cid)
    env.daemon.kill9()
    spawner = _spawner_pid(env)
    os.kill(spawner, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{spawner}/cmdline")
               or not Path(f"/proc/{spawner}/cmdline").read_bytes(), 10, "spawner gone")
    _restart(env)
    assert _status(env, cid) == "paused"
    env.ok("unpause", cid)
    assert _status(env, cid) == "running"
    env.ok("exec", cid, "true")
    env.ok("rm", "-f", cid)


# --------------------------------------------------------------------------- item 11

@pytest.mark.parametrize("env", BOTH, indirect=True, ids=["asyncio-overlay", "trio-copy"])
@pytest.mark.parametrize("point", ["rm.storage", "rm.trash"])
def test_rm_f_cut_short_is_finished_at_the_next_start(env, tmp_path, point):
    """A removal killed after its record was renamed to its trash name (``rm.storage``:
    before the rootfs went; ``rm.trash``: in the background delete of the renamed trees)
    is finished by the next start: the container is gone, and the ``env`` fixture checks
    that no cgroup, mount, process or directory of it is left."""
    cid = env.ok("run", "-d", "busybox", "sleep", "300").strip()
    once = _armed(env, tmp_path, point)
    env.cli("rm", "-f", cid)
    _crashed(env, once)
    _restart(env)
    assert cid not in env.ok("ps", "-a", "-q", "--no-trunc")
    containers = env.paths.containers
    assert not [p.name for p in containers.iterdir() if cid in p.name]
    storage = env.paths.root / "storage"
    assert not [str(p) for p in storage.glob("*/containers/*") if cid in p.name]


def _devlink_tar(busybox_tar: Path, dest: Path) -> Path:
    """The busybox rootfs with ``/dev`` a symlink to ``/``."""
    with tarfile.open(busybox_tar) as src, tarfile.open(dest, "w") as out:
        for m in src.getmembers():
            if m.name.rstrip("/") == "dev":
                link = tarfile.TarInfo("dev")
                link.type, link.linkname, link.mode = tarfile.SYMTYPE, "/", 0o777
                out.addfile(link)
                continue
            out.addfile(m, src.extractfile(m) if m.isfile() else None)
    return dest


def test_image_with_dev_symlinked_to_root_runs(env, busybox_tar, tmp_path):
    tar = _devlink_tar(busybox_tar, tmp_path / "devlink.tar")
    env.ok("import", str(tar), "devlink")
    out = env.ok("run", "--rm", "devlink", "/bin/sh", "-c",
                 "test -x /bin/busybox && test -c /dev/null && test ! -L /dev && "
                 "test ! -e /dev/bin && echo ok")
    assert out == "ok\n"


# --------------------------------------------------------------------------- item 4

def test_commit_killed_leaves_no_spool_file(env, tmp_path):
    cid = env.ok("run", "-d", "busybox", "sh", "-c",
                 "head -c 4000000 /dev/zero > /big; sleep 300").strip()
    wait_until(lambda: env.cli("exec", cid, "test", "-s", "/big").returncode == 0, 10,
               "the container's file")
    once = _armed(env, tmp_path, "commit.spooled")
    env.cli("commit", cid, "snap")
    _crashed(env, once)
    spools = list(env.paths.tmp.glob("commit-*.tar"))
    assert spools, "the crash left no spool file to sweep"
    _restart(env)
    assert not list(env.paths.tmp.glob("commit-*"))
    assert "commit spool file" in env.paths.daemon_log.read_text(errors="replace")
    # the commit had paused it for its diff: the restarted daemon finishes what the commit
    # would have done and resumes it (a user's own pause stays, see the tests above)
    assert _status(env, cid) == "running"
    assert "paused by a commit the daemon did not finish" in \
        env.paths.daemon_log.read_text(errors="replace")
    env.ok("pause", cid)
    env.ok("unpause", cid)
    env.ok("rm", "-f", cid)


def test_spawner_killed_after_cgroups_leaves_no_cgroups(env, tmp_path):
    cid = env.ok("create", "busybox", "sleep", "300").strip()
    once = _armed(env, tmp_path, "spawner.cgroups", fresh_spawner=True)
    r = env.cli("start", cid)
    assert once.exists(), "the spawner's fault point was not reached"
    assert r.returncode != 0
    # the daemon survives its spawner; the next one reports the cut-short create
    env.daemon.kill9()
    _restart(env)
    assert _cgroups_of(cid) == []
    assert _status(env, cid) in ("created", "exited")
    env.ok("start", cid)                  # and it starts normally afterwards
    assert _status(env, cid) == "running"
    env.ok("rm", "-f", cid)


@pytest.mark.parametrize("point", ["start.spawned", "start.network", "spawner.create.replied"])
def test_start_killed_at_a_named_point_leaves_nothing(env, tmp_path, point):
    """kill -9 of the daemon (``start.*``) or of the spawner (``spawner.*``) inside a start:
    after a restart the container is startable, and nothing of the cut-short start is left
    (the env fixture checks cgroups, mounts and processes after the test)."""
    cid = env.ok("create", "busybox", "sleep", "300").strip()
    spawner_point = point.startswith("spawner.")
    once = _armed(env, tmp_path, point, fresh_spawner=spawner_point)
    env.cli("start", cid)
    if spawner_point:
        assert once.exists(), "the spawner's fault point was not reached"
        env.daemon.kill9()
    else:
        _crashed(env, once)
    _restart(env)
    assert _status(env, cid) in ("created", "exited")
    assert _cgroups_of(cid) == []
    assert not own_mounts(env.paths)
    env.ok("start", cid)
    assert _status(env, cid) == "running"
    env.ok("rm", "-f", cid)


def test_cgroups_of_a_cut_short_create_are_swept_at_start(env):
    """The state older spawners left (the record came only after the reply): empty cgroup
    directories of a container the runtime does not know. The restarted daemon removes
    them, and logs it."""
    from aiorun.runtime import cgroups
    cid = env.ok("create", "busybox", "sleep", "300").strip()
    env.daemon.kill9()
    made = [d.path for d in cgroups.plan(cgroups.read_layout(), cid)]
    for path in made:
        os.makedirs(path)
    try:
        _restart(env)
        assert _cgroups_of(cid) == []
        assert not [p for p in made if os.path.isdir(p)]
        assert f"of container {cid} (left by a crash)" in \
            env.paths.daemon_log.read_text(errors="replace")
        env.ok("start", cid)
        env.ok("rm", "-f", cid)
    finally:
        for path in made:
            if os.path.isdir(path) and not Path(path, "cgroup.procs").read_text().strip():
                os.rmdir(path)


def test_build_killed_leaves_nothing(env, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo hi > /f\n")
    once = _armed(env, tmp_path, "build.step")
    env.cli("build", "-t", "x", str(ctx))
    _crashed(env, once)
    work = [p for p in env.paths.tmp.iterdir() if p.name.startswith(("build-", "buildctx-"))]
    snapshots = {sid for w in work if (w / "snapshots").exists()
                 for sid in (w / "snapshots").read_text().split()}
    assert snapshots and own_mounts(env.paths), "the crash left no build to sweep"
    assert any(_cgroups_of(sid) for sid in snapshots)
    _restart(env)
    assert not [p for p in env.paths.tmp.iterdir()
                if p.name.startswith(("build-", "buildctx-"))]
    assert not own_mounts(env.paths)
    assert not [cg for sid in snapshots for cg in _cgroups_of(sid)]
    storage = env.paths.storage(env.driver) / "containers"
    assert not snapshots & set(os.listdir(storage) if storage.is_dir() else [])
    assert "build leftovers" in env.paths.daemon_log.read_text(errors="replace")
