"""``-it`` at a real terminal (a pty): what the user types before the shell is ready is kept;
ctrl-p ctrl-q (or ``--detach-keys``) detaches aiorun's CLI and the docker CLI, leaving the
container running; errors are one line, never a traceback."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import aiorun_executable, run_cli, start_daemon
from aiorun.testing.ptyrun import PtyProcess
from netns_util import owned_state, remove_all_and_stop

DOCKER = "/usr/local/bin/docker"

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def env(busybox_tar):
    root = Path(tempfile.mkdtemp(prefix="aiorun-tty-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root / "root", run)
    before = owned_state(paths)
    d = start_daemon(paths)
    try:
        assert run_cli(paths, "import", str(busybox_tar), "busybox").returncode == 0
        yield paths
    finally:
        left = remove_all_and_stop(d, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"


def _env(paths: Paths) -> dict[str, str]:
    env = dict(os.environ, AIORUN_ROOT=str(paths.root), AIORUN_RUN=str(paths.run))
    env.pop("AIORUN_SOCKET", None)
    return env


def _running(paths: Paths, name: str) -> str:
    return run_cli(paths, "inspect", "-f", "{{.State.Running}}", name).stdout.strip()


def test_run_it_keeps_what_was_typed_before_the_shell_was_ready(env):
    paths = env
    argv = [aiorun_executable(), "run", "-it", "--rm", "--network", "none", "busybox", "sh"]
    with PtyProcess(argv, env=_env(paths)) as p:
        # typed at once, long before the container (and its shell) is up: the CLI's switch
        # to raw mode must not flush it
        p.write(b"echo typed-$((6*7)); exit 3\r")
        assert p.wait(30) == 3
        assert b"typed-42" in p.output


def test_exec_it_keeps_typed_ahead_input_and_detaches(env):
    paths = env
    assert run_cli(paths, "run", "-d", "-it", "--network", "none", "--name", "box", "busybox",
                   "sh").returncode == 0
    argv = [aiorun_executable(), "exec", "-it", "box", "sh"]
    with PtyProcess(argv, env=_env(paths)) as p:
        p.write(b"echo exec-$((6*7)); exit 4\r")
        assert p.wait(30) == 4
        assert b"exec-42" in p.output
    # ctrl-p ctrl-q leaves the exec'd shell running and the CLI exits 0
    with PtyProcess(argv, env=_env(paths)) as p:
        p.write(b"echo ready-$((1+1))\r")
        p.expect(b"ready-2")
        p.write(b"\x10\x11")
        assert p.wait(20) == 0
    top = run_cli(paths, "top", "box").stdout
    assert top.count(" sh") >= 2, top           # the container's and the detached exec's


def test_run_and_attach_detach_with_custom_keys(env):
    paths = env
    argv = [aiorun_executable(), "run", "-it", "--detach-keys", "ctrl-a,d", "--network",
            "none", "--name", "det", "busybox", "sh"]
    with PtyProcess(argv, env=_env(paths)) as p:
        p.write(b"echo up-$((2+3))\r")
        p.expect(b"up-5")
        p.write(b"\x01d")
        assert p.wait(20) == 0
    assert _running(paths, "det") == "true"
    with PtyProcess([aiorun_executable(), "attach", "det"], env=_env(paths)) as p:
        p.write(b"echo again-$((3+4))\r")
        p.expect(b"again-7")
        p.write(b"\x10\x11")                 # the default keys
        assert p.wait(20) == 0
    assert _running(paths, "det") == "true"
    r = run_cli(paths, "run", "-it", "--detach-keys", "ctrl-", "busybox", "true")
    assert r.returncode == 125 and "Invalid detach keys" in r.stderr


@pytest.mark.skipif(not Path(DOCKER).exists(), reason="no docker CLI v28")
def test_docker_cli_detaches_from_attach_and_exec(env):
    paths = env
    host = ["-H", f"unix://{paths.socket}"]
    assert run_cli(paths, "run", "-d", "-it", "--network", "none", "--name", "dk", "busybox",
                   "sh").returncode == 0
    with PtyProcess([DOCKER, *host, "attach", "dk"], env=_env(paths)) as p:
        p.write(b"echo docker-$((4+4))\r")
        p.expect(b"docker-8")
        p.write(b"\x10\x11")
        p.wait(20)
    assert _running(paths, "dk") == "true"
    with PtyProcess([DOCKER, *host, "exec", "-it", "dk", "sh"], env=_env(paths)) as p:
        p.write(b"echo dexec-$((5+5)); exit 5\r")
        assert p.wait(30) == 5
        assert b"dexec-10" in p.output


def test_cli_errors_are_one_line(env):
    paths = env
    r = run_cli(paths, "run", "--network", "none", "nosuchimage-apid", "true")
    assert r.returncode == 125
    assert "aiorun pull" in r.stderr and "aiorun load" in r.stderr and "aiorun import" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(paths, "run", "--pull", "never", "nosuchimage-apid", "true")
    assert r.returncode == 125 and "No such image" in r.stderr and "aiorun load" in r.stderr
    r = run_cli(paths, "exec", "nosuchcontainer", "true")
    assert r.returncode == 1 and "Traceback" not in r.stderr
