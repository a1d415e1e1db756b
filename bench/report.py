"""Render the bench's results as plain-text tables (stdout); JSON is written as is."""

from __future__ import annotations

from bench.stats import fmt_mb, fmt_ms, fmt_ratio, ratio


def _table(headers: list[str], rows: list[list[str]], text2: bool = True) -> str:
    """Left-align the first column (and the second when ``text2``), right-align the rest."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else \
        [len(h) for h in headers]
    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 or (i == 1 and text2) else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def is_aiorun(name: str) -> bool:
    return name.startswith("aiorun")


def best_peer_median(latency: dict, peer: str, network: str, via: str) -> float | None:
    """The peer's median for the comparable variant: same network and way of calling
    (CLI vs API) when it has one, else same network by CLI (runc/crun have no API)."""
    rows = latency.get(peer) or []
    for want_via in (via, "cli"):
        for r in rows:
            if r["network"] == network and r["via"] == want_via and r["stats"].get("n"):
                return r["stats"]["median"]
    return None


def _create_start_median(latency: dict, engine: str) -> float | None:
    for r in latency.get(engine) or []:
        if r["network"] == "bridge" and r["via"] == "api":
            return ((r.get("sub") or {}).get("create+start") or {}).get("median")
    return None


def render(results: dict) -> str:
    parts = []
    eng = results.get("engines", {})
    parts.append("== engines")
    for name, e in eng.items():
        state = e.get("version") or "present" if e.get("present") else f"MISSING: {e.get('reason')}"
        parts.append(f"  {name:18} {state}")
    for n in results.get("notes", []):
        parts.append(f"  note: {n}")

    lat = results.get("start_latency") or {}
    if lat:
        peers = [p for p in lat if not is_aiorun(p)]
        headers = ["engine", "variant", "n", "fail", "min", "median", "p95", "CPU"] + \
            [f"vs {p}" for p in peers]
        rows = []
        for name, variants in lat.items():
            for r in variants:
                s = r["stats"]
                row = [name, r["variant"], s.get("n", 0), r["failures"], fmt_ms(s.get("min")),
                       fmt_ms(s.get("median")), fmt_ms(s.get("p95")),
                       fmt_ms(r.get("cpu_ms_per_start"))]
                for p in peers:
                    if is_aiorun(name):
                        row.append(fmt_ratio(ratio(s.get("median"),
                                                   best_peer_median(lat, p, r["network"],
                                                                    r["via"]))))
                    else:
                        row.append("")
                rows.append(row)
        parts.append("\n== 1. single start latency (sequential; CPU = engine CPU time per "
                     "start; 'vs X' = X's median / this median for the same network mode, "
                     ">1 = faster than X)")
        parts.append(_table(headers, rows))
        for name, variants in lat.items():
            for r in variants:
                for k, st in (r.get("sub") or {}).items():
                    if st.get("n"):
                        parts.append(f"  {name} / {r['variant']}: {k} min {fmt_ms(st['min'])}"
                                     f" median {fmt_ms(st['median'])} p95 {fmt_ms(st['p95'])}")
        errs = [(name, r["variant"], e) for name, vs in lat.items() for r in vs
                for e in r.get("errors", [])]
        for name, v, e in errs[:8]:
            parts.append(f"  ! {name} / {v}: {e[:160]}")

    conc = results.get("concurrent") or {}
    if conc:
        headers = ["engine", "via", "N", "all running", "per s", "fail", "CPU/ctr",
                   "teardown", "peak RSS", "peak PSS", "procs/ctr", "RSS/ctr"]
        rows = []
        for name, runs in conc.items():
            for r in runs:
                ov = r.get("overhead") or {}
                rows.append([name, r["method"], r["n"], fmt_ms(r["all_running_s"] * 1000),
                             r.get("per_s") or "-", r["failures"],
                             fmt_ms(r.get("cpu_ms_per_container")),
                             fmt_ms(r["teardown_s"] * 1000), fmt_mb(r["peak"]["rss_mb"]),
                             fmt_mb(r.get("peak_pss_mb") or None),
                             ov.get("processes", "-"),
                             fmt_mb(ov.get("rss_mb")) if ov else "-"])
        parts.append("\n== 2. concurrent start-up of N detached `sleep` containers "
                     "(bridge network; crun/runc: empty netns)")
        parts.append(_table(headers, rows))
        for name, runs in conc.items():
            for r in runs:
                single = _create_start_median(lat, name)
                if single and r.get("running"):
                    # N x one create+start done alone, over the time N took together: ~1
                    # means the starts ran one after another (serialised somewhere)
                    par = r["running"] * single / 1000 / r["all_running_s"]
                    parts.append(f"  {name} N={r['n']}: effective parallelism {par:.1f} "
                                 f"(N x single API create+start {fmt_ms(single)} / time to all "
                                 f"running; 1.0 = starts serialised)")
                top = sorted(r["peak"]["by_comm"].items(), key=lambda kv: -kv[1]["rss_mb"])[:4]
                parts.append(f"  {name} N={r['n']} peak made of: " + ", ".join(
                    f"{c} x{v['count']} {v['rss_mb']:.0f}MB" for c, v in top))
                sp = r.get("cpu_split_s") or {}
                if sp:
                    parts.append(f"  {name} N={r['n']} CPU ms per container by process: " +
                                 ", ".join(f"{k} {1000 * v / r['n']:.1f}" for k, v in
                                           sorted(sp.items(), key=lambda kv: -kv[1])))
                sp = r.get("teardown_cpu_split_s") or {}
                if sp:
                    parts.append(f"  {name} N={r['n']} teardown CPU ms per container by "
                                 "process: " + ", ".join(
                                     f"{k} {1000 * v / r['n']:.1f}" for k, v in
                                     sorted(sp.items(), key=lambda kv: -kv[1]) if v))
                ph = r.get("start_phases_median_ms") or {}
                if ph:
                    parts.append(f"  {name} N={r['n']} start phases (median ms): " + ", ".join(
                        f"{k[:-3].replace('runtime_', 'rt_')} {v}" for k, v in ph.items()))
                for e in r.get("errors", []):
                    parts.append(f"  ! {name} N={r['n']}: {e[:160]}")

    fp = results.get("footprint") or {}
    if fp:
        headers = ["engine", "idle procs", "idle RSS", "N", "RSS with N (excl. ctrs)",
                   "procs/ctr", "RSS/ctr", "PSS/ctr"]
        rows = []
        for name, f in fp.items():
            rows.append([name, f["idle_processes"], fmt_mb(f["idle_rss_mb"]), f.get("n", "-"),
                         fmt_mb(f.get("with_n_rss_mb")), f.get("procs_per_container", "-"),
                         fmt_mb(f.get("rss_mb_per_container")),
                         fmt_mb(f.get("pss_mb_per_container"))])
        parts.append("\n== 3. footprint (everything the engine runs beside the containers' "
                     "own processes)")
        parts.append(_table(headers, rows))

    ev = results.get("events") or {}
    if ev:
        parts.append("\n== 4. event bus (real bus + journal + msgpack socket + Python client)")
        if "error" in ev:
            parts.append(f"  ! {ev['error']}")
        one = ev.get("one_subscriber") or {}
        if one:
            parts.append(f"  1 subscriber: {one.get('one_subscriber_events_per_s')} events/s "
                         f"({one.get('events')} events; emit alone "
                         f"{one.get('emit_only_events_per_s')}/s)")
        f = ev.get("fifty_subscribers") or {}
        if f:
            parts.append(f"  50 subscribers: {f.get('events_per_s_per_subscriber')} events/s "
                         f"each, {f.get('deliveries_per_s')} deliveries/s in total, "
                         f"{f.get('lost')} lost")
        s = ev.get("slow_subscriber") or {}
        if s:
            parts.append(f"  slow subscriber (buffer {s.get('buffer')}, {s.get('events')} "
                         f"events unread): {s.get('lost_events')} reported lost in "
                         f"{s.get('lost_markers')} markers, {s.get('replayed')} replayed; "
                         f"missing after replay: {s.get('missing_after_replay')}, duplicates: "
                         f"{s.get('duplicates')}")

    lay = results.get("layers") or {}
    if lay:
        rows, notes = [], set()
        for name, v in lay.items():
            c = v.get("commit_100mb")
            cms = c.get("commit_ms") if isinstance(c, dict) else None
            py = v.get("python3_c_pass") or {}
            rows.append([name, fmt_ms(cms) if cms is not None else "n/a",
                         fmt_ms(v.get("debian_import_ms")), fmt_ms(py.get("median")),
                         fmt_ms(py.get("p95"))])
            if isinstance(v.get("debian"), str):
                notes.add(v["debian"])
        parts.append("\n== 5. layers (commit of a 100 MB rw layer; Debian minbase+python3 "
                     "import; `python3 -c pass` start, --network none)")
        parts.append(_table(["engine", "commit 100MB", "debian import", "py median",
                             "py p95"], rows, text2=False))
        for n in sorted(notes):
            parts.append(f"  note: {n}")

    reg = results.get("registry") or {}
    if reg:
        parts.append(render_registry(reg))

    bld = results.get("build") or {}
    if bld:
        parts.append(render_build(bld, results.get("engines") or {}))

    ph = results.get("phases") or {}
    if ph:
        parts.append("\n== where aiorun's start time goes (medians, ms)")
        for k, v in ph.items():
            if not isinstance(v, dict):
                parts.append(f"  {k}: {v}")
                continue
            for net in ("none", "bridge"):
                c = v.get(f"api_calls_{net}_median_ms")
                if c:
                    parts.append(f"  {k} API calls, {net:6}: " +
                                 ", ".join(f"{a} {b}" for a, b in c.items()))
            fl = v.get("cli_floor_median_ms")
            if fl:
                parts.append(f"  {k} CLI floor: " + ", ".join(f"{a} {b}" for a, b in fl.items()))
            ci = v.get("cli_imports_ms")
            if ci:
                parts.append(f"  {k} CLI imports (cumulative): " +
                             ", ".join(f"{a} {b}" for a, b in ci.items()))
            meds = [(n, v.get(f"daemon_phases_{n}_median_ms")) for n in ("none", "bridge")]
            for net, med in meds:
                if med:
                    parts.append(f"  {k} start phases, {net:6} (median ms): " +
                                 ", ".join(f"{a[:-3]} {b}" for a, b in med.items()))
            if not any(m for _, m in meds):
                dp = v.get("daemon_phases")
                parts.append(f"  {k} daemon phases: {dp}")

    for name, lines in (results.get("diagnostics") or {}).items():
        parts.append(f"\n== {name}: last error lines of the daemon log")
        parts += [f"  {ln[:200]}" for ln in lines[-8:]]

    tg = results.get("targets") or []
    if tg:
        parts.append("\n== targets (issue 7)")
        for t in tg:
            parts.append(f"  [{t['verdict']:>4}] {t['what']}: {t['measured']} "
                         f"(target {t['target']})")
    return "\n".join(parts) + "\n"


REGISTRY_PEERS = ("skopeo", "docker", "podman")


def render_registry(reg: dict) -> str:
    """Section 6: one row per (client, image, op); 'vs X' = X's median / this median."""
    peers = [p for p in REGISTRY_PEERS if (reg.get(p) or {}).get("ops")]
    medians = {(who, r["image"], r["op"]): r["stats"].get("median")
               for who, v in reg.items() for r in (v.get("ops") or [])}
    images: dict = {}
    for v in reg.values():
        images.update(v.get("images") or {})
    rows, notes = [], []
    for who, v in reg.items():
        for key in ("missing", "error"):
            if key in v:
                notes.append(f"  ! {who}: {v[key]}")
        for e in v.get("errors") or []:
            notes.append(f"  ! {who}: {e[:200]}")
        for r in v.get("ops") or []:
            s = r["stats"]
            row = [who, r["image"], r["op"], s.get("n", 0), fmt_ms(s.get("min")),
                   fmt_ms(s.get("median")), fmt_ms(s.get("max")),
                   f"{r['mb_per_s']:.1f}" if r.get("mb_per_s") else "-"]
            for p in peers:
                row.append("" if who == p else fmt_ratio(ratio(
                    s.get("median"), medians.get((p, r["image"], r["op"])))))
            rows.append(row)
    what = ", ".join(f"{k}: {v['layers']} layer(s), {v['mb']:.1f} MB compressed"
                     for k, v in images.items())
    head = ("\n== 6. registry pull / push (loopback docker-registry; whole CLI processes; "
            f"'vs X' = X's median / this median, >1 = faster than X)\n  images: {what}")
    headers = ["client", "image", "op", "n", "min", "median", "max", "MB/s"] + \
        [f"vs {p}" for p in peers]
    return "\n".join([head, _table(headers, rows)] + notes)


def render_build(bld: dict, engines: dict) -> str:
    """Section 7: one row per (engine, workload); 'vs X' = X's median / this median."""
    peers = [p for p in ("podman", "docker") if (bld.get(p) or {}).get("ops")]
    medians = {(who, r["op"]): r["stats"].get("median")
               for who, v in bld.items() for r in (v.get("ops") or [])}
    rows, notes = [], []
    for who, v in bld.items():
        if "error" in v:
            notes.append(f"  ! {who}: {v['error']}")
        for e in v.get("errors") or []:
            notes.append(f"  ! {who}: {e[:200]}")
        for r in v.get("ops") or []:
            s = r["stats"]
            row = [who, r["op"], s.get("n", 0), fmt_ms(s.get("min")), fmt_ms(s.get("median")),
                   fmt_ms(s.get("max")),
                   fmt_ms(v.get("stages_sum_ms")) if r["op"] == "3-stage cold" else ""]
            for p in peers:
                row.append("" if who == p else fmt_ratio(ratio(
                    s.get("median"), medians.get((p, r["op"])))))
            rows.append(row)
    for name in ("docker",):
        if name not in bld and name in engines and not engines[name].get("present"):
            notes.append(f"  - {name}: {engines[name].get('reason', 'not run')}")
    head = ("\n== 7. builds (busybox base; whole CLI processes; 'sum' = stage A + stage B "
            "alone; 'vs X' = X's median / this median, >1 = faster than X)")
    headers = ["engine", "workload", "n", "min", "median", "max", "sum"] + \
        [f"vs {p}" for p in peers]
    return "\n".join([head, _table(headers, rows)] + notes)
