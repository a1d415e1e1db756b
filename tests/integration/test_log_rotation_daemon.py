"""Issue 11 item 6: ``--log-opt max-size=10m --log-opt max-file=2`` was ignored (100 MB of
output made one 215 MB file). Now the spawner rotates like Docker's json-file driver and
``logs`` reads across the files."""

from __future__ import annotations

import os

import pytest

from aiorun.testing.daemon import run_cli

pytestmark = pytest.mark.integration

LINES = 50_000     # ~100 bytes of JSON each: ~5 MB of log
SCRIPT = (f'i=0; while [ $i -lt {LINES} ]; do echo "line $i padding-padding-padding"; '
          'i=$((i+1)); done')


def ok(r) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"
    return r.stdout if isinstance(r.stdout, str) else r.stdout.decode()


def test_max_size_and_max_file_are_honoured(daemon, aiorun_paths, busybox_tar):
    paths = aiorun_paths
    ok(run_cli(paths, "import", str(busybox_tar), "busybox"))
    cid = ok(run_cli(paths, "run", "-d", "--network", "none", "--log-opt", "max-size=1m",
                     "--log-opt", "max-file=2", "busybox", "sh", "-c", SCRIPT)).strip()
    try:
        assert ok(run_cli(paths, "wait", cid, timeout=120)).strip() == "0"
        log_dir = paths.containers / cid
        logs = sorted(n for n in os.listdir(log_dir) if "-json.log" in n)
        assert logs == [f"{cid}-json.log", f"{cid}-json.log.1"]
        for name in logs:
            assert 0 < (log_dir / name).stat().st_size <= 1_000_000
        tail = ok(run_cli(paths, "logs", "--tail", "3", cid)).splitlines()
        assert tail == [f"line {i} padding-padding-padding" for i in range(LINES - 3, LINES)]
        # all of what is kept, oldest first, across both files, contiguous up to the end
        kept = [int(line.split()[1]) for line in ok(run_cli(paths, "logs", cid)).splitlines()]
        assert kept == list(range(kept[0], LINES)) and len(kept) > 10_000
    finally:
        ok(run_cli(paths, "rm", "-f", cid))
