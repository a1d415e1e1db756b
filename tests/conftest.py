"""Shared fixtures.

* ``busybox_tar``: a rootfs tarball made once per run from Debian's busybox-static.
* ``aiorun_paths``: fresh temporary state and runtime roots (never the user's).
* ``host_state``: snapshot of the host state aiorun may touch, compared after the test.
* ``_session_host_guard`` (autouse, session): the same for the whole run, plus processes the
  tests started and the default roots (see :mod:`aiorun.testing.hostguard`); fails the run
  if anything is left. ``AIORUN_TEST_SHARED_HOST=1`` (other aiorun users on this host) turns
  the host-wide categories into a report; exact findings still fail.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing import hostguard
from aiorun.testing.images import write_busybox_rootfs_tar


def pytest_addoption(parser):
    # The long variants of the fault suite (tests/fault) and of the DNS burst: 1,000
    # create/start/rm with random kills, 10,000 DNS queries. CI runs the bounded ones.
    parser.addoption("--soak", action="store_true", default=False,
                     help="run the long fault-suite and DNS-burst variants")


def pytest_configure(config):
    # Before any test (and any import-time code) can start aiorun: never the default roots.
    config._aiorun_session = hostguard.isolate_environment()


@pytest.fixture(scope="session", autouse=True)
def _session_host_guard(request):
    token, fallback = request.config._aiorun_session
    before = hostguard.snapshot(token, fallback)
    yield
    found = hostguard.settled_leaks(before, token, fallback)
    if found.get("processes"):
        hostguard.stop_session_processes(token)  # reported below; the host is left clean
    subprocess.run(["rm", "-rf", "--one-file-system", str(fallback)], check=False)
    fatal = found if not os.environ.get("AIORUN_TEST_SHARED_HOST") else {
        k: v for k, v in found.items() if k in hostguard.EXACT}
    request.config._aiorun_leaks = found
    if fatal:
        pytest.fail(hostguard.report(fatal), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _container_tools_traces():
    """skopeo and podman write host paths whatever roots they are given (a blob-info cache
    under /var/lib/containers, /run/containers, podman's lock in /dev/shm): what the run's
    peers made there is removed at its end."""
    from aiorun.testing.podmantrace import podman_traces_removed
    with podman_traces_removed():
        yield


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every anyio test runs on both backends the daemon supports."""
    return str(request.param)


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_busybox_rootfs_tar(tmp_path_factory.mktemp("images") / "busybox.tar")


@pytest.fixture
def aiorun_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    # Short run dir: unix socket paths must stay under 108 bytes.
    import tempfile
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root=tmp_path / "root", run=run)
    monkeypatch.setenv("AIORUN_ROOT", str(paths.root))
    monkeypatch.setenv("AIORUN_RUN", str(paths.run))
    paths.ensure()
    yield paths
    subprocess.run(["rm", "-rf", "--one-file-system", str(run)], check=False)


def _snapshot() -> dict[str, set[str]]:
    def lines(cmd: list[str]) -> set[str]:
        try:
            return set(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines())
        except FileNotFoundError:
            return set()
    mounts = {line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    links = {line.split(":")[1].strip().split("@")[0] for line in lines(["ip", "-o", "link"])}
    return {
        "mounts": mounts,
        "links": links,
        "nft": {t for t in lines(["nft", "list", "tables"])},
        "netns": lines(["ip", "netns", "list"]),
    }


@pytest.fixture
def host_state():
    """Fails the test if it left mounts, links, nft tables or netns behind."""
    before = _snapshot()
    yield before
    after = _snapshot()
    leaked = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
    assert not leaked, f"test left host state behind: {leaked}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    found = getattr(config, "_aiorun_leaks", None)
    if found:
        terminalreporter.write_sep("=", "aiorun host state left behind", red=True)
        terminalreporter.write_line(hostguard.report(found))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)


# --- a real daemon and the real CLI (aiorun.testing.daemon) ------------------------------------

@pytest.fixture
def daemon(request, aiorun_paths: Paths):
    """A running ``aiorun serve`` on ``aiorun_paths``; stopped (by PID) afterwards.

    Backend: ``request.param`` when parametrised indirectly
    (``@pytest.mark.parametrize("daemon", ["asyncio", "trio"], indirect=True)``), else asyncio.
    """
    from aiorun.testing.daemon import start_daemon
    backend = getattr(request, "param", None) or "asyncio"
    d = start_daemon(aiorun_paths, backend=backend)
    yield d
    d.stop_all()


@pytest.fixture
def cli(aiorun_paths: Paths):
    """``cli("ps", "-a")`` runs ``.venv/bin/aiorun`` on ``aiorun_paths`` (a CompletedProcess;
    keyword arguments as :func:`aiorun.testing.daemon.run_cli`). A daemon the CLI auto-started
    is stopped afterwards."""
    from aiorun.testing.daemon import run_cli, stop_autostarted

    def run(*args: str, **kw):
        return run_cli(aiorun_paths, *args, **kw)
    yield run
    stop_autostarted(aiorun_paths)
