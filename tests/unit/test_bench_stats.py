"""The bench's pure pieces: percentiles, summaries, ratios, footprint and target verdicts."""

from __future__ import annotations

import pytest

from bench import footprint, report, targets
from bench.concurrent import per_container_overhead
from bench.stats import fmt_ms, fmt_ratio, percentile, ratio, summarize_ns


def test_percentile_interpolates_and_rejects_bad_input():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5
    assert percentile([10, 0, 20], 0) == 0
    assert percentile(list(range(101)), 95) == 95
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summarize_ns_in_ms_and_empty():
    s = summarize_ns([1_000_000, 3_000_000, 2_000_000])
    assert s == {"n": 3, "min": 1.0, "median": 2.0, "p95": 2.9, "mean": 2.0, "max": 3.0}
    assert summarize_ns([]) == {"n": 0}


def test_ratio_is_reference_over_value():
    assert ratio(100, 400) == 4.0
    assert ratio(None, 4) is None and ratio(0, 4) is None and ratio(4, None) is None
    assert fmt_ratio(4.0) == "4.00x" and fmt_ratio(12.3) == "12x" and fmt_ratio(None) == "-"
    assert fmt_ms(1500) == "1.50s" and fmt_ms(12.34) == "12.3ms"


def _usage(procs, rss, pss, by):
    return {"processes": procs, "rss_mb": rss, "pss_mb": pss,
            "by_comm": {k: {"count": c, "rss_mb": r} for k, (c, r) in by.items()}}


def test_overhead_and_footprint_exclude_the_containers_own_processes():
    idle = _usage(2, 60.0, 40.0, {"aiorun": (1, 50.0), "python3": (1, 10.0)})
    steady = _usage(202, 420.0, 60.0, {"aiorun": (1, 60.0), "python3": (1, 10.0),
                                       "sleep": (200, 350.0)})
    ov = per_container_overhead(idle, steady, 200)
    assert ov["processes"] == 0 and ov["rss_mb"] == pytest.approx(0.05)
    assert ov["pss_mb_incl_container"] == pytest.approx(0.1)
    assert per_container_overhead(idle, steady, 0) is None
    fp = footprint.from_concurrent([{"n": 50, "running": 50, "idle": idle, "steady": steady,
                                     "overhead": ov},
                                    {"n": 200, "running": 200, "idle": idle, "steady": steady,
                                     "overhead": ov}])
    assert fp["n"] == 200 and fp["with_n_rss_mb"] == 70.0 and fp["idle_processes"] == 2


def test_targets_and_report_render_partial_results():
    res = {"engines": {"aiorun[overlay]": {"present": True, "version": "x"},
                       "docker": {"present": False, "reason": "dockerd not installed"}},
           "start_latency": {
               "aiorun[overlay]": [{"variant": "run", "network": "bridge", "via": "cli",
                                    "stats": summarize_ns([90_000_000]), "failures": 0,
                                    "errors": []}],
               "podman": [{"variant": "run", "network": "bridge", "via": "cli",
                           "stats": summarize_ns([450_000_000]), "failures": 0,
                           "errors": []}]}}
    t = {x["what"]: x for x in targets.evaluate(res)}
    assert t["CLI run --rm p50"]["verdict"] == "ok"
    assert t["CLI run --rm vs podman"]["measured"] == "5.0x"
    assert t["CLI run --rm vs docker"]["verdict"] == "n/a"
    assert t["API create+start p50, bridge, overlay"]["verdict"] == "n/a"
    res["targets"] = list(t.values())
    text = report.render(res)
    assert "MISSING: dockerd not installed" in text
    assert "5.00x" in text  # aiorun vs podman, same network mode
