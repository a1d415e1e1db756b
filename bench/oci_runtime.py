"""Issue 17: ``aiorun-runtime`` side by side with ``runc`` and ``crun`` on one busybox bundle.

    python -m bench.oci_runtime [--runs N]

Rows (median / min / max of N whole-process runs, each runtime in turn, same bundle):

* ``run``: ``RT run`` of ``true`` (create + start + wait + delete in one call);
* ``create``, ``start``, ``state``, ``delete``: the calls containerd's shim makes, one
  process each (``start`` runs ``true``; ``state``/``delete`` after it exited) and their sum;
* the floor every aiorun-runtime call pays: ``python -S -c pass`` and
  ``aiorun-runtime --version`` (interpreter start + argument parsing + imports).

crun is measured where it runs (Debian's crun 1.8 refuses a hybrid cgroup v1/v2 host:
"cgroups in hybrid mode not supported"; the table says so). Nothing here touches the network;
state lives in a temp dir that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiorun.testing.ocibundle import base_config, make_bundle, runtime_path


def _time(argv: list[str], check: bool = True) -> float:
    """Wall time of one whole process. Its stderr goes to a file, never a pipe: a container
    made by ``create`` inherits it and would hold a pipe open until it exits."""
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=err)
        dt = time.perf_counter() - t
        if check and r.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)}: {err.read().decode(errors='replace')}")
    return dt * 1000


def _stats(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.1f} ({min(xs):.1f}–{max(xs):.1f})"


def measure(rt: str, bundle: Path, root: Path, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("run", "create", "start", "state",
                                                   "delete", "sequence")}
    for i in range(runs):
        out["run"].append(_time([rt, "--root", str(root), "run", "--bundle", str(bundle),
                                 f"r{i}"]))
    for i in range(runs):
        cid = f"s{i}"
        c = _time([rt, "--root", str(root), "create", "--bundle", str(bundle), cid])
        s = _time([rt, "--root", str(root), "start", cid])
        for _ in range(500):
            r = subprocess.run([rt, "--root", str(root), "state", cid], capture_output=True,
                               stdin=subprocess.DEVNULL)
            if json.loads(r.stdout)["status"] == "stopped":
                break
            time.sleep(0.002)
        q = _time([rt, "--root", str(root), "state", cid])
        d = _time([rt, "--root", str(root), "delete", cid])
        for k, v in (("create", c), ("start", s), ("state", q), ("delete", d)):
            out[k].append(v)
        out["sequence"].append(c + s + q + d)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.oci_runtime")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="aiorun-bench-oci-"))
    try:
        bundle = make_bundle(tmp / "bundle", base_config(["true"], "/aiorun-bench-oci/c"))
        runtimes = {"aiorun-runtime": runtime_path(), "runc": shutil.which("runc") or "",
                    "crun": shutil.which("crun") or ""}
        results: dict[str, dict[str, list[float]] | str] = {}
        for name, path in runtimes.items():
            if not path:
                results[name] = "not installed"
                continue
            root = tmp / f"root-{name}"
            try:
                _time([path, "--root", str(root), "run", "--bundle", str(bundle), "probe"])
            except RuntimeError as e:
                results[name] = f"does not run here: {str(e).split(': ', 1)[-1].strip()[:70]}"
                continue
            results[name] = measure(path, bundle, root, args.runs)
        floor = {"python -S -c pass": [_time([sys.executable, "-S", "-c", "pass"])
                                       for _ in range(args.runs)],
                 "aiorun-runtime --version": [_time([runtime_path(), "--version"])
                                              for _ in range(args.runs)]}
        print(f"## OCI runtime (ms, median (min–max) of {args.runs} runs)\n")
        print("| call | " + " | ".join(results) + " |")
        print("|---|" + "---|" * len(results))
        for row in ("run", "create", "start", "state", "delete", "sequence"):
            cells = [_stats(r[row]) if isinstance(r, dict) else r for r in results.values()]
            print(f"| {row} | " + " | ".join(cells) + " |")
        print()
        for k, v in floor.items():
            print(f"- {k}: {_stats(v)} ms")
        return 0
    finally:
        for p in Path("/sys/fs/cgroup").glob("*/aiorun-bench-oci"):
            try:
                p.rmdir()
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
