"""Issue 7, part 3: daemon footprint idle and with N running containers (pure: computed
from the concurrent measurement's idle and steady-state samples)."""

from __future__ import annotations

from bench.concurrent import CONTAINER_COMMS


def from_concurrent(runs: list[dict], prefer_n: int = 200) -> dict | None:
    """Footprint figures from the run with ``prefer_n`` containers (else the largest N)."""
    ok = [r for r in runs if r.get("running")]
    if not ok:
        return None
    r = next((x for x in ok if x["n"] == prefer_n), max(ok, key=lambda x: x["n"]))
    idle, steady, ov = r["idle"], r["steady"], r.get("overhead") or {}
    own_rss = sum(steady["by_comm"].get(c, {}).get("rss_mb", 0.0) for c in CONTAINER_COMMS)
    return {
        "idle_processes": idle["processes"],
        "idle_rss_mb": idle["rss_mb"],
        "idle_by_comm": idle["by_comm"],
        "n": r["running"],
        "with_n_rss_mb": round(steady["rss_mb"] - own_rss, 1),
        "with_n_by_comm": steady["by_comm"],
        "procs_per_container": ov.get("processes"),
        "rss_mb_per_container": ov.get("rss_mb"),
        "pss_mb_per_container": ov.get("pss_mb_incl_container"),
    }
