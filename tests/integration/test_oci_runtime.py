"""``aiorun-runtime`` against the real kernel: the OCI lifecycle, config.json features seen
from inside the container, hooks, the console socket, bad input (nothing left behind)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from pathlib import Path

import pytest

from aiorun.testing.ocibundle import (base_config, make_bundle, make_rootfs, remove_cgroup_parent,
                                      run, runtime_path)

pytestmark = pytest.mark.integration


@pytest.fixture
def rt() -> str:
    return runtime_path()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rootfs(tmp_path_factory.mktemp("oci") / "rootfs")


@pytest.fixture
def cg(root):                             # after ``root``'s teardown deleted the containers
    """A cgroups parent path of this test (checked by the host guard). The runtime removes
    each container's own directory and keeps the parent, as runc: removed here."""
    path = f"/aiorun-oci-{os.urandom(4).hex()}"
    yield path
    assert remove_cgroup_parent(path) == []


@pytest.fixture
def root(tmp_path: Path, rt: str):
    r = tmp_path / "state"
    yield r
    for cid in (os.listdir(r) if r.exists() else []):
        run(rt, r, "delete", "--force", cid)
    assert not r.exists() or os.listdir(r) == [], "containers left under --root"


def _cgroup_exists(path: str) -> bool:
    return any(os.path.isdir(f"/sys/fs/cgroup/{c}{path}")
               for c in ("memory", "pids", "cpu", "freezer", "devices", "unified"))


def test_lifecycle(rt, root, rootfs, tmp_path, cg):
    b = make_bundle(tmp_path / "b", base_config(["sleep", "300"], f"{cg}/c1"), rootfs)
    pidfile = tmp_path / "pid"
    r = run(rt, root, "create", "--bundle", str(b), "--pid-file", str(pidfile), "c1")
    assert r.returncode == 0, r.stderr
    st = json.loads(run(rt, root, "state", "c1").stdout)
    assert st["status"] == "created" and st["id"] == "c1" and st["bundle"] == str(b)
    assert st["pid"] == int(pidfile.read_text()) and st["ociVersion"].startswith("1.")
    # Created: PID 1 exists but has not exec'd the command yet.
    assert b"sleep" not in Path(f"/proc/{st['pid']}/cmdline").read_bytes()
    assert run(rt, root, "start", "c1").returncode == 0
    assert json.loads(run(rt, root, "state", "c1").stdout)["status"] == "running"
    assert Path(f"/proc/{st['pid']}/cmdline").read_bytes() == b"sleep\x00300\x00"
    r = run(rt, root, "exec", "c1", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert st["pid"] in json.loads(run(rt, root, "ps", "--format", "json", "c1").stdout)
    assert run(rt, root, "pause", "c1").returncode == 0
    assert json.loads(run(rt, root, "state", "c1").stdout)["status"] == "paused"
    assert run(rt, root, "resume", "c1").returncode == 0
    r = run(rt, root, "delete", "c1")
    assert r.returncode == 1 and "not stopped: running" in r.stderr
    assert run(rt, root, "kill", "c1", "KILL").returncode == 0
    for _ in range(200):
        if json.loads(run(rt, root, "state", "c1").stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    assert json.loads(run(rt, root, "state", "c1").stdout)["status"] == "stopped"
    assert run(rt, root, "delete", "c1").returncode == 0
    assert not (root / "c1").exists() and not _cgroup_exists(f"{cg}/c1")
    r = run(rt, root, "state", "c1")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_run_exit_status_and_list(rt, root, rootfs, tmp_path, cg):
    b = make_bundle(tmp_path / "b", base_config(["sh", "-c", "echo hi; exit 3"],
                                                f"{cg}/r1"), rootfs)
    r = run(rt, root, "run", "--bundle", str(b), "r1")
    assert (r.returncode, r.stdout) == (3, "hi\n")
    assert not (root / "r1").exists() and not _cgroup_exists(f"{cg}/r1")
    b2 = make_bundle(tmp_path / "b2", base_config(["sleep", "300"], f"{cg}/r2"), rootfs)
    assert run(rt, root, "run", "-d", "--bundle", str(b2), "r2").returncode == 0
    listed = json.loads(run(rt, root, "list", "--format", "json").stdout)
    assert [(i["id"], i["status"]) for i in listed] == [("r2", "running")]
    assert run(rt, root, "delete", "--force", "r2").returncode == 0
    assert not _cgroup_exists(f"{cg}/r2")


PROBE = r"""
echo "host=$(hostname) domain=$(cat /proc/sys/kernel/domainname)"
echo "id=$(id -u):$(id -g) groups=$(id -G)"
echo "nofile=$(ulimit -n) umask=$(umask)"
grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status | tr -s '\t' ' '
echo "oom=$(cat /proc/self/oom_score_adj)"
echo "cwd=$(pwd) env=$FOO"
echo "shmmax=$(cat /proc/sys/kernel/shmmax)"
echo "keys=$(wc -c < /proc/keys) firmware=$(ls /sys/firmware | wc -l)"
(echo 1 > /proc/sys/kernel/shmmax) 2>/dev/null && echo procsys=rw || echo procsys=ro
(touch /rootfile) 2>/dev/null && echo root=rw || echo root=ro
echo "data=$(cat /data/hello) $( (touch /data/x) 2>/dev/null && echo rw || echo ro)"
echo "scratch=$(grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4)"
stat -c '%A %t %T' /dev/mydev
echo "mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) pids=$(cat /sys/fs/cgroup/pids/pids.max)"
"""


def test_config_seen_from_inside(rt, root, rootfs, tmp_path, cg):
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello").write_text("world")
    cfg = base_config(["sh", "-c", PROBE], f"{cg}/p1")
    cfg["root"]["readonly"] = True
    cfg["hostname"] = "probe-host"
    cfg["domainname"] = "example.test"
    cfg["process"].update({
        "user": {"uid": 65534, "gid": 65534, "additionalGids": [10, 20], "umask": 0o27},
        "env": ["PATH=/bin", "FOO=bar"], "cwd": "/tmp", "oomScoreAdj": 321,
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 600}],
        "noNewPrivileges": True,
        "capabilities": {k: ["CAP_KILL", "CAP_CHOWN"] for k in
                         ("bounding", "effective", "permitted", "inheritable", "ambient")}})
    cfg["mounts"] += [{"destination": "/data", "type": "bind", "source": str(data),
                       "options": ["rbind", "ro"]},
                      {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "size=1m"]}]
    cfg["linux"]["sysctl"] = {"kernel.shmmax": "4096"}
    cfg["linux"]["devices"] = [{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 7,
                                "fileMode": 0o640, "uid": 0, "gid": 0}]
    cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20},
                                 "pids": {"limit": 42},
                                 "devices": [{"allow": False, "access": "rwm"},
                                             {"allow": True, "type": "c", "major": 1,
                                              "minor": 7, "access": "rwm"}]}
    b = make_bundle(tmp_path / "b", cfg, rootfs)
    r = run(rt, root, "run", "--bundle", str(b), "p1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    caps = f"{(1 << 0) | (1 << 5):016x}"              # CAP_CHOWN | CAP_KILL
    assert lines == [
        "host=probe-host domain=example.test",
        "id=65534:65534 groups=65534 10 20",
        "nofile=512 umask=0027",
        f"CapEff: {caps}", f"CapBnd: {caps}", f"CapAmb: {caps}", "NoNewPrivs: 1",
        "oom=321",
        "cwd=/tmp env=bar",
        "shmmax=4096",
        "keys=0 firmware=0",
        "procsys=ro",
        "root=ro",
        "data=world ro",
        "scratch=tmpfs rw,nosuid,relatime,size=1024k",
        "crw-r----- 1 7",
        f"mem={64 << 20} pids=42",
    ], r.stdout
    assert not _cgroup_exists(f"{cg}/p1")


@pytest.mark.parametrize("allowed", [False, True])
def test_device_cgroup(rt, root, rootfs, tmp_path, cg, allowed):
    """A host device bound in is usable only with an allow rule (root in the container)."""
    cfg = base_config(["sh", "-c", "(exec 3</dev/loop-control) && echo opened"], f"{cg}/v1")
    cfg["mounts"].append({"destination": "/dev/loop-control", "type": "bind",
                          "source": "/dev/loop-control", "options": ["bind"]})
    if allowed:
        cfg["linux"]["resources"]["devices"].append(
            {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "rw"})
    b = make_bundle(tmp_path / "b", cfg, rootfs)
    r = run(rt, root, "run", "--bundle", str(b), "v1")
    if allowed:
        assert (r.returncode, r.stdout) == (0, "opened\n"), r.stderr
    else:
        assert r.returncode != 0 and "Operation not permitted" in r.stderr


def test_seccomp_profile_applied(rt, root, rootfs, tmp_path, cg):
    cfg = base_config(["sh", "-c", "mkdir /tmp/d && echo made || echo refused; "
                             "grep Seccomp: /proc/self/status"], f"{cg}/s1")
    cfg["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 13}]}
    b = make_bundle(tmp_path / "b", cfg, rootfs)
    r = run(rt, root, "run", "--bundle", str(b), "s1")
    assert r.returncode == 0, r.stderr
    assert "refused" in r.stdout and "Seccomp:\t2" in r.stdout
    assert "Permission denied" in r.stderr


def test_join_network_namespace(rt, root, rootfs, tmp_path, cg):
    """``linux.namespaces`` with a path joins it: a netns the test made, with a veth pair in it."""
    name = f"aiorun-oci-{os.urandom(3).hex()}"
    os.system(f"ip netns add {name}")
    try:
        os.system(f"nsenter --net=/run/netns/{name} ip link add ocia0 type veth peer name ocib0")
        cfg = base_config(["sh", "-c", "ls /sys/class/net | sort | tr '\\n' ' '"],
                          f"{cg}/n1")
        cfg["linux"]["namespaces"] = [
            {"type": t} for t in ("pid", "ipc", "uts", "mount")] + [
            {"type": "network", "path": f"/run/netns/{name}"}]
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys"] + [
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}]
        b = make_bundle(tmp_path / "b", cfg, rootfs)
        r = run(rt, root, "run", "--bundle", str(b), "n1")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["lo", "ocia0", "ocib0"]
    finally:
        os.system(f"ip netns delete {name}")


HOOK = """#!/bin/sh
read -r state
echo "$1 $(echo "$state" | sed -e 's/.*"status": *"\\([a-z]*\\)".*/\\1/')" >> {log}
"""


def test_hooks_run_in_order_with_state(rt, root, rootfs, tmp_path, cg):
    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(HOOK.format(log=log))
    hook.chmod(0o755)
    # startContainer runs inside the container: its script and log live in the rootfs
    # (bind-mounted so the test can read what it wrote).
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hook.sh").write_text(HOOK.format(log="/shared/hooks.log"))
    (shared / "hook.sh").chmod(0o755)
    cfg = base_config(["true"], f"{cg}/h1")
    cfg["mounts"].append({"destination": "/shared", "type": "bind", "source": str(shared),
                          "options": ["rbind"]})
    cfg["hooks"] = {kind: [{"path": str(hook), "args": ["hook.sh", kind]}]
                    for kind in ("prestart", "createRuntime", "createContainer",
                                 "poststart", "poststop")}
    cfg["hooks"]["startContainer"] = [{"path": "/shared/hook.sh",
                                       "args": ["hook.sh", "startContainer"]}]
    b = make_bundle(tmp_path / "b", cfg, rootfs)
    r = run(rt, root, "create", "--bundle", str(b), "h1")
    assert r.returncode == 0, r.stderr
    assert run(rt, root, "start", "h1").returncode == 0
    for _ in range(200):
        if json.loads(run(rt, root, "state", "h1").stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    assert run(rt, root, "delete", "h1").returncode == 0
    assert log.read_text().splitlines() == [
        "prestart creating", "createRuntime creating", "createContainer creating",
        "poststart running", "poststop stopped"]
    assert (shared / "hooks.log").read_text().splitlines() == ["startContainer created"]


def test_failing_hook_fails_create_and_leaves_nothing(rt, root, rootfs, tmp_path, cg):
    cfg = base_config(["true"], f"{cg}/f1")
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh",
                                       "args": ["sh", "-c", "echo nope >&2; exit 4"]}]}
    b = make_bundle(tmp_path / "b", cfg, rootfs)
    r = run(rt, root, "create", "--bundle", str(b), "f1")
    assert r.returncode == 1
    assert "createRuntime hook /bin/sh exited with status 4: nope" in r.stderr
    assert not (root / "f1").exists() and not _cgroup_exists(f"{cg}/f1")


def test_console_socket_gets_the_pty(rt, root, rootfs, tmp_path, cg):
    cfg = base_config(["sh", "-c", "tty; echo done"], f"{cg}/t1")
    cfg["process"]["terminal"] = True
    b = make_bundle(tmp_path / "b", cfg, rootfs)
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(20)
    r = run(rt, root, "create", "--bundle", str(b), "--console-socket", path, "t1")
    assert r.returncode == 0, r.stderr
    conn, _ = srv.accept()
    _, fds, _, _ = socket.recv_fds(conn, 64, 1)
    conn.close()
    srv.close()
    master = fds[0]
    try:
        assert run(rt, root, "start", "t1").returncode == 0
        out = b""
        deadline = time.monotonic() + 20
        while b"done" not in out and time.monotonic() < deadline:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
        assert b"/dev/pts/0" in out and b"done" in out
    finally:
        os.close(master)
    r = run(rt, root, "delete", "--force", "t1")
    assert r.returncode == 0, r.stderr


def test_update_resources(rt, root, rootfs, tmp_path, cg):
    b = make_bundle(tmp_path / "b", base_config(["sleep", "300"], f"{cg}/u1"), rootfs)
    assert run(rt, root, "run", "-d", "--bundle", str(b), "u1").returncode == 0
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"memory": {"limit": 96 << 20}}))
    assert run(rt, root, "update", "--resources", str(res), "u1").returncode == 0
    assert run(rt, root, "update", "--pids-limit", "33", "u1").returncode == 0
    assert Path(f"/sys/fs/cgroup/memory{cg}/u1/memory.limit_in_bytes").read_text() == \
        f"{96 << 20}\n"
    assert Path(f"/sys/fs/cgroup/pids{cg}/u1/pids.max").read_text() == "33\n"
    r = run(rt, root, "exec", "-d", "--pid-file", str(tmp_path / "epid"), "u1", "sleep", "1")
    assert r.returncode == 0 and int((tmp_path / "epid").read_text()) > 0
    assert run(rt, root, "delete", "--force", "u1").returncode == 0
    assert not _cgroup_exists(f"{cg}/u1")


def _bad_bundles(tmp: Path, rootfs: Path) -> dict[str, tuple[Path, str]]:
    out: dict[str, tuple[Path, str]] = {}
    d = tmp / "noconfig"
    d.mkdir()
    out["noconfig"] = (d, "config.json: no such file")
    d = tmp / "badjson"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    out["badjson"] = (d, "invalid JSON")
    cfg = base_config(["true"])
    cfg["root"]["path"] = str(tmp / "nowhere")
    d = tmp / "norootfs"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    out["norootfs"] = (d, "does not exist")
    cfg = base_config(["true"])
    cfg["linux"]["namespaces"].append({"type": "bogus"})
    out["badns"] = (make_bundle(tmp / "badns", cfg, rootfs), "unknown namespace type")
    cfg = base_config(["/no/such/binary"])
    out["nobinary"] = (make_bundle(tmp / "nobinary", cfg, rootfs), "")
    return out


def test_bad_input_leaves_nothing(rt, root, rootfs, tmp_path):
    before = {p for p in os.listdir("/sys/fs/cgroup/memory")}
    for cid, (bundle, message) in _bad_bundles(tmp_path, rootfs).items():
        r = run(rt, root, "create", "--bundle", str(bundle), cid)
        if cid == "nobinary":
            # As runc: create succeeds, the exec failure comes at start (container stops).
            assert r.returncode == 0, r.stderr
            run(rt, root, "start", cid)
            run(rt, root, "delete", "--force", cid)
            continue
        assert r.returncode == 1 and message in r.stderr, (cid, r.stderr)
        assert "Traceback" not in r.stderr
        assert not (root / cid).exists(), cid
    assert {p for p in os.listdir("/sys/fs/cgroup/memory")} == before
    r = run(rt, root, "start", "missing")
    assert r.returncode == 1 and "container missing does not exist" in r.stderr
    assert run(rt, root, "delete", "--force", "missing").returncode == 0
    r = run(rt, root, "create", "--bundle", str(tmp_path), "bad/id")
    assert r.returncode == 1 and "invalid container id" in r.stderr


def test_id_in_use_and_start_twice(rt, root, rootfs, tmp_path, cg):
    b = make_bundle(tmp_path / "b", base_config(["sleep", "300"], f"{cg}/d1"), rootfs)
    assert run(rt, root, "create", "--bundle", str(b), "d1").returncode == 0
    r = run(rt, root, "create", "--bundle", str(b), "d1")
    assert r.returncode == 1 and "container with id exists: d1" in r.stderr
    assert run(rt, root, "start", "d1").returncode == 0
    r = run(rt, root, "start", "d1")
    assert r.returncode == 1 and "cannot start an already running container" in r.stderr
    run(rt, root, "kill", "d1", "9")
    for _ in range(200):
        if json.loads(run(rt, root, "state", "d1").stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    r = run(rt, root, "start", "d1")
    assert r.returncode == 1 and "cannot start a container that has stopped" in r.stderr
    r = run(rt, root, "kill", "d1")
    assert r.returncode == 1 and "container not running" in r.stderr
    assert run(rt, root, "delete", "d1").returncode == 0


def test_json_log_for_containerd(rt, root, tmp_path):
    """containerd reads the error from --log in JSON."""
    log = tmp_path / "log.json"
    r = run(rt, root, "--log", str(log), "--log-format", "json", "start", "nope")
    assert r.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "container nope does not exist" in entry["msg"]
    r = run(rt, root, "--systemd-cgroup", "state", "x")
    assert r.returncode == 1 and "--systemd-cgroup is not supported" in r.stderr


def test_spec_and_features(rt, tmp_path):
    r = run(rt, tmp_path / "s", "spec", "--bundle", str(tmp_path))
    assert r.returncode == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["process"]["args"] == ["sh"] and cfg["root"]["path"] == "rootfs"
    r = run(rt, tmp_path / "s", "spec", "--bundle", str(tmp_path))
    assert r.returncode == 1 and "exists" in r.stderr
    feats = json.loads(run(rt, tmp_path / "s", "features").stdout)
    assert feats["ociVersionMax"].startswith("1.") and "poststop" in feats["hooks"]
    assert "CAP_SYS_ADMIN" in feats["linux"]["capabilities"]
    assert stat.S_ISDIR(os.stat(tmp_path).st_mode)
    _ = signal.SIGKILL
