"""Docker's progress text (pure): sizes in decimal units and the 50-column bar of its JSON
progress messages' ``progress`` field. Shared by the daemon's pull/push/load messages and the
CLI's own transfers, so every bar looks the same."""

from __future__ import annotations

#: Width of a bar between the brackets (docker's).
WIDTH = 50


def human(n: float) -> str:
    """Decimal units with 4 significant digits, as docker's progress shows sizes
    (``999B``, ``1.235MB``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{int(n)}B" if unit == "B" else f"{n:.4g}{unit}"
        n /= 1000
    raise AssertionError("unreachable: the loop returns at GB")


def bar(current: int, total: int | None) -> str:
    """``[====>     ] 1.2MB/3.4MB``; just the size when the total is unknown."""
    if not total:
        return human(current)
    filled = max(0, min(WIDTH, current * WIDTH // total))
    arrow = "=" * max(0, filled - 1) + (">" if filled else "")
    return f"[{arrow:<{WIDTH}}] {human(current)}/{human(total)}"
