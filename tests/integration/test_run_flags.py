"""``docker run``'s process and device flags, proven from inside the container.

The docker v28 CLI drives a real ``aiorun serve``: ``--group-add`` (``id -G``, also in an
exec), ``--ulimit`` (``ulimit -n``), ``--shm-size`` (``df /dev/shm``), ``--tmpfs`` (the
``HostConfig.Tmpfs`` map; ``/proc/mounts``), ``--pid host`` (``/proc``, top, cleanup),
``--security-opt`` (``/proc/1/status``), ``--init`` (PID 1, reaping, signal forwarding,
read-only), ``--device`` (the node and the v1 device cgroup rule), ``top`` with ps options,
and the create-time refusals (``--platform``, ``--gpus``, a log driver, a network, a device,
a missing init binary), each leaving nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from aiorun.testing.util import wait_until
from run_flags_util import DOCKER, Scope, daemon_scope

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path(DOCKER).exists(), reason="no docker v28 CLI")]


@pytest.fixture(scope="module")
def s(busybox_tar):
    yield from daemon_scope(busybox_tar, "runflags")


@pytest.fixture(autouse=True)
def _clean(s: Scope):
    yield
    for cid in s.dk("ps", "-aq").split():
        s.docker("rm", "-f", cid, check=False)


def _no_containers(s: Scope) -> None:
    assert s.dk("ps", "-aq").strip() == ""


def test_group_add_is_applied_also_to_execs(s: Scope, tmp_path):
    # the security bug: GroupAdd was stored and never applied (id -G printed 0)
    group = tmp_path / "group"
    group.write_text("root:x:0:\naudio:x:29:\n")
    out = s.dk("run", "--rm", "--group-add", "1234", "--group-add", "audio",
               "-v", f"{group}:/etc/group:ro", "busybox", "id", "-G")
    assert set(out.split()) == {"0", "29", "1234"}
    s.dk("run", "-d", "--name", "ga", "--group-add", "4321", "busybox", "sleep", "60")
    assert "4321" in s.dk("exec", "ga", "id", "-G").split()
    assert s.dk("inspect", "-f", "{{json .HostConfig.GroupAdd}}", "ga").strip() == '["4321"]'
    err = s.refused("run", "--rm", "--group-add", "nosuchgroup", "busybox", "true")
    assert "unable to find group nosuchgroup" in err


def test_ulimit_shm_size_tmpfs(s: Scope):
    out = s.dk("run", "--rm", "--ulimit", "nofile=1024:2048", "--ulimit", "core=0",
               "busybox", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c").split()
    assert out == ["1024", "2048", "0"]
    s.dk("run", "-d", "--name", "ul", "--ulimit", "nofile=512:1024", "busybox", "sleep", "60")
    assert s.dk("exec", "ul", "sh", "-c", "ulimit -n").strip() == "512"
    assert s.dk("inspect", "-f", "{{json .HostConfig.Ulimits}}", "ul").strip() == \
        '[{"Name":"nofile","Hard":1024,"Soft":512}]'

    df = s.dk("run", "--rm", "--shm-size", "128m", "busybox", "df", "-k", "/dev/shm")
    assert df.splitlines()[1].split()[1] == "131072"
    df = s.dk("run", "--rm", "busybox", "df", "-k", "/dev/shm")
    assert df.splitlines()[1].split()[1] == "65536"          # Docker's default, 64 MiB

    # the docker CLI sends --tmpfs as the HostConfig.Tmpfs map
    mounts = s.dk("run", "--rm", "--tmpfs", "/run:rw,size=32m,exec", "--tmpfs", "/scratch",
                  "busybox", "cat", "/proc/mounts")
    run = next(ln for ln in mounts.splitlines() if ln.split()[1] == "/run")
    scratch = next(ln for ln in mounts.splitlines() if ln.split()[1] == "/scratch")
    assert "size=32768k" in run and "noexec" not in run and "nosuid" in run
    assert "noexec" in scratch and "nodev" in scratch
    err = s.refused("run", "--rm", "--tmpfs", "/x:bogus=1", "busybox", "true")
    assert 'invalid tmpfs option ["bogus=1"]' in err


def test_pid_host(s: Scope):
    mine = os.getpid()
    out = s.dk("run", "--rm", "--pid", "host", "busybox", "sh", "-c",
               f"test -d /proc/{mine} && echo sees-host")
    assert out.strip() == "sees-host"
    assert s.dk("run", "--rm", "busybox", "sh", "-c",
                f"test -d /proc/{mine} || echo private").strip() == "private"
    # top lists the container's processes only (not the host's), through its cgroup
    s.dk("run", "-d", "--name", "ph", "--pid", "host", "busybox", "sleep", "4242")
    top = s.dk("top", "ph").splitlines()
    assert len(top) == 2 and "sleep 4242" in top[1]
    # what the command leaves running is killed with it (no PID namespace to end it)
    s.dk("run", "--rm", "--pid", "host", "busybox", "sh", "-c", "sleep 4343 & exit 0")

    def orphans() -> list[str]:
        found = []
        for p in Path("/proc").iterdir():
            try:
                if p.name.isdigit() and (p / "cmdline").read_bytes() == b"sleep\x004343\x00":
                    found.append(p.name)
            except OSError:
                pass
        return found
    wait_until(lambda: not orphans(), 10, "the --pid host container's leftovers killed")


def test_security_opts(s: Scope, tmp_path):
    status = s.dk("run", "--rm", "busybox", "cat", "/proc/1/status")
    assert "\nSeccomp:\t2" in status and "\nNoNewPrivs:\t1" in status
    status = s.dk("run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "cat",
                  "/proc/1/status")
    assert "\nSeccomp:\t0" in status
    status = s.dk("run", "--rm", "--security-opt", "no-new-privileges", "busybox", "cat",
                  "/proc/1/status")
    assert "\nNoNewPrivs:\t1" in status
    # systempaths=unconfined: /proc/sys is not remounted read-only (nor anything masked)
    count = "grep -c ' /proc/sys ' /proc/mounts; true"
    assert s.dk("run", "--rm", "busybox", "sh", "-c", count).strip() == "1"
    assert s.dk("run", "--rm", "--security-opt", "systempaths=unconfined", "busybox", "sh",
                "-c", count).strip() == "0"
    # privileged: no no_new_privs unless asked for
    status = s.dk("run", "--rm", "--privileged", "busybox", "cat", "/proc/1/status")
    assert "\nNoNewPrivs:\t0" in status and "\nSeccomp:\t0" in status
    status = s.dk("run", "--rm", "--privileged", "--security-opt", "no-new-privileges=true",
                  "busybox", "cat", "/proc/1/status")
    assert "\nNoNewPrivs:\t1" in status
    # a Docker profile file (the CLI sends its content): compiled by aiorun
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 2, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
            {"names": ["reboot"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_BOOT"]}}]}))
    r = s.docker("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "sh", "-c",
                 "grep Seccomp: /proc/self/status; mkdir /x; touch /f; chmod 755 /f && "
                 "echo 755-ok; chmod 777 /f; true", check=False)
    assert "Seccomp:\t2" in r.stdout and "755-ok" in r.stdout, r.stderr
    assert "Permission denied" in r.stderr            # mkdir: errnoRet 13
    assert "Operation not permitted" in r.stderr      # chmod 777: the argument rule
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_NOTIFY"}')
    err = s.refused("run", "--rm", "--security-opt", f"seccomp={bad}", "busybox", "true")
    assert "--security-opt seccomp: action SCMP_ACT_NOTIFY is not supported by aiorun" in err
    err = s.refused("run", "--rm", "--security-opt", "no-new-privileges=false", "busybox",
                    "true")
    assert "no-new-privileges=false is not supported by aiorun" in err
    _no_containers(s)


def _zombies(s: Scope, name: str) -> str:
    return s.dk("exec", name, "sh", "-c",
                "grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null; true").strip()


@pytest.mark.skipif(not Path("/usr/bin/tini-static").exists(), reason="tini not installed")
def test_init_reaps_and_forwards_signals(s: Scope):
    # an orphan (its parent subshell exits) is re-parented to PID 1 and must be reaped
    cmd = "(sleep 0.2 &); exec sleep 300"
    s.dk("run", "-d", "--name", "noinit", "busybox", "sh", "-c", cmd)
    s.dk("run", "-d", "--name", "init", "--init", "busybox", "sh", "-c", cmd)
    ps = s.dk("exec", "init", "ps", "-o", "pid,args")
    assert "1 /sbin/docker-init -- sh -c" in ps
    wait_until(lambda: _zombies(s, "noinit") != "", 10, "the zombie without an init")
    time.sleep(0.5)
    assert _zombies(s, "init") == ""
    # the init is read-only in the container
    err = s.docker("exec", "init", "sh", "-c", "echo x > /sbin/docker-init", check=False)
    assert err.returncode != 0 and "Read-only file system" in err.stderr
    # SIGTERM reaches the command (sleep dies of it: 143); without an init, sleep as PID 1
    # ignores it and is killed after the timeout (137)
    s.dk("stop", "-t", "30", "init")
    assert s.dk("inspect", "-f", "{{.State.ExitCode}}", "init").strip() == "143"
    s.dk("stop", "-t", "1", "noinit")
    assert s.dk("inspect", "-f", "{{.State.ExitCode}}", "noinit").strip() == "137"
    assert s.dk("inspect", "-f", "{{.HostConfig.Init}} {{.Path}}", "init").strip() == \
        "true sh"


def test_device_node_and_cgroup_rule(s: Scope):
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse on this host")
    st = os.stat("/dev/fuse")
    rule = f"c {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    out = s.dk("run", "--rm", "--device", "/dev/fuse", "busybox", "sh", "-c",
               "ls -l /dev/fuse; : < /dev/fuse && echo opened; "
               "cat /sys/fs/cgroup/devices/devices.list 2>/dev/null; true")
    assert out.startswith("c") or out.startswith("crw"), out
    assert "opened" in out
    v1_devices = Path("/sys/fs/cgroup/devices/devices.list").exists()
    if v1_devices:
        assert f"{rule} rwm" in out
        # read-only permission: the cgroup refuses an open for writing
        out = s.docker("run", "--rm", "--device", "/dev/fuse:/dev/myfuse:r", "busybox", "sh",
                       "-c", ": < /dev/myfuse && echo read; : > /dev/myfuse && echo wrote",
                       check=False)
        assert "read" in out.stdout and "wrote" not in out.stdout
        assert "Operation not permitted" in out.stderr
    assert "No such file" in s.docker("run", "--rm", "busybox", "ls", "/dev/fuse",
                                      check=False).stderr
    # a directory: every device node below it, at the same place under the target
    if Path("/dev/net/tun").exists():
        out = s.dk("run", "--rm", "--device", "/dev/net:/dev/mynet", "busybox", "ls", "-l",
                   "/dev/mynet/")
        assert "tun" in out and out.lstrip().splitlines()[-1].startswith("c")
    err = s.refused("run", "--rm", "--device", str(Path(__file__).parent), "busybox", "true")
    assert "not a device node" in err
    err = s.refused("run", "--rm", "--device", "/dev/nonexistent-aiorun", "busybox", "true")
    assert ('error gathering device information while adding custom device '
            '"/dev/nonexistent-aiorun": no such file or directory') in err
    _no_containers(s)


def test_top_with_ps_options(s: Scope):
    s.dk("run", "-d", "--name", "tp", "busybox", "sleep", "555")
    lines = s.dk("top", "tp", "-o", "pid,comm").splitlines()
    assert lines[0].split() == ["PID", "COMMAND"]
    assert [ln.split()[1] for ln in lines[1:]] == ["sleep"]
    lines = s.dk("top", "tp", "-o", "pid,args").splitlines()
    assert lines[1].split()[1:] == ["sleep", "555"]
    assert "Couldn't find PID field in ps output" in s.refused("top", "tp", "-o", "comm")


def test_refused_at_create(s: Scope):
    cases = [
        (["--platform", "linux/arm64"], "image with reference busybox was found but does not "
                                        "match the specified platform: wanted linux/arm64, "
                                        "actual: linux/amd64"),
        (["--gpus", "all"], "--gpus (HostConfig.DeviceRequests) is not supported by aiorun"),
        (["--log-driver", "nosuchdriver"], "logger: no log driver named 'nosuchdriver' is "
                                           "registered"),
        (["--network", "aiornonet"], "network aiornonet not found"),
        (["--ulimit", "nofile=10:5"], "ulimit soft limit must be less than or equal to hard "
                                      "limit"),
        (["--pid", "container:x"], "not supported by aiorun"),
    ]
    if os.uname().machine != "x86_64":
        cases = cases[1:]
    for flags, message in cases:
        err = s.refused("run", "--rm", *flags, "busybox", "true")
        assert message in err, (flags, err)
        assert "Unable to find image" not in err, (flags, err)   # no pull attempted
    s.dk("run", "--rm", "--platform", "linux/amd64" if os.uname().machine == "x86_64"
         else "linux", "busybox", "true")
    # a network named only in NetworkingConfig (docker-py's networking_config)
    import docker
    client = docker.APIClient(base_url=s.host)
    try:
        with pytest.raises(docker.errors.APIError, match="network aiornonet2 not found"):
            client.create_container(
                "busybox", "true", networking_config=client.create_networking_config(
                    {"aiornonet2": client.create_endpoint_config()}))
    finally:
        client.close()
    _no_containers(s)


def test_missing_init_binary_is_refused_at_create(busybox_tar):
    gen = daemon_scope(busybox_tar, "noinit",
                       extra_env={"AIORUN_INIT_BINARY": "/nonexistent/aiorun-tini"})
    s2 = next(gen)
    try:
        err = s2.refused("run", "--rm", "--init", "busybox", "true")
        assert "--init: the init binary /nonexistent/aiorun-tini is not available" in err
        assert "install Debian's tini package" in err
        _no_containers(s2)
    finally:
        next(gen, None)


def test_aiorun_cli_flags(s: Scope):
    """aiorun's own CLI sends the same flags (its flag → body table)."""
    from aiorun.testing.daemon import run_cli

    def ar(*args: str) -> str:
        r = run_cli(s.paths, *args, timeout=60)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout
    out = ar("run", "--rm", "--ulimit", "nofile=300:400", "--group-add", "77",
             "--shm-size", "16m", "--tmpfs", "/run", "--security-opt", "seccomp=unconfined",
             "busybox", "sh", "-c",
             "ulimit -n; id -G; df -k /dev/shm | tail -1; grep -c ' /run ' /proc/mounts; "
             "grep Seccomp: /proc/self/status")
    lines = out.splitlines()
    assert lines[0] == "300" and set(lines[1].split()) == {"0", "77"}
    assert lines[2].split()[1] == "16384" and lines[3] == "1" and "\t0" in lines[4]
    if Path("/usr/bin/tini-static").exists():
        assert "/sbin/docker-init" in ar("run", "--rm", "--init", "busybox", "cat",
                                         "/proc/1/cmdline")
    ar("run", "-d", "--name", "arhc", "--health-cmd", "true", "--health-interval", "200ms",
       "busybox", "sleep", "60")
    wait_until(lambda: "(healthy)" in ar("ps", "--filter", "name=arhc"), 20, "healthy")
    assert ar("ps", "-q", "--filter", "health=healthy").strip() != ""
    top = ar("top", "arhc", "-o", "pid,comm").splitlines()
    assert top[0].split() == ["PID", "COMMAND"] and top[1].split()[1] == "sleep"
    r = run_cli(s.paths, "run", "--rm", "--platform", "linux/arm64", "busybox", "true")
    if os.uname().machine == "x86_64":
        assert r.returncode == 125 and "does not match the specified platform" in r.stderr
