"""``python -m bench [--quick] [--json FILE] [--only SECTION...] [--engines NAME...]``

Runs each present engine in turn (prepare → every selected section → close), so only one
engine's processes are alive while it is measured, then prints the side-by-side tables and
writes everything as JSON. The whole run happens in a private mount + network namespace
(``bench/isolate.py``); everything started is stopped by PID and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

SECTIONS = ["start_latency", "concurrent", "footprint", "events", "layers", "registry",
            "build"]
PEERS = ["crun", "runc", "podman", "docker"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer runs and smaller N (whole run in about 3 minutes)")
    ap.add_argument("--json", metavar="FILE", help="write all results as JSON to FILE "
                    "(default: bench/results/bench-<time>.json)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                    help=f"run only these sections ({', '.join(SECTIONS)})")
    ap.add_argument("--engines", nargs="+", metavar="NAME",
                    help="engines to run: aiorun, aiorun-cold (warm pool off), aiorun-copy, "
                         "aiorun-trio, crun, runc, "
                         "podman, docker (default: all present)")
    ap.add_argument("--runs", type=int, help="sequential runs per latency variant "
                    "(default 30, --quick 10)")
    ap.add_argument("--concurrency", type=int, nargs="+", metavar="N",
                    help="N for the concurrent start (default 50 200 1000; --quick 50 200 for "
                         "aiorun, 50 for peers)")
    ap.add_argument("--parallel", type=int, default=64,
                    help="requests / CLI processes in flight during the concurrent start")
    ap.add_argument("--debian-rootfs", metavar="TAR",
                    help="a Debian minbase+python3 rootfs tarball for the layers section "
                         "(see README; without it that part is skipped)")
    ap.add_argument("--registry-scale", type=float, default=1.0, metavar="F",
                    help="multiply the registry section's image sizes by F (the CI smoke "
                         "test uses 0.001)")
    ap.add_argument("--inner-workdir", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if not args.inner_workdir:
        from bench.isolate import outer_main
        return outer_main(argv)
    return inner_main(args)


def engine_names(args: argparse.Namespace) -> list[str]:
    if args.engines:
        return args.engines
    return ["aiorun", "aiorun-copy"] + PEERS


def make_engine(ws, name: str):
    from bench.aiorun_engine import Aiorun
    from bench.peers import discover
    if name == "aiorun":
        return Aiorun(ws, "overlay")
    if name == "aiorun-copy":
        return Aiorun(ws, "copy")
    if name == "aiorun-trio":
        return Aiorun(ws, "overlay", backend="trio")
    if name == "aiorun-cold":                 # the warm-sandbox pool off (--warm-pool 0)
        return Aiorun(ws, "overlay", warm_pool=0)
    found = discover(ws, [name])
    if not found:
        raise SystemExit(f"bench: unknown engine {name!r}")
    return found[0]


def inner_main(args: argparse.Namespace) -> int:
    from bench import footprint, report, targets
    from bench.base import Unavailable, Workspace
    from bench.isolate import inner_setup, inner_teardown
    from bench.proc import become_subreaper, descendants, terminate

    # SIGTERM → clean exit through the finally blocks below
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    ws = Workspace(Path(args.inner_workdir), args.quick)
    sections = args.only or SECTIONS
    runs = args.runs or (10 if args.quick else 30)
    results: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "mem_total_mb": _mem_total_mb()},
        "options": {"quick": args.quick, "runs": runs, "sections": sections,
                    "parallel": args.parallel},
        "engines": {}, "notes": [],
    }
    become_subreaper()
    results["notes"] += inner_setup(ws.root)
    from bench.aiorun_engine import compile_bytecode
    compile_bytecode()
    results["notes"].append("aiorun's package byte-compiled before timing (PYTHONDONTWRITEBYTECODE "
                            "would otherwise recompile it on every CLI start)")
    try:
        for name in engine_names(args):
            eng = make_engine(ws, name)
            t0 = time.monotonic()
            _log(f"{eng.name}: preparing")
            try:
                eng.prepare()
            except Unavailable as exc:
                results["engines"][eng.name] = {"present": False, "reason": str(exc)}
                _log(f"{eng.name}: unavailable: {exc}")
                eng.close()
                continue
            except Exception as exc:
                results["engines"][eng.name] = {"present": False,
                                                "reason": f"set-up failed: {exc}"}
                _log(f"{eng.name}: set-up failed: {exc}")
                eng.close()
                continue
            results["engines"][eng.name] = {"present": True, "version": eng.version()}
            try:
                run_sections(eng, name, args, sections, runs, results)
            finally:
                diag = getattr(eng, "diagnostics", None)
                if diag is not None:
                    found = diag()
                    if found:
                        results.setdefault("diagnostics", {})[eng.name] = found
                eng.close()
                sweep(eng.name, results)
            _log(f"{eng.name}: done in {time.monotonic() - t0:.1f}s")
    except KeyboardInterrupt:
        import traceback
        results["notes"].append("interrupted")
        _log("interrupted:\n" + traceback.format_exc())
    finally:
        left = descendants(os.getpid())
        if left:
            # engine processes that outlived their engine (shims, conmon): ours, by PID
            from bench.proc import comm
            results["notes"].append(f"stopped {len(left)} leftover processes: "
                                    + ", ".join(sorted({comm(p) for p in left})))
            terminate(left, timeout=5)
        inner_teardown(ws.root)

    for name, runs_ in (results.get("concurrent") or {}).items():
        fp = footprint.from_concurrent(runs_)
        if fp:
            results.setdefault("footprint", {})[name] = fp
    results["targets"] = targets.evaluate(results)
    sys.stdout.write(report.render(results))
    out = Path(args.json) if args.json else \
        Path(__file__).parent / "results" / f"bench-{results['started']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    sys.stdout.write(f"\nJSON: {out}\n")
    return 0


def run_sections(eng, name: str, args, sections: list[str], runs: int, results: dict) -> None:
    from bench import concurrent, start_latency
    if "start_latency" in sections:
        _log(f"{eng.name}: start latency ({runs} runs per variant)")
        results.setdefault("start_latency", {})[eng.name] = start_latency.measure(eng, runs)
    light = args.quick and name == "aiorun-copy"  # --quick: copy only for start latency
    if ("concurrent" in sections or "footprint" in sections) and not light:
        if args.concurrency:
            ns = args.concurrency
        elif "concurrent" not in sections:
            ns = [200 if name.startswith("aiorun") else 50]
        elif args.quick:
            ns = [50, 200] if name.startswith("aiorun") else [50]
        else:
            ns = [50, 200, 1000] if name.startswith("aiorun") else [50, 200]
        for n in ns:
            _log(f"{eng.name}: {n} concurrent detached starts")
            tag = str(len(results.get("concurrent", {})))
            r = concurrent.measure(eng, n, args.parallel, tag=tag)
            results.setdefault("concurrent", {}).setdefault(eng.name, []).append(r)
    if "events" in sections and name == "aiorun" and "events" not in results:
        _log("event bus (1 and 50 subscribers, slow subscriber)")
        from bench import events
        try:
            results["events"] = events.measure(args.quick)
        except Exception as exc:
            results["events"] = {"error": f"{type(exc).__name__}: {exc}"}
    if "layers" in sections and not light:
        _log(f"{eng.name}: layers")
        from bench import layers
        results.setdefault("layers", {})[eng.name] = layers.measure(
            eng, args.quick, args.debian_rootfs or os.environ.get("AIORUN_BENCH_DEBIAN_TAR"))
    if "registry" in sections and not light:
        run_registry(eng, args, results)
    if "build" in sections and not light:
        from bench import build
        _log(f"{eng.name}: builds")
        try:
            r = build.measure(eng, eng.ws, args.quick, args.runs or (3 if args.quick else 5))
        except Exception as exc:
            r = {"error": f"{type(exc).__name__}: {exc}"}
        if r is not None:
            results.setdefault("build", {})[eng.name] = r
    if hasattr(eng, "phase_breakdown") and "start_latency" in sections:
        _log(f"{eng.name}: per-phase breakdown")
        try:
            results.setdefault("phases", {})[eng.name] = eng.phase_breakdown(min(runs, 5))
        except Exception as exc:
            results.setdefault("phases", {})[eng.name] = f"could not measure: {exc}"


def run_registry(eng, args, results: dict) -> None:
    """Pull/push of the registry section for this engine, and skopeo's once (it needs no
    engine, so it is measured in the first engine's turn)."""
    from bench import registry
    runs = args.runs or (3 if args.quick else 5)
    got = results.setdefault("registry", {})
    got.setdefault("docker", {"missing": registry.DOCKER_SKIPPED})    # never started here
    for who, engine in (("skopeo", None), (eng.name, eng)):
        if who in got:
            continue
        _log(f"{who}: registry pull/push ({runs} runs)")
        try:
            r = registry.measure(engine, eng.ws, args.quick, runs, args.registry_scale)
        except Exception as exc:
            r = {"error": f"{type(exc).__name__}: {exc}"}
        if r is not None:
            got[who] = r


def sweep(engine: str, results: dict) -> None:
    """Engines run one after another: whatever is still alive after ``close`` belongs to
    this engine (a spawner or shim that outlived its daemon). Record it and stop it by PID,
    so it is not counted against the next engine."""
    from bench.proc import comm, descendants, terminate
    left = descendants(os.getpid())
    if left:
        names = sorted({comm(p) for p in left})
        results["notes"].append(f"{engine}: {len(left)} processes outlived close(): "
                                f"{', '.join(names)} (stopped by PID)")
        terminate(left, timeout=5)


def _mem_total_mb() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024


def _log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
