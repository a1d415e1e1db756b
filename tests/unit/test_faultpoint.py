"""aiorun.core.faultpoint: an armed point is a kill -9 of this process, once per ONCE file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

PROG = ("from aiorun.core.faultpoint import fault_point\n"
        "fault_point('other.point')\n"
        "print('before', flush=True)\n"
        "fault_point('commit.spooled')\n"
        "print('after', flush=True)\n")


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AIORUN_FAULT")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", PROG], env=full, capture_output=True,
                          text=True, timeout=60)


def test_unarmed_points_do_nothing():
    r = _run({})
    assert r.returncode == 0 and r.stdout.split() == ["before", "after"]


def test_armed_point_is_a_sigkill(tmp_path):
    r = _run({"AIORUN_FAULT_POINT": "commit.spooled"})
    assert r.returncode == -signal.SIGKILL and r.stdout.split() == ["before"]


def test_once_file_fires_once_and_records_the_point(tmp_path):
    once = tmp_path / "fired"
    env = {"AIORUN_FAULT_POINT": "x,commit.spooled", "AIORUN_FAULT_ONCE": str(once)}
    assert _run(env).returncode == -signal.SIGKILL
    assert once.read_text().startswith("commit.spooled ")
    r = _run(env)       # a process restarted with the same environment lives on
    assert r.returncode == 0 and r.stdout.split() == ["before", "after"]
