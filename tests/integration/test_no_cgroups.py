"""Issue 11 item 10: where the cgroup hierarchies are not mounted in the daemon's mount
namespace, containers ran with no cgroup at all and nothing said so.

The test daemon runs in a mount namespace of its own (``unshare -m``, private propagation)
where an empty tmpfs covers ``/sys/fs/cgroup``; the namespace, and the tmpfs with it, goes
away with the daemon and its spawner, so the host is left as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from aiorun.api.client import DaemonUnreachable
from aiorun.runtime.cgroup_support import FIELDS
from aiorun.runtime.cgroups import NO_CGROUP_WARNING, Hierarchy, layout_warnings
from aiorun.testing.daemon import DaemonProcess, run_cli
from aiorun.testing.util import wait_until

pytestmark = pytest.mark.integration


def test_layout_warnings_pure():
    assert layout_warnings([]) == [NO_CGROUP_WARNING]
    assert layout_warnings([Hierarchy(1, ("memory",), "/sys/fs/cgroup/memory", "/")]) == []


def ok(r) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"
    return r.stdout if isinstance(r.stdout, str) else r.stdout.decode()


def _pings(d: DaemonProcess) -> bool:
    try:
        r = d.client().request("GET", "/_ping", check=False)
    except (OSError, DaemonUnreachable):
        return False
    r.close()
    return r.status == 200


def start_daemon_without_cgroups(paths) -> DaemonProcess:
    env = dict(os.environ, AIORUN_ROOT=str(paths.root), AIORUN_RUN=str(paths.run))
    env.pop("AIORUN_SOCKET", None)
    serve = [sys.executable, "-m", "aiorun.cli.main", "--root", str(paths.root),
             "--run-root", str(paths.run), "serve", "--debug"]
    # unshare execs sh, sh execs the daemon: the Popen pid is the daemon's
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
           'mount -t tmpfs aiorun-test-no-cgroup /sys/fs/cgroup && exec "$@"', "sh", *serve]
    with open(paths.daemon_log, "ab") as logf:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=logf, start_new_session=True)
    d = DaemonProcess(proc, paths, paths.run / "aiorun.sock")
    try:
        wait_until(lambda: _pings(d) or not d.alive(), 30, "the daemon to answer")
        assert d.alive(), d.log()
    except BaseException:
        d.stop_all()
        raise
    return d


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_no_cgroup_hierarchy_is_reported(aiorun_paths, busybox_tar):
    paths = aiorun_paths
    d = start_daemon_without_cgroups(paths)
    try:
        info = d.client().get("/info")
        assert info["Warnings"] == [NO_CGROUP_WARNING]
        # no limit is claimed where nothing enforces it (MemoryLimit was always true)
        assert {f: info[f] for f in FIELDS} == dict.fromkeys(FIELDS, False)
        assert NO_CGROUP_WARNING in paths.daemon_log.read_text()
        # containers still run (without accounting); the CLI shows the warning too
        ok(run_cli(paths, "import", str(busybox_tar), "busybox"))
        out = ok(run_cli(paths, "run", "--rm", "--network", "none", "busybox", "echo", "hi"))
        assert out == "hi\n"
        r = run_cli(paths, "info")
        assert r.returncode == 0 and NO_CGROUP_WARNING in r.stderr
    finally:
        d.stop_all()
    # the host's own namespace still has its cgroups: nothing leaked out of the namespace
    assert os.path.exists("/sys/fs/cgroup") and "aiorun-test-no-cgroup" not in \
        open("/proc/self/mountinfo").read()
