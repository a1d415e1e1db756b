"""aiorun as a bench engine: one daemon per storage driver on a scratch root.

* CLI variants run ``aiorun run --rm [--network none] bench-busybox true`` as a whole process
  (the CLI's own start-up is part of the figure, as it is for docker and podman);
* API variants do create + start + wait + remove over the daemon's socket with the same
  client code the bench uses against dockerd;
* the concurrent start goes through the API (like docker's).

Bytecode: with PYTHONDONTWRITEBYTECODE=1 an editable install recompiles every module on every
CLI start; the bench compiles the package once (``compileall``) so the CLI figure is what an
installed aiorun costs, and says so in the report.
"""

from __future__ import annotations

import compileall
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.apiclient import ApiDriven
from bench.base import Engine, Unavailable, Variant, Workspace, run
from bench.proc import terminate

IMAGE = "bench-busybox"
REPO = Path(__file__).resolve().parent.parent


def aiorun_exe() -> list[str]:
    exe = Path(sys.executable).with_name("aiorun")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "aiorun.cli.main"]


def compile_bytecode() -> None:
    for d in ("aiorun", "plugins"):
        if (REPO / d).is_dir():
            compileall.compile_dir(str(REPO / d), quiet=1, workers=1)


class Aiorun(ApiDriven, Engine):
    api_image = IMAGE
    detached_method = "api"

    def __init__(self, ws: Workspace, storage: str, backend: str = "asyncio",
                 warm_pool: int | None = None) -> None:
        """``warm_pool``: the daemon's ``--warm-pool`` (None: its default; 0 names the
        engine ``...,cold``: every start takes the cold path)."""
        super().__init__(ws)
        self.storage = storage
        self.backend = backend
        extra = ([] if backend == "asyncio" else [backend]) + \
            ([] if warm_pool is None else ["cold" if warm_pool == 0 else f"pool{warm_pool}"])
        self.name = f"aiorun[{','.join([storage] + extra)}]"
        tag = "-".join([storage] + extra)
        self.root = ws.root / f"aiorun-{tag}"
        self.run_dir = ws.root / f"ar-{tag}"  # short: it holds unix sockets
        self.proc: subprocess.Popen | None = None
        self.env = dict(os.environ, AIORUN_ROOT=str(self.root), AIORUN_RUN=str(self.run_dir))
        self.env.pop("AIORUN_SOCKET", None)
        self.serve_args = [] if warm_pool is None else ["--warm-pool", str(warm_pool)]

    # -- life cycle ---------------------------------------------------------------------
    def prepare(self) -> None:
        try:
            from aiorun.config import Paths
        except ImportError as exc:
            raise Unavailable(f"aiorun not importable: {exc}")
        try:
            import aiorun.cli.daemon  # noqa: F401  (the `serve` verb)
        except ImportError:
            raise Unavailable("aiorun serve is not implemented yet (aiorun/cli/daemon.py)")
        self.paths = Paths(self.root, self.run_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "bench-serve.log", "ab")
        self.proc = subprocess.Popen(
            aiorun_exe() + ["serve", "--storage-driver", self.storage, "--backend", self.backend]
            + self.serve_args,
            env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
        log.close()
        from bench.apiclient import make_client
        self.client = make_client(self.paths.socket)
        deadline = time.monotonic() + 30
        while True:
            try:
                r = self.client.request("GET", "/_ping")  # body "OK" is not JSON
                r.close()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise Unavailable(f"aiorun serve did not come up: {self._log_tail()}")
                time.sleep(0.05)
        try:
            self.cli("import", str(self.ws.busybox_tar), IMAGE)
        except RuntimeError as exc:
            raise Unavailable(f"aiorun import failed: {exc}")
        try:
            self.cli("run", "--rm", "--network", "none", IMAGE, "true")
        except RuntimeError as exc:
            raise Unavailable(f"aiorun run does not work yet: {exc}")

    def start_phases(self, since_ns: int, ids: list[str]) -> dict[str, float]:
        """Medians of the daemon's per-phase timings of the burst's ``start`` events."""
        return _start_event_medians(self.client, since_ns, {i: "burst" for i in ids}).get(
            "burst", {})

    def _log_tail(self) -> str:
        for f in (self.root / "bench-serve.log", self.root / "daemon.log"):
            try:
                lines = f.read_text(errors="replace").strip().splitlines()
            except OSError:
                continue
            if lines:
                return " | ".join(lines[-3:])
        return "(no log)"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run(aiorun_exe() + list(args), env=self.env, timeout=timeout)

    def version(self) -> str:
        try:
            from bench.apiclient import call
            v = call(self.client, "GET", "/version")
            return f"aiorun {v.get('Version')} (API {v.get('ApiVersion')}, {self.backend})"
        except Exception:
            return ""

    def diagnostics(self, lines: int = 20) -> list[str]:
        """The daemon log's last error lines (the scratch root is removed at the end)."""
        try:
            text = self.paths.daemon_log.read_text(errors="replace").splitlines()
        except (OSError, AttributeError):
            return []
        hits = [ln for ln in text if any(w in ln for w in ("ERROR", "Error", "Traceback",
                                                            "error:", "Exception"))]
        return hits[-lines:]

    def daemon_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                from bench.apiclient import api_remove_all
                api_remove_all(self.client)
            except Exception:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                terminate([self.proc.pid], timeout=1)
                self.proc.wait()
        self.proc = None

    # -- measurements ---------------------------------------------------------------------
    def _cli_run(self, *args: str) -> None:
        run(aiorun_exe() + ["run", "--rm", *args, IMAGE, "true"], env=self.env)

    def _api_run(self, network: str) -> dict[str, int]:
        from bench.apiclient import api_run_rm
        return api_run_rm(self.client, IMAGE, ["true"], network)

    def latency_variants(self) -> list[Variant]:
        return [
            Variant("run --rm, --network none", lambda: self._cli_run("--network", "none"),
                    "none"),
            Variant("run --rm, bridge", lambda: self._cli_run(), "bridge"),
            Variant("API create+start+wait+rm, none", lambda: self._api_run("none"),
                    "none", "api"),
            Variant("API create+start+wait+rm, bridge", lambda: self._api_run("bridge"),
                    "bridge", "api"),
        ]

    # -- layers -------------------------------------------------------------------------------
    def import_tar(self, tar: str, name: str) -> None:
        self.cli("import", tar, name, timeout=600)

    def run_args(self, image: str, args: list[str]) -> None:
        from bench.apiclient import api_run_rm
        api_run_rm(self.client, image, args, "none")

    # -- where the time goes ----------------------------------------------------------------
    def phase_breakdown(self, runs: int = 5) -> dict:
        """Where a start's time goes, from outside and from the daemon.

        * per API call medians (create = storage + persistence; start = spawn, namespaces,
          network, nftables; wait; delete = teardown) for --network none and bridge;
        * the CLI's own floor: ``python -c pass`` and ``aiorun ps -q`` (start-up + one
          request), the part of ``aiorun run`` that is not the engine;
        * any per-phase timings the daemon reports (keys like timings/phase/*_ms in inspect
          or in the container's event attributes); if none, says it is not instrumented.
        """
        from bench.apiclient import _create_body, call
        from bench.stats import summarize_ns
        out: dict = {}
        t_all = time.time_ns()
        made: dict[str, str] = {}                 # container id -> network
        for network in ("none", "bridge"):
            calls: dict[str, list[int]] = {"create": [], "start": [], "wait": [], "delete": []}
            for _ in range(runs):
                t = time.perf_counter_ns()
                cid = call(self.client, "POST", "/containers/create",
                           _create_body(IMAGE, ["true"], network))["Id"]
                made[cid] = network
                t1 = time.perf_counter_ns()
                call(self.client, "POST", f"/containers/{cid}/start")
                t2 = time.perf_counter_ns()
                call(self.client, "POST", f"/containers/{cid}/wait")
                t3 = time.perf_counter_ns()
                call(self.client, "DELETE", f"/containers/{cid}", force=True)
                t4 = time.perf_counter_ns()
                for k, v in zip(calls, (t1 - t, t2 - t1, t3 - t2, t4 - t3)):
                    calls[k].append(v)
            out[f"api_calls_{network}_median_ms"] = {
                k: summarize_ns(v).get("median") for k, v in calls.items()}
        floor: dict[str, list[int]] = {"python -c pass": [], "aiorun ps -q": []}
        for _ in range(runs):
            for label, cmd in (("python -c pass", [sys.executable, "-c", "pass"]),
                               ("aiorun ps -q", aiorun_exe() + ["ps", "-q"])):
                t = time.perf_counter_ns()
                run(cmd, env=self.env)
                floor[label].append(time.perf_counter_ns() - t)
        out["cli_floor_median_ms"] = {k: summarize_ns(v).get("median") for k, v in floor.items()}
        out["cli_imports_ms"] = cli_import_breakdown(self.env)
        found: dict = {}
        t_start = time.time_ns()
        cid = call(self.client, "POST", "/containers/create",
                   _create_body(IMAGE, ["true"], "bridge"))["Id"]
        try:
            call(self.client, "POST", f"/containers/{cid}/start")
            call(self.client, "POST", f"/containers/{cid}/wait")
            _collect_timings(call(self.client, "GET", f"/containers/{cid}/json"), "", found)
            try:
                r = self.client.request("GET", "/events", {"since": t_start / 1e9,
                                                           "until": time.time_ns() / 1e9,
                                                           "filters": {"container": [cid]}})
                r.sock.settimeout(2.0)  # a stream that does not honour `until` must not hang us
                import json
                for line in r.iter_lines():
                    ev = json.loads(line)
                    attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                    _collect_timings(attrs, f"event.{ev.get('Action')}.", found)
                r.close()
            except Exception:
                pass
        finally:
            call(self.client, "DELETE", f"/containers/{cid}", force=True)
        per_net = _start_event_medians(self.client, t_all, made)
        for network, med in per_net.items():
            out[f"daemon_phases_{network}_median_ms"] = med
        out["daemon_phases"] = found or ("not instrumented: the daemon reports no per-phase "
                                         "timings (storage, spawn, namespaces, network, "
                                         "nftables, persistence) in inspect or events")
        return out


def cli_import_breakdown(env: dict[str, str], top: int = 6) -> dict[str, float]:
    """Import cost of the ``aiorun run`` path (``python -X importtime``): the slowest
    top-level imports by cumulative time, in ms — including ``site`` (where an editable
    install's import hook runs on every start)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-c",
                        "import aiorun.cli.main, aiorun.cli.containers"],
                       env=env, capture_output=True, text=True, timeout=60)
    rows: dict[str, float] = {}
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = line.split("|", 2)
        try:
            us = int(cum.strip())
        except ValueError:
            continue
        label = name.rstrip()
        depth = (len(label) - len(label.lstrip())) // 2
        label = label.strip()
        if depth == 0 or (depth == 1 and label.startswith("__editable__")):
            rows[label] = max(rows.get(label, 0.0), us / 1000)
    best = sorted(rows.items(), key=lambda kv: -kv[1])[:top]
    return {k: round(v, 1) for k, v in best}


def _start_event_medians(client, since_ns: int, made: dict[str, str]) -> dict[str, dict]:
    """Median of every ``*_ms`` attribute of the ``start`` events of the containers in
    ``made`` (id -> network), per network; {} when the daemon reports none."""
    import json
    from bench.stats import summarize_ns
    vals: dict[str, dict[str, list[float]]] = {}
    try:
        r = client.request("GET", "/events", {"since": since_ns / 1e9,
                                              "until": time.time_ns() / 1e9,
                                              "filters": {"event": ["start"]}})
        r.sock.settimeout(2.0)
        for line in r.iter_lines():
            ev = json.loads(line)
            actor = ev.get("Actor") or {}
            net = made.get(actor.get("ID", "")) or made.get(
                (actor.get("Attributes") or {}).get("name", ""))
            if net is None:
                continue
            for k, v in ((ev.get("Actor") or {}).get("Attributes") or {}).items():
                if k.endswith("_ms"):
                    try:
                        vals.setdefault(net, {}).setdefault(k, []).append(float(v))
                    except ValueError:
                        pass
        r.close()
    except Exception:
        pass
    return {net: {k: round(summarize_ns([int(x * 1e6) for x in v]).get("median"), 2)
                  for k, v in d.items()} for net, d in vals.items()}


PHASE_WORDS = ("timing", "phase", "_ms", "duration", "latency")


def _collect_timings(obj, prefix: str, out: dict) -> None:
    """Every key that looks like a timing, flattened ("State.Timings.storage": 3.1)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}{k}"
            if any(w in str(k).lower() for w in PHASE_WORDS) and not isinstance(v, (dict, list)):
                out[key] = v
            elif isinstance(v, dict):
                if any(w in str(k).lower() for w in PHASE_WORDS):
                    for k2, v2 in v.items():
                        out[f"{key}.{k2}"] = v2
                else:
                    _collect_timings(v, key + ".", out)
