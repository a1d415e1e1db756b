"""A third-party driver package, installed into a fresh venv, is found through its entry
points and used for real by ``aiorun serve --storage-driver example``; a broken driver package
is reported by name and does not take the engine down.

The venv sees aiorun and its dependencies through a ``.pth`` that adds this interpreter's
site-packages, and the packages are installed with pip (``--no-deps``; the build backend comes
from pip's configured index, a local one on these machines).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from aiorun.api.client import Client
from aiorun.testing.daemon import stop_spawner

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aiorun-example-driver"


def _pip_install(py: Path, pkg: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                        "--no-deps", "--disable-pip-version-check", str(pkg)],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PIP_NO_INPUT="1"))
    assert r.returncode == 0, f"pip install {pkg.name} failed:\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def venv() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="aiorun-venv-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "v")],
                       check=True)
        py = tmp / "v" / "bin" / "python"
        site = subprocess.run([str(py), "-c", "import sysconfig;print(sysconfig.get_path("
                               "'purelib'))"], capture_output=True, text=True,
                              check=True).stdout.strip()
        host_site = sysconfig.get_path("purelib")
        Path(site, "aiorun-host.pth").write_text(
            f"import site; site.addsitedir({host_site!r})\n")
        # build from a copy: setuptools writes build/ and *.egg-info next to the sources
        src = tmp / "example"
        shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__"))
        _pip_install(py, src)
        broken = tmp / "broken"
        (broken / "aiorun_broken_driver").mkdir(parents=True)
        (broken / "pyproject.toml").write_text(textwrap.dedent("""\
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "aiorun-broken-driver"
            version = "0.0.1"
            [project.entry-points."aiorun.storage"]
            broken = "aiorun_broken_driver:BrokenDriver"
            """))
        (broken / "aiorun_broken_driver" / "__init__.py").write_text(
            'raise RuntimeError("this driver package is broken on purpose")\n')
        _pip_install(py, broken)
        yield py
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_discovered_through_entry_points(venv: Path) -> None:
    code = textwrap.dedent("""\
        import json
        from aiorun.drivers.registry import discover, STORAGE_GROUP, NETWORK_GROUP
        out = {}
        for g in (STORAGE_GROUP, NETWORK_GROUP):
            for name, e in discover(g).items():
                out[name] = [e.cls.__module__ if e.cls else None, e.error]
        print(json.dumps(out))
        """)
    r = subprocess.run([str(venv), "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert found["example"] == ["aiorun_example_driver.storage", None]
    assert found["null"] == ["aiorun_example_driver.network", None]
    assert found["broken"][0] is None and "broken on purpose" in found["broken"][1]
    assert found["copy"][1] is None and found["none"][1] is None   # built-ins unaffected
    assert "broken" in r.stderr    # the failure is logged by name


def test_example_passes_the_conformance_kit(venv: Path, tmp_path: Path) -> None:
    r = subprocess.run([str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "aiorun.testing.conformance",
                        "--pyargs", "aiorun.testing.conformance.suite",
                        "--storage-driver-class",
                        "aiorun_example_driver.storage:ExampleCopyDriver",
                        "--network-driver-class", "aiorun_example_driver.network:NullDriver"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout


def _cli(venv: Path, paths, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv), "-m", "aiorun.cli.main", "--root", str(paths.root),
                           "--run-root", str(paths.run), *args], capture_output=True,
                          text=True, timeout=timeout)


def _serve(venv: Path, paths, driver: str) -> subprocess.Popen:
    log = open(paths.root / "serve.log", "ab")
    try:
        return subprocess.Popen([str(venv), "-m", "aiorun.cli.main", "--root", str(paths.root),
                                 "--run-root", str(paths.run), "serve", "--storage-driver",
                                 driver], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    finally:
        log.close()


def _wait_ping(proc: subprocess.Popen, paths, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (paths.root / "serve.log").read_text()[-3000:]
        try:
            r = Client(paths.socket).request("GET", "/_ping", check=False)
            r.close()
            if r.status == 200:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError("daemon did not start:\n" + (paths.root / "serve.log").read_text())


def _stop(proc: subprocess.Popen, paths) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    stop_spawner(paths, force=True)


def _own_host_state(paths) -> dict[str, list[str]]:
    """Host state this daemon made: mounts under its roots, its scoped bridge and nft table.

    (Scoped instead of the global ``host_state`` snapshot: other test runs may be changing
    the host at the same time.)"""
    roots = (str(paths.root), str(paths.run))
    with open("/proc/self/mountinfo") as f:
        mounts = [ln.split(" ")[4] for ln in f if ln.split(" ")[4].startswith(roots)]
    out = {"mounts": mounts}
    try:
        from aiorun_plugins.network.bridge import BridgeDriver
        drv = BridgeDriver(paths.networks / "drivers" / "bridge")
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        out["links"] = [n for n in (f"aior{drv.scope}0",) if f" {n}:" in links]
        out["nft"] = [t for t in tables.splitlines() if t.split()[-1:] == [drv.table]]
    except ImportError:
        pass
    return {k: v for k, v in out.items() if v}


def test_daemon_runs_a_container_on_the_example_driver(venv, aiorun_paths, busybox_tar
                                                       ) -> None:
    proc = _serve(venv, aiorun_paths, "example")
    try:
        _wait_ping(proc, aiorun_paths)
        info = _cli(venv, aiorun_paths, "info")
        assert "Storage Driver: example" in info.stdout, info.stdout + info.stderr
        r = _cli(venv, aiorun_paths, "import", str(busybox_tar), "busybox:latest")
        assert r.returncode == 0, r.stderr
        r = _cli(venv, aiorun_paths, "run", "--rm", "--network", "none", "busybox", "sh", "-c",
                 "echo hello > /tmp/f && cat /tmp/f && ls /bin/busybox")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["hello", "/bin/busybox"]
        layers = list((aiorun_paths.root / "storage" / "example" / "layers").iterdir())
        assert layers, "the example driver holds the image layer"
        # the network driver from the same package, through a user network
        r = _cli(venv, aiorun_paths, "network", "create", "-d", "null", "nullnet")
        assert r.returncode == 0, r.stderr
        r = _cli(venv, aiorun_paths, "run", "--rm", "--network", "nullnet", "busybox", "sh",
                 "-c", "ls /sys/class/net")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["lo"]
        r = _cli(venv, aiorun_paths, "system", "reset", "-f")
        assert r.returncode == 0, r.stderr
    finally:
        _stop(proc, aiorun_paths)
    logs = (aiorun_paths.root / "serve.log").read_text() + aiorun_paths.daemon_log.read_text()
    assert "'broken' failed to load" in logs and "broken on purpose" in logs
    assert not _own_host_state(aiorun_paths), "the daemon left host state behind"


def test_broken_driver_is_named_and_the_engine_survives(venv, aiorun_paths) -> None:
    r = _cli(venv, aiorun_paths, "serve", "--storage-driver", "broken", timeout=60)
    assert r.returncode != 0
    assert "broken" in r.stderr and "broken on purpose" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # a daemon with the default driver still starts next to the broken package
    proc = _serve(venv, aiorun_paths, "copy")
    try:
        _wait_ping(proc, aiorun_paths)
        info = _cli(venv, aiorun_paths, "info")
        assert info.returncode == 0 and "Storage Driver: copy" in info.stdout
        assert _cli(venv, aiorun_paths, "system", "reset", "-f").returncode == 0
    finally:
        _stop(proc, aiorun_paths)
    logs = (aiorun_paths.root / "serve.log").read_text() + aiorun_paths.daemon_log.read_text()
    assert "'broken' failed to load" in logs and "broken on purpose" in logs
    assert not _own_host_state(aiorun_paths), "the daemon left host state behind"
