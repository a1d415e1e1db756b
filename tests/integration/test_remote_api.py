"""Remote use and metrics: ``aiorun serve -H tcp://... --tlsverify`` driven by the docker CLI's
``--tlsverify`` with certificates made here (loopback only), a plain TCP listener on loopback,
the refusals, and ``--metrics-addr`` scraped over HTTP."""

from __future__ import annotations

import socket
import ssl
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.testing.tlscerts import make_certs
from aiorun.testing.util import free_port
from netns_util import owned_state, remove_all_and_stop

DOCKER = "/usr/local/bin/docker"

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path(DOCKER).exists(), reason="no docker CLI v28")]


def _daemon_scope(prefix: str):
    root = Path(tempfile.mkdtemp(prefix=prefix))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    return root, run, Paths(root / "root", run)


def test_mutual_tls_with_the_docker_cli(busybox_tar, monkeypatch):
    # requests prefers these over the session's CA (a known requests quirk): docker-py
    # must verify against the test's CA
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    root, run, paths = _daemon_scope("aiorun-tls-")
    certs = make_certs(root / "certs")
    port = free_port()
    before = owned_state(paths)
    d = start_daemon(paths, serve_args=[
        "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(certs.ca),
        "--tlscert", str(certs.server_cert), "--tlskey", str(certs.server_key)])
    host = ["-H", f"tcp://127.0.0.1:{port}"]

    def dk(*args: str, cert: Path = certs.client_cert, key: Path = certs.client_key,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *host, "--tlsverify", "--tlscacert", str(certs.ca),
                               "--tlscert", str(cert), "--tlskey", str(key), *args],
                              capture_output=True, text=True, timeout=60, input=input)
    try:
        assert run_cli(paths, "import", str(busybox_tar), "busybox").returncode == 0
        r = dk("version", "--format", "{{.Server.APIVersion}}")
        assert r.returncode == 0 and r.stdout.strip(), r.stderr
        r = dk("run", "--rm", "-i", "--network", "none", "busybox", "sh", "-c",
               "cat; echo over-tls", input="stdin-over-tls\n")
        assert r.returncode == 0 and r.stdout == "stdin-over-tls\nover-tls\n", r.stderr
        assert dk("run", "-d", "--network", "none", "--name", "remote", "busybox",
                  "sleep", "600").returncode == 0
        r = dk("exec", "remote", "echo", "exec-over-tls")
        assert r.stdout == "exec-over-tls\n", r.stderr
        assert "remote" in dk("ps").stdout
        # a client certificate from another CA, or none at all, gets nowhere
        r = dk("ps", cert=certs.rogue_cert, key=certs.rogue_key)
        assert r.returncode != 0 and "remote" not in r.stdout
        r = subprocess.run([DOCKER, *host, "--tls", "--tlscacert", str(certs.ca), "ps"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "remote" not in r.stdout
        # plain HTTP to the TLS port is refused (the connection is closed, no answer)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"OK" not in s.recv(100)
        # the unix socket still serves, without TLS
        assert d.client().get("/containers/json")[0]["Names"] == ["/remote"]
        # docker-py over TLS
        import docker
        tls = docker.tls.TLSConfig(client_cert=(str(certs.client_cert), str(certs.client_key)),
                                   verify=str(certs.ca))
        client = docker.DockerClient(base_url=f"https://127.0.0.1:{port}", tls=tls)
        assert client.containers.get("remote").exec_run("echo py").output == b"py\n"
        client.close()
        ctx = ssl.create_default_context(cafile=str(certs.ca))   # no client certificate
        with pytest.raises((ssl.SSLError, OSError)):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                    t.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    if not t.recv(100):
                        raise OSError("closed")
        assert "TLS handshake" in paths.daemon_log.read_text()
    finally:
        left = remove_all_and_stop(d, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"


def test_plain_tcp_on_loopback_and_metrics(busybox_tar):
    root, run, paths = _daemon_scope("aiorun-tcp-")
    port, mport = free_port(), free_port()
    extra = run / "extra.sock"
    before = owned_state(paths)
    d = start_daemon(paths, serve_args=["-H", f"tcp://127.0.0.1:{port}",
                                        "-H", f"unix://{extra}",
                                        "--metrics-addr", f"127.0.0.1:{mport}"])
    try:
        assert run_cli(paths, "import", str(busybox_tar), "busybox").returncode == 0
        for host in (f"tcp://127.0.0.1:{port}", f"unix://{extra}"):
            r = subprocess.run([DOCKER, "-H", host, "run", "--rm", "--network", "none",
                                "busybox", "echo", "plain"], capture_output=True, text=True,
                               timeout=60)
            assert r.returncode == 0 and r.stdout == "plain\n", r.stderr
        assert "plain TCP without TLS" in paths.daemon_log.read_text()
        subprocess.run([DOCKER, "-H", f"unix://{paths.socket}", "run", "-d", "--network",
                        "none", "--name", "up", "busybox", "sleep", "600"], check=True,
                       capture_output=True, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = resp.read().decode()
        assert 'engine_daemon_container_states_containers{state="running"} 1' in text
        assert 'engine_daemon_container_states_containers{state="stopped"} 0' in text
        assert "engine_daemon_engine_info{" in text and 'graphdriver="' in text
        assert "aiorun_container_starts_total 3" in text
        assert 'engine_daemon_container_actions_seconds_count{action="start"} 3' in text
    finally:
        left = remove_all_and_stop(d, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"
    assert not extra.exists()


def test_unsafe_listeners_are_refused_before_anything_starts(tmp_path):
    paths = Paths(tmp_path / "root", tmp_path / "run")
    for args, words in (
            (["-H", "tcp://0.0.0.0:2375"], "without --tlsverify"),
            (["-H", "tcp://0.0.0.0:2376", "--tls", "--tlscert", "c", "--tlskey", "k"],
             "without --tlsverify"),
            (["-H", "ssh://host"], "unix:// and tcp:// only"),
            (["--tlsverify", "-H", "unix:///tmp/x.sock"], "need a tcp:// address"),
            (["-H", "tcp://127.0.0.1:2376", "--tlsverify", "--tlscacert", "/nonexistent",
              "--tlscert", "/nonexistent", "--tlskey", "/nonexistent"],
             "cannot load the TLS certificates"),
            (["--metrics-addr", "no-port"], "want HOST:PORT")):
        r = run_cli(paths, "serve", *args, timeout=30)
        assert r.returncode == 1 and words in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not (paths.run / "aiorun.sock").exists()
    r = run_cli(paths, "serve", "--help")
    assert r.returncode == 0
    for flag in ("--metrics-addr", "--tlsverify", "--tlscacert", "-H, --host"):
        assert flag in r.stdout
