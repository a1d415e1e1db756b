"""The daemon as a process: start/stop under both backends, the system endpoints, errors,
autostart from the CLI, the pidfile lock, and real Docker clients against it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from aiorun import API_VERSION
from aiorun.api.client import ApiError
from aiorun.testing.daemon import run_cli, start_daemon, stop_autostarted, stop_spawner

pytestmark = pytest.mark.integration

BACKENDS = ["asyncio", "trio"]


def raw(sock_path, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes or the timeout."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(sock_path))
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


@pytest.mark.parametrize("daemon", BACKENDS, indirect=True)
def test_system_endpoints(daemon, host_state):
    c = daemon.client()
    r = c.request("GET", "/_ping")
    assert r.read() == b"OK"
    assert r.headers["api-version"] == API_VERSION and r.headers["ostype"] == "linux"
    r.close()
    r = c.request("HEAD", "/v1.41/_ping")
    assert r.status == 200 and r.headers["api-version"] == API_VERSION
    r.close()
    v = c.get("/v1.45/version")
    assert v["ApiVersion"] == API_VERSION and v["MinAPIVersion"] == "1.24"
    assert v["Backend"] == daemon.proc.args[daemon.proc.args.index("--backend") + 1]
    info = c.get("/info")
    for key in ("ID", "Containers", "ContainersRunning", "Images", "Driver", "DriverStatus",
                "CgroupDriver", "CgroupVersion", "KernelVersion", "NCPU", "MemTotal",
                "DockerRootDir", "ServerVersion", "Backend"):
        assert key in info, key
    assert info["DockerRootDir"] == str(daemon.paths.root)
    services = info["Supervisor"]["Services"]      # the supervised services are running
    assert services["api"]["Status"] == "running" and services["api"]["Failures"] == 0
    assert services["event bus socket"]["Status"] == "running"
    assert oct(os.stat(daemon.socket).st_mode & 0o777) == "0o660"


def test_errors_are_json(daemon):
    c = daemon.client()
    with pytest.raises(ApiError) as e:
        c.get("/v1.45/no/such/thing")
    assert e.value.status == 404 and "/no/such/thing" in e.value.message
    with pytest.raises(ApiError) as e:
        c.post("/_ping")
    assert e.value.status == 405
    r = c.request("GET", "/nope", check=False)
    assert r.headers["content-type"] == "application/json" and "message" in r.json()
    r.close()


def test_keep_alive_and_bad_requests(daemon):
    out = raw(daemon.socket, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
                             b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 2 and b'"ApiVersion"' in out
    out = raw(daemon.socket, b"NONSENSE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    # A JSON body over the limit is refused without reading it all.
    from aiorun.api.server import MAX_BUFFERED_BODY
    out = raw(daemon.socket, b"POST /aiorun/system/reset HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n{" % (MAX_BUFFERED_BODY + 10))
    assert out.startswith(b"HTTP/1.1 413")


def test_slow_client_does_not_block_others(daemon):
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(daemon.socket))
    try:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHo")  # and never finishes
        t0 = time.monotonic()
        assert daemon.client().get("/version")["ApiVersion"] == API_VERSION
        assert time.monotonic() - t0 < 2
    finally:
        s.close()


def test_sigterm_with_open_connection_cleans_up(aiorun_paths, host_state):
    d = start_daemon(aiorun_paths, backend="trio")
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(d.socket))  # an idle keep-alive connection must not delay the shutdown
    try:
        t0 = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - t0 < 4
    finally:
        s.close()
        d.stop_all()
    assert not d.socket.exists() and not aiorun_paths.pidfile.exists()
    assert not aiorun_paths.bus_socket.exists()


def test_second_daemon_refused(daemon):
    r = run_cli(daemon.paths, "serve")
    assert r.returncode != 0
    assert "already running" in r.stderr and str(daemon.pid) in r.stderr
    assert daemon.alive()
    assert daemon.client().request("GET", "/_ping").read() == b"OK"


def test_autostart_from_cli(aiorun_paths, cli):
    assert not aiorun_paths.socket.exists()
    r = cli("info")
    assert r.returncode == 0, r.stderr
    assert "Server Version" in r.stdout and str(aiorun_paths.root) in r.stdout
    pid = int(aiorun_paths.pidfile.read_text())
    # The daemon is detached: its own session, not the CLI's.
    assert os.getsid(pid) == pid
    r = cli("version", "--format", "json")
    assert json.loads(r.stdout)["Server"]["ApiVersion"] == API_VERSION
    assert stop_autostarted(aiorun_paths)
    for _ in range(100):
        if not aiorun_paths.socket.exists():
            break
        time.sleep(0.05)
    assert not aiorun_paths.socket.exists() and not aiorun_paths.pidfile.exists()


def test_autostart_failure_quotes_the_log(aiorun_paths, cli):
    # A daemon that cannot start: an unknown storage driver (a run root where a file is
    # was the case here once; the CLI now finds that itself before starting a daemon, see
    # test_cli_daemon_lost.py). The daemon's own reason is quoted, with where its log is.
    r = cli("info", timeout=30, extra_env={"AIORUN_STORAGE_DRIVER": "bogus"})
    assert r.returncode != 0
    assert r.stderr.startswith("aiorun: the aiorun daemon failed to start (exit status 1): "
                               "unknown storage driver 'bogus' (known: "), r.stderr
    assert r.stderr.endswith(f" (see {aiorun_paths.daemon_log})\n") and \
        r.stderr.count("\n") == 1, r.stderr


def test_system_reset_requires_force(daemon, cli):
    r = cli("system", "reset", input="")
    assert r.returncode == 1 and "-f" in r.stderr
    r = cli("system", "reset", "-f")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Reset:")


@pytest.mark.skipif(not shutil.which("docker"), reason="docker CLI not installed")
def test_docker_cli_version_and_info(daemon):
    host = f"unix://{daemon.socket}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    r = subprocess.run(["docker", "-H", host, "version", "--format", "{{json .}}"],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)
    assert v["Server"]["ApiVersion"] == API_VERSION
    assert v["Client"]["ApiVersion"] == API_VERSION  # negotiated down via /_ping
    r = subprocess.run(["docker", "-H", host, "info", "--format", "{{json .}}"],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["DockerRootDir"] == str(daemon.paths.root)
    r = subprocess.run(["docker", "-H", host, "info"], capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode == 0 and "Server Version: " in r.stdout, r.stderr


def test_docker_py(daemon):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{daemon.socket}", version="auto")
    try:
        assert client.version()["ApiVersion"] == API_VERSION
        assert client.ping() is True
        assert client.info()["DockerRootDir"] == str(daemon.paths.root)
    finally:
        client.close()


def test_restart_after_crash(aiorun_paths, host_state):
    d = start_daemon(aiorun_paths)
    d.kill9()
    assert aiorun_paths.pidfile.exists() and d.socket.exists()  # left behind by the crash
    d2 = start_daemon(aiorun_paths, backend="trio")
    try:
        assert d2.client().get("/version")["Backend"] == "trio"
        assert int(aiorun_paths.pidfile.read_text()) == d2.pid
    finally:
        assert d2.stop() == 0
        stop_spawner(aiorun_paths)
    assert not d2.socket.exists()


def test_autostart_honours_backend_env(aiorun_paths, cli):
    r = cli("info", "--format", "json", extra_env={"AIORUN_BACKEND": "trio"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Backend"] == "trio"


def test_streamed_upload_through_unknown_route_keeps_daemon_healthy(daemon):
    # A large upload to a path nobody serves: answered 404, the daemon keeps serving.
    c = daemon.client()
    body = iter([b"x" * 65536] * 200)
    r = c.request("POST", "/no/upload", body=body, check=False)
    assert r.status == 404
    r.close()
    assert c.request("GET", "/_ping").read() == b"OK"


def test_concurrent_autostarts_share_one_daemon(aiorun_paths, cli):
    from aiorun.testing.daemon import aiorun_executable, _env
    procs = [subprocess.Popen([aiorun_executable(), "version", "--format", "json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(aiorun_paths)) for _ in range(4)]
    outs = [p.communicate(timeout=30) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all(json.loads(o)["Server"]["ApiVersion"] == API_VERSION for o, _ in outs)
    serving = [line for line in aiorun_paths.daemon_log.read_text().splitlines()
               if "API listening" in line]
    assert len(serving) == 1  # the losers of the race saw the lock and exited


def test_system_df(daemon, busybox_tar, cli):
    assert cli("import", str(busybox_tar), "busybox").returncode == 0
    df = daemon.client().get("/system/df")
    assert set(df) >= {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"}
    assert [i["RepoTags"] for i in df["Images"]] == [["busybox:latest"]]
    assert df["LayersSize"] > 0
    r = cli("system", "df")
    assert r.returncode == 0 and r.stdout.splitlines()[1].split()[:2] == ["Images", "1"]
    if shutil.which("docker"):
        r = subprocess.run(["docker", "-H", f"unix://{daemon.socket}", "system", "df"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "Images" in r.stdout, r.stderr


def test_sighup_is_ignored_sigint_stops(aiorun_paths):
    d = start_daemon(aiorun_paths)
    try:
        os.kill(d.pid, signal.SIGHUP)
        time.sleep(0.3)
        assert d.alive() and d.client().request("GET", "/_ping").read() == b"OK"
        os.kill(d.pid, signal.SIGINT)
        assert d.proc.wait(10) == 0
        assert not d.socket.exists() and not aiorun_paths.pidfile.exists()
    finally:
        d.stop_all()


def test_bad_serve_options_fail_clearly(aiorun_paths, host_state):
    r = run_cli(aiorun_paths, "serve", "--storage-driver", "bogus", timeout=30)
    assert r.returncode == 1 and "bogus" in r.stderr, r.stderr
    assert not aiorun_paths.pidfile.exists() and not aiorun_paths.socket.exists()
    stop_spawner(aiorun_paths)
    r = run_cli(aiorun_paths, "serve", "--backend", "curio", timeout=30)
    assert r.returncode == 1 and "curio" in r.stderr
    r = run_cli(aiorun_paths, "serve", "--frobnicate", timeout=30)
    assert r.returncode == 1 and "--frobnicate" in r.stderr
