"""A registry served over TLS (Debian's docker-registry with ``http.tls``, a CA the test
makes): the daemon trusts it through a per-registry CA directory
(``<certs dir>/<host:port>/ca.crt``, Docker's ``certs.d`` layout; the directory comes from
``AIORUN_REGISTRY_CERTS_DIR`` so no test touches /etc), and names the fix when it cannot:
no CA (the registry is loopback, so plain HTTP was tried), the wrong CA (verification fails).
The loopback-only guard still refuses a name that only looks local."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.testing.registry import start_registry
from aiorun.testing.tlscerts import make_ca

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("docker-registry") is None
                                 or shutil.which("skopeo") is None,
                                 reason="docker-registry and skopeo come with scripts/setup.sh")]


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def fails(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0, f"unexpectedly succeeded: {r.stdout}"
    return r.stdout + r.stderr


@pytest.fixture
def tls_setup(aiorun_paths, tmp_path):
    """(paths, registry over TLS, its CA, the daemon's certs dir)."""
    ca = make_ca(tmp_path / "ca")
    server = ca.issue(tmp_path / "server", "127.0.0.1")
    reg = start_registry(tmp_path, tls=(server.cert, server.key, ca.cert))
    certs = tmp_path / "certs.d"
    certs.mkdir()
    d = start_daemon(aiorun_paths, extra_env={"AIORUN_REGISTRY_CERTS_DIR": str(certs)})
    yield aiorun_paths, reg, ca, certs
    d.stop_all()
    reg.stop()


def test_tls_registry_with_a_per_registry_ca(tls_setup, tmp_path, busybox_tar):
    paths, reg, ca, certs = tls_setup
    host = reg.host
    ok(run_cli(paths, "import", str(busybox_tar), f"{host}/tls:1"))

    # no CA configured: a loopback registry is insecure by default, so plain HTTP was tried;
    # the registry answered that it speaks TLS, and the error says where the CA goes
    out = fails(run_cli(paths, "push", f"{host}/tls:1"))
    assert f"the registry {host} speaks TLS" in out, out
    assert f"install its CA in {certs}/{host}/ca.crt" in out, out

    # the wrong CA: TLS is used (a CA dir means TLS), verification fails, the fix is named
    other = make_ca(tmp_path / "other-ca", "some other CA")
    (certs / host).mkdir()
    shutil.copy(other.cert, certs / host / "ca.crt")
    out = fails(run_cli(paths, "push", f"{host}/tls:1"))
    assert f"TLS handshake with {host} failed" in out, out
    assert "CERTIFICATE_VERIFY_FAILED" in out, out
    assert f"install its CA in {certs}/{host}/ca.crt" in out, out

    # the right CA: push, read back by skopeo over verified TLS, removed, pulled, run
    shutil.copy(ca.cert, certs / host / "ca.crt")
    out = ok(run_cli(paths, "push", f"{host}/tls:1"))
    m = re.search(r"^1: digest: (sha256:[0-9a-f]{64})", out, re.M)
    assert m, out
    skopeo_certs = tmp_path / "skopeo-certs"
    skopeo_certs.mkdir()
    shutil.copy(ca.cert, skopeo_certs / "ca.crt")
    r = subprocess.run(["skopeo", "inspect", "--cert-dir", str(skopeo_certs),
                        f"docker://{host}/tls:1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Digest"] == m.group(1)
    ok(run_cli(paths, "rmi", f"{host}/tls:1"))
    out = ok(run_cli(paths, "pull", f"{host}/tls:1"))
    assert f"Digest: {m.group(1)}" in out
    assert ok(run_cli(paths, "run", "--rm", f"{host}/tls:1", "echo", "over tls")).strip() \
        == "over tls"


def test_loopback_guard_refuses_names_that_only_look_local(tls_setup):
    """The guard (set for every daemon of the test session) judges the name, never its
    address: a DNS name is refused even with a CA directory for it, before any lookup."""
    paths, reg, ca, certs = tls_setup
    for name in (f"127.0.0.1.nip.io:{reg.port}", f"localhost.example:{reg.port}"):
        (certs / name).mkdir()
        shutil.copy(ca.cert, certs / name / "ca.crt")
        out = fails(run_cli(paths, "pull", f"{name}/tls:1"))
        assert f"cannot reach the registry {name}: only loopback registries are allowed" \
            in out, out
