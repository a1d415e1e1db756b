"""The README's first command, ``scripts/demo.sh``, run for real.

* ``test_demo_registry_route_on_busybox`` (always): the Flask demo's whole route — import the
  base rootfs, save it as a docker-archive, start Debian's ``docker-registry`` on loopback,
  ``skopeo copy`` the base into it, ``aiorun pull`` it,
  ``build`` FROM the registry's reference, run, curl, exec, commit, volumes, clean up — with
  a busybox rootfs as the base and examples/helloworld as the app, so it takes seconds and
  downloads nothing.
* ``test_demo_flask_on_debian`` (opt-in, ``AIORUN_TEST_DEMO_DEBIAN=1``): the demo exactly as
  a user runs it, the walkthrough's Flask app on the Debian base. It needs the cached base
  tarball (``scripts/make-base-image.sh`` makes it once, ~1 min with debootstrap); it never
  runs debootstrap itself, so CI downloads no Debian.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.util import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="the demo runs containers as root")]

REPO = Path(__file__).resolve().parents[2]


def run_demo(paths: Paths, **env: str) -> str:
    """Run scripts/demo.sh on the test's own state roots; return its output (checked)."""
    full_env = dict(os.environ, AIORUN_ROOT=str(paths.root), AIORUN_RUN=str(paths.run),
                    PORT=str(free_port()), DEMO_SETUP="0", **env)
    r = subprocess.run([str(REPO / "scripts" / "demo.sh")], cwd=REPO, env=full_env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert r.returncode == 0, f"demo.sh exit {r.returncode}:\n{r.stdout[-6000:]}"
    return r.stdout


def assert_registry_stopped_and_work_removed(out: str) -> None:
    pid = int(re.search(r"docker-registry \(pid (\d+)\) on 127\.0\.0\.1:\d+", out).group(1))
    # demo.sh killed and reaped it (a reused PID would be another program's).
    assert not Path(f"/proc/{pid}").exists() or \
        "docker-registry" not in Path(f"/proc/{pid}/cmdline").read_text(), \
        "the registry outlived the demo"
    for work in re.findall(r"(/tmp/aiorun-demo-work\.\w+)", out):
        assert not Path(work).exists(), f"{work} left behind"


def test_demo_registry_route_on_busybox(aiorun_paths: Paths, busybox_tar: Path) -> None:
    for tool in ("docker-registry", "skopeo"):
        assert shutil.which(tool), f"{tool} missing: scripts/setup.sh installs it"
    out = run_demo(aiorun_paths, DEMO="flask", DEMO_BASE_ROOTFS=str(busybox_tar),
                   DEMO_BASE_NAME="busybox:demo", DEMO_APP="examples/helloworld")
    ref = re.search(r"pushed (127\.0\.0\.1:\d+/busybox:demo)", out).group(1)
    # The base came back from the registry through `aiorun pull`.
    assert f"Status: Downloaded newer image for {ref}" in out, out
    # The build's FROM named the registry's reference, and found the pulled base.
    assert f"aiorun build --build-arg BASE={ref} -t helloworld examples/helloworld" in out
    assert "Successfully tagged helloworld:latest" in out
    # The app answered through the published port and on the container's own address,
    # with the container's hostname.
    answers = re.findall(r"<h3>Hello World!</h3><b>Hostname:</b> ([0-9a-f]{12})<br/>", out)
    assert len(answers) == 2 and answers[0] == answers[1], out
    assert f"exec in {answers[0]}" in out
    assert "new-file" in out                               # the commit kept exec's file
    assert "demo (flask): ok" in out
    assert_registry_stopped_and_work_removed(out)


@pytest.mark.skipif(not os.environ.get("AIORUN_TEST_DEMO_DEBIAN"),
                    reason="opt-in: AIORUN_TEST_DEMO_DEBIAN=1 (needs the cached Debian base)")
def test_demo_flask_on_debian(aiorun_paths: Paths) -> None:
    cached = subprocess.run([str(REPO / "scripts" / "make-base-image.sh")], cwd=REPO,
                            env=dict(os.environ, CACHED_ONLY="1"), capture_output=True, text=True)
    assert cached.returncode == 0, \
        f"no cached Debian base; run scripts/make-base-image.sh once first\n{cached.stderr}"
    out = run_demo(aiorun_paths)
    assert "Requirement already satisfied: Flask" in out   # the offline pip step
    answers = re.findall(r"<h3>Hello World!</h3><b>Hostname:</b> ([0-9a-f]{12})<br/>", out)
    assert len(answers) == 2 and answers[0] == answers[1], out
    assert "demo (flask): ok" in out
    assert_registry_stopped_and_work_removed(out)
