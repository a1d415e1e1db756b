"""Real peers run containers through ``aiorun-runtime``: podman (``--runtime``, via conmon)
and containerd 1.6 (``ctr run --runc-binary``, via the runc v2 shim). Each peer gets its
own roots and sockets in a temp dir, is started and stopped by PID, and its traffic stays
on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from aiorun.testing.ocibundle import remove_cgroup_parent, runtime_path
from aiorun.testing.podmantrace import podman_traces_removed
from aiorun.testing.util import free_port, wait_until

pytestmark = pytest.mark.integration


class Podman:
    """podman with its config, storage, libpod dirs and TMPDIR under ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        for d in ("root", "run", "tmp", "libpod"):
            (base / d).mkdir(parents=True, exist_ok=True)
        # nofile/nproc: podman's defaults (1048576) exceed this sandbox's hard limits; runc
        # refuses them exactly as aiorun-runtime does.
        (base / "containers.conf").write_text(f"""
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "aiorun"
[engine.runtimes]
aiorun = ["{runtime_path()}"]
""")
        (base / "storage.conf").write_text(f"""
[storage]
driver = "overlay"
graphroot = "{base / 'root'}"
runroot = "{base / 'run'}"
""")
        self.env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(base / "storage.conf"),
                        TMPDIR=str(base / "tmp"))

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        r = subprocess.run(["podman", "--tmpdir", str(self.base / "libpod"), *args],
                           env=self.env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {r.returncode}\n{r.stderr}")
        return r


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path):
    traces = podman_traces_removed()        # what podman leaves on the host: removed
    traces.__enter__()
    had_parent = {str(p) for p in Path("/sys/fs/cgroup").glob("*/libpod_parent")}
    # Short: slirp4netns puts an API socket under --tmpdir (unix paths < 108 bytes).
    base = Path(tempfile.mkdtemp(prefix="aioc-pm-", dir="/tmp"))
    p = Podman(base)
    p("import", str(busybox_tar), "localhost/bb:latest")
    yield p
    p("rm", "-a", "-f", check=False)
    p("system", "reset", "-f", check=False)
    subprocess.run(["umount", "-R", "-l", str(base / "root" / "overlay")],
                   capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
    traces.__exit__(None, None, None)
    from bench.isolate import rmdir_cgroup_tree
    for parent in Path("/sys/fs/cgroup").glob("*/libpod_parent"):
        if str(parent) not in had_parent:   # podman's cgroup parent (and conmon's), made here
            assert wait_until(lambda: not rmdir_cgroup_tree(parent), timeout=10)


def test_podman_info_names_the_runtime(podman):
    info = json.loads(podman("info", "--format", "json").stdout)
    assert info["host"]["ociRuntime"]["name"] == "aiorun"
    assert "aiorun-runtime version" in info["host"]["ociRuntime"]["version"]


def test_podman_run(podman):
    r = podman("run", "--rm", "--network", "none", "localhost/bb", "sh", "-c",
               "echo hi; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\\t'")
    # podman's default seccomp profile is compiled and loaded by aiorun-runtime
    assert r.stdout.splitlines() == ["hi", "NoNewPrivs:0", "Seccomp:2"]
    r = podman("run", "--rm", "--network", "none", "localhost/bb", "sh", "-c", "exit 5",
               check=False)
    assert r.returncode == 5


def test_podman_detached_exec_stop_rm(podman):
    cid = podman("run", "-d", "--network", "none", "localhost/bb", "sleep", "300").stdout.strip()
    try:
        assert podman("exec", cid, "sh", "-c", "echo in; cat /proc/1/cmdline").stdout == \
            "in\nsleep\x00300\x00"
        r = podman("exec", cid, "sh", "-c", "exit 3", check=False)
        assert r.returncode == 3
        podman("stop", "-t", "1", cid)
        state = json.loads(podman("inspect", cid).stdout)[0]["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 137
    finally:
        podman("rm", "-f", cid, check=False)
    assert podman("ps", "-a", "-q").stdout.strip() == ""


def test_podman_memory_limit(podman):
    r = podman("run", "--rm", "--network", "none", "-m", "48m", "localhost/bb",
               "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert r.stdout.strip() == str(48 << 20)


def test_podman_published_port(podman):
    port = free_port()
    cid = podman("run", "-d", "--network", "slirp4netns:port_handler=slirp4netns",
                 "-p", f"127.0.0.1:{port}:8080", "localhost/bb", "sh", "-c",
                 "mkdir -p /www && echo hello-podman > /www/index.html && "
                 "exec httpd -f -p 8080 -h /www").stdout.strip()
    try:
        def get() -> bytes | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    return resp.read()
            except OSError:
                return None
        assert wait_until(lambda: get() == b"hello-podman\n", timeout=20)
    finally:
        podman("rm", "-f", "-t", "0", cid, check=False)


# --- containerd --------------------------------------------------------------------------------

#: containerd's CRI plugin with an ``aiorun`` runtime handler, as docs/oci-runtime.md shows
#: it for Kubernetes (a RuntimeClass with ``handler: aiorun`` selects it)
CRI_CONFIG = """
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{base}/cni-bin"
    conf_dir = "{base}/cni-conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.aiorun]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.aiorun.options]
        BinaryName = "{binary}"
        SystemdCgroup = false
"""


class Containerd:
    def __init__(self, base: Path, cri: bool = False) -> None:
        self.base = base
        self.sock = base / "c.sock"
        plugins = (CRI_CONFIG.format(base=base, binary=runtime_path()) if cri else
                   'disabled_plugins = ["io.containerd.grpc.v1.cri"]')
        (base / "config.toml").write_text(f"""
version = 2
root = "{base / 'root'}"
state = "{base / 'state'}"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
{plugins}
""")
        self.log = open(base / "containerd.log", "wb")
        self.proc = subprocess.Popen(["containerd", "--config", str(base / "config.toml")],
                                     stdout=self.log, stderr=self.log)
        assert wait_until(lambda: self.ctr("version", check=False).returncode == 0,
                          timeout=30), (base / "containerd.log").read_text()[-2000:]

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["ctr", "-a", str(self.sock), "-n", "aiorun-test", *args],
                           capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {r.returncode}\n{r.stderr}")
        return r

    def runtime_flags(self) -> list[str]:
        return ["--runc-binary", runtime_path(), "--runc-root", str(self.base / "runc")]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory, podman):
    base = tmp_path_factory.mktemp("ctd")
    archive = base / "bb.tar"
    podman("save", "--format", "docker-archive", "-o", str(archive), "localhost/bb:latest")
    c = Containerd(base)
    try:
        c.ctr("images", "import", str(archive))
        yield c
    finally:
        for t in c.ctr("task", "ls", "-q", check=False).stdout.split():
            c.ctr("task", "kill", "-s", "KILL", t, check=False)
            time.sleep(0.2)
            c.ctr("task", "delete", "-f", t, check=False)
        for t in c.ctr("container", "ls", "-q", check=False).stdout.split():
            c.ctr("container", "delete", t, check=False)
        c.ctr("images", "rm", "localhost/bb:latest", check=False)
        c.stop()
        remove_cgroup_parent("/aiorun-test")   # the namespace's parent (kept, as runc)
        subprocess.run(["umount", "-R", "-l", str(base / "state")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_containerd_run(containerd):
    r = containerd.ctr("run", "--rm", *containerd.runtime_flags(), "localhost/bb:latest",
                       "r1", "sh", "-c", "echo hi from containerd; cat /proc/self/cgroup")
    lines = r.stdout.splitlines()
    assert lines[0] == "hi from containerd"
    assert any(line.endswith(":/aiorun-test/r1") for line in lines[1:])    # cgroupsPath


def test_containerd_detached_exec_pause_kill_delete(containerd):
    c = containerd
    c.ctr("run", "-d", *c.runtime_flags(), "localhost/bb:latest", "d1", "sleep", "300")
    tasks = c.ctr("task", "ls").stdout
    assert "d1" in tasks and "RUNNING" in tasks
    r = c.ctr("task", "exec", "--exec-id", "e1", "d1", "sh", "-c", "echo exec; exit 4",
              check=False)
    assert (r.returncode, r.stdout) == (4, "exec\n")
    c.ctr("task", "pause", "d1")
    assert "PAUSED" in c.ctr("task", "ls").stdout
    c.ctr("task", "resume", "d1")
    c.ctr("task", "kill", "-s", "KILL", "d1")
    assert wait_until(lambda: "STOPPED" in c.ctr("task", "ls").stdout, timeout=20)
    c.ctr("task", "delete", "d1")
    c.ctr("container", "delete", "d1")
    assert not any((c.base / "runc" / "aiorun-test").glob("d1"))
    assert not Path("/sys/fs/cgroup/pids/aiorun-test/d1").exists()


def test_containerd_cri_plugin_takes_the_aiorun_handler():
    """The CRI plugin (what the kubelet talks to) loads with the ``aiorun`` handler whose
    shim options name aiorun-runtime; a pod with ``runtimeClassName: aiorun`` gets exactly
    the shim + BinaryName path ``ctr run --runc-binary`` exercises above. (No kubelet or
    crictl here: the CRI calls themselves are not made.)"""
    base = Path(tempfile.mkdtemp(prefix="aioc-cri-", dir="/tmp"))
    c = Containerd(base, cri=True)
    try:
        plugins = c.ctr("plugins", "ls").stdout
        assert any(line.split()[:2] == ["io.containerd.grpc.v1", "cri"] and
                   line.split()[-1] == "ok" for line in plugins.splitlines()), plugins
    finally:
        c.stop()
        log = (base / "containerd.log").read_text()
        subprocess.run(["umount", "-R", "-l", str(base / "state")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    started = next(line for line in log.splitlines() if "Start cri plugin with config" in line)
    assert f"BinaryName:{runtime_path()}" in started, started
