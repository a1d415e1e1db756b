"""Issue 7, part 5: layers — commit of a container with a 100 MB rw layer; import of a
Debian rootfs into each engine and ``python3 -c pass`` start latency on it.

The bench installs nothing: the Debian rootfs is a tarball the user makes once (README):
``debootstrap --variant=minbase --include=python3 bookworm DIR``, then
``tar -C DIR --exclude='./dev/*' -cf debian.tar .``
(image layers carry no device nodes: aiorun refuses them, as the runtime makes /dev itself)
and passes with ``--debian-rootfs debian.tar`` (or env AIORUN_BENCH_DEBIAN_TAR). Without it
the import / python figures are reported as skipped, with that hint.
"""

from __future__ import annotations

import os
import time

from bench.base import Engine
from bench.stats import summarize_ns

BIG_MB = 100
DEBIAN_IMAGE = "bench-debian"


def measure(engine: Engine, quick: bool, debian_tar: str | None) -> dict:
    out: dict = {}
    commit = getattr(engine, "commit_big", None)
    if commit is None:
        out["commit_100mb"] = "n/a (no commit in this engine)"
    else:
        try:
            out["commit_100mb"] = commit(BIG_MB)
        except Exception as exc:
            out["commit_100mb"] = f"failed: {type(exc).__name__}: {exc}"
    if not debian_tar:
        out["debian"] = ("skipped: make a rootfs tarball (debootstrap --variant=minbase "
                         "--include=python3 bookworm DIR; "
                         "tar -C DIR --exclude='./dev/*' -cf debian.tar .) and "
                         "pass --debian-rootfs debian.tar")
        return out
    imp = getattr(engine, "import_tar", None)
    runp = getattr(engine, "run_args", None)
    if imp is None or runp is None:
        out["debian"] = "n/a"
        return out
    size = os.path.getsize(debian_tar)
    t0 = time.perf_counter_ns()
    try:
        imp(debian_tar, DEBIAN_IMAGE)
    except Exception as exc:
        out["debian"] = f"import failed: {type(exc).__name__}: {exc}"
        return out
    out["debian_import_ms"] = round((time.perf_counter_ns() - t0) / 1e6, 1)
    out["debian_tar_mb"] = round(size / 2**20, 1)
    samples, errors = [], []
    for i in range(2 + (5 if quick else 15)):
        t = time.perf_counter_ns()
        try:
            runp(DEBIAN_IMAGE, ["python3", "-c", "pass"])
        except Exception as exc:
            errors.append(str(exc))
            if len(errors) >= 3:
                break
            continue
        if i >= 2:
            samples.append(time.perf_counter_ns() - t)
    out["python3_c_pass"] = summarize_ns(samples)
    if errors:
        out["python3_errors"] = sorted(set(errors))[:2]
    return out
