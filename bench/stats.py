"""Pure statistics for the bench: summaries of timing samples and ratios to peers.

All timings are kept in nanoseconds internally and reported in milliseconds.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) with linear interpolation between closest ranks.

    Raises ``ValueError`` for an empty sequence or ``p`` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0..100")
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:
        return float(xs[lo])
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize_ns(samples_ns: Iterable[int]) -> dict[str, float]:
    """min/median/p95/mean/max in milliseconds plus the sample count ``n``.

    An empty input gives ``{"n": 0}`` so that a variant that failed every run still shows up.
    """
    ms = [s / 1e6 for s in samples_ns]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "min": round(min(ms), 3),
        "median": round(percentile(ms, 50), 3),
        "p95": round(percentile(ms, 95), 3),
        "mean": round(sum(ms) / len(ms), 3),
        "max": round(max(ms), 3),
    }


def ratio(value: float | None, reference: float | None) -> float | None:
    """``reference / value``: how many times faster (or smaller) ``value`` is than ``reference``.

    > 1 means ``value`` is better (smaller). ``None`` when either side is missing or zero.
    """
    if value is None or reference is None or value <= 0 or reference <= 0:
        return None
    return round(reference / value, 2)


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v / 1000:.2f}s"
    if v >= 100:
        return f"{v:.0f}ms"
    return f"{v:.1f}ms"


def fmt_mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}MB"
