"""Issue 7's targets checked against a result set (pure). Measured, never asserted."""

from __future__ import annotations


def _lat(results: dict, engine: str, network: str, via: str,
         sub: str | None = None) -> float | None:
    """Median of a variant (or of its ``sub`` timing, e.g. "create+start")."""
    for r in (results.get("start_latency") or {}).get(engine, []):
        if r["network"] == network and r["via"] == via and r["stats"].get("n"):
            if sub is not None:
                return ((r.get("sub") or {}).get(sub) or {}).get("median")
            return r["stats"]["median"]
    return None


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISS")


def evaluate(results: dict, engine: str = "aiorun[overlay]") -> list[dict]:
    out = []

    def add(what: str, target: str, value, ok: bool | None, unit: str = "") -> None:
        out.append({"what": what, "target": target,
                    "measured": "-" if value is None else f"{value}{unit}",
                    "verdict": _verdict(ok)})

    v = _lat(results, engine, "bridge", "api", "create+start")
    add("API create+start p50, bridge, overlay", "<= 30 ms", v,
        None if v is None else v <= 30, " ms")
    v = _lat(results, engine, "none", "api", "create+start")
    add("API create+start p50, --network none", "<= 15 ms", v,
        None if v is None else v <= 15, " ms")
    v = _lat(results, engine, "bridge", "cli")
    add("CLI run --rm p50", "<= 100 ms", v, None if v is None else v <= 100, " ms")
    for peer in ("docker", "podman"):
        p = _lat(results, peer, "bridge", "cli")
        r = round(p / v, 2) if v and p else None
        add(f"CLI run --rm vs {peer}", ">= 4x faster", r, None if r is None else r >= 4, "x")
    conc = {r["n"]: r for r in (results.get("concurrent") or {}).get(engine, [])}
    for n, limit in ((200, 2.0), (1000, 12.0)):
        r = conc.get(n)
        if r is None:
            add(f"{n} concurrent bridge starts", f"<= {limit} s, 0 failures", None, None)
        else:
            add(f"{n} concurrent bridge starts", f"<= {limit} s, 0 failures",
                f"{r['all_running_s']} s, {r['failures']} failures",
                r["all_running_s"] <= limit and r["failures"] == 0)
    fp = (results.get("footprint") or {}).get(engine)
    if fp:
        add(f"daemon RSS with {fp['n']} running", "<= 150 MB", fp["with_n_rss_mb"],
            fp["with_n_rss_mb"] <= 150 if fp["n"] >= 200 else None, " MB")
        add("per-container overhead", "<= 0.3 MB, 0 extra processes",
            f"{fp['rss_mb_per_container']} MB, {fp['procs_per_container']} procs",
            (fp["rss_mb_per_container"] or 0) <= 0.3 and (fp["procs_per_container"] or 0) < 0.5)
    else:
        add("daemon RSS with 200 running", "<= 150 MB", None, None)
    ev = (results.get("events") or {}).get("one_subscriber_events_per_s")
    add("event bus to one subscriber", ">= 50k events/s", ev, None if ev is None else ev >= 50_000)
    return out
