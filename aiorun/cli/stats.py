"""``aiorun stats``: live resource usage of containers, as ``docker stats``.

Each refresh takes a one-shot sample of every container (``/containers/{id}/stats?stream=0
&one-shot=1``) and computes the CPU percentage against the previous refresh's sample, as
the docker CLI does with ``precpu_stats``: ``Δcontainer / Δsystem × online CPUs × 100``.
Memory usage leaves out the inactive page cache (``total_inactive_file`` on cgroup v1,
``inactive_file`` on v2), as Docker. On a terminal the table is redrawn in place every
second; ``--no-stream`` prints one table (after a one-second measurement) and exits.
"""

from __future__ import annotations

import sys
import time

from aiorun.cli.options import BOOL, STR, Option, verb

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from aiorun.cli.options import Opts

DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
           "\t{{.BlockIO}}\t{{.PIDs}}")
HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME",
           "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
           "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def _sig(v: float, digits: int) -> str:
    s = f"{v:.{digits}g}"
    return s if "e" not in s else f"{v:.0f}"


def bytes_size(n: float) -> str:
    """Binary units, 4 significant digits (Docker's ``units.BytesSize``): ``1.5MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{_sig(n, 4)}{unit}"
        n /= 1024
    return f"{n}B"


def human_size(n: float) -> str:
    """Decimal units, 3 significant digits (Docker's ``units.HumanSizeWithPrecision``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{_sig(n, 3)}{unit}"
        n /= 1000
    return f"{n}B"


def cpu_percent(cur: dict[str, Any], prev: dict[str, Any] | None) -> float:
    if not prev:
        prev = cur.get("precpu_stats") or {}
    else:
        prev = prev.get("cpu_stats") or {}
    c = cur.get("cpu_stats") or {}
    d_cpu = (c.get("cpu_usage") or {}).get("total_usage", 0) - \
        (prev.get("cpu_usage") or {}).get("total_usage", 0)
    d_sys = c.get("system_cpu_usage", 0) - prev.get("system_cpu_usage", 0)
    online = c.get("online_cpus") or len((c.get("cpu_usage") or {}).get("percpu_usage") or [1])
    if d_cpu > 0 and d_sys > 0:
        return d_cpu / d_sys * online * 100.0
    return 0.0


def mem_usage(m: dict[str, Any]) -> float:
    usage = float(m.get("usage") or 0)
    st = m.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in st and st[key] < usage:
            return usage - st[key]
    return usage


def row(ref: str, doc: dict[str, Any], prev: dict[str, Any] | None,
        no_trunc: bool = False) -> dict[str, str]:
    """The table cells of one container from its stats document."""
    m = doc.get("memory_stats") or {}
    usage, limit = mem_usage(m), float(m.get("limit") or 0)
    rx = tx = 0
    for n in (doc.get("networks") or {}).values():
        rx += n.get("rx_bytes", 0)
        tx += n.get("tx_bytes", 0)
    rd = wr = 0
    for e in (doc.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(e.get("op", "")).lower()
        rd += e.get("value", 0) if op == "read" else 0
        wr += e.get("value", 0) if op == "write" else 0
    cid = doc.get("id") or ""
    return {"Container": ref, "ID": cid if no_trunc else cid[:12],
            "Name": str(doc.get("name") or "").lstrip("/"),
            "CPUPerc": f"{cpu_percent(doc, prev):.2f}%",
            "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}",
            "MemPerc": f"{(usage / limit * 100.0) if limit else 0.0:.2f}%",
            "NetIO": f"{human_size(rx)} / {human_size(tx)}",
            "BlockIO": f"{human_size(rd)} / {human_size(wr)}",
            "PIDs": str((doc.get("pids_stats") or {}).get("current", 0))}


def _sample(client: Any, ref: str) -> dict[str, Any]:
    return client.get(f"/containers/{ref}/stats", stream=False, **{"one-shot": True})


@verb("stats", "[CONTAINER...]", "Display a live stream of container(s) resource usage "
      "statistics",
      Option("-a --all", BOOL, "Show all containers (default shows just running)"),
      Option("--no-stream", BOOL, "Disable streaming stats and only pull the first result"),
      Option("--no-trunc", BOOL, "Do not truncate output"),
      Option("--format", STR, "Format output using a custom template"))
def cmd_stats(ctx: Any, opts: Opts, rest: list[str]) -> int:
    from aiorun.core.templates import render_table
    client = ctx.client()
    fmt = opts.format or DEFAULT
    if fmt == "json":
        fmt = "{{json .}}"
    tty = sys.stdout.isatty()

    def refs() -> list[str]:
        if rest:
            return list(rest)
        return [c["Id"] for c in client.get("/containers/json", all=opts.all or None) or []]

    prev = {r: _sample(client, r) for r in refs()}
    while True:
        time.sleep(1.0)
        current = {r: _sample(client, r) for r in refs()}
        rows = [row(r, d, prev.get(r), opts.no_trunc) for r, d in current.items()]
        text = render_table(fmt, rows, HEADERS)
        if opts.no_stream:
            sys.stdout.write(text)
            return 0
        sys.stdout.write(("\033[2J\033[H" if tty else "") + text)
        sys.stdout.flush()
        prev = current
