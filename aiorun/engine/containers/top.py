"""``docker top CONTAINER [ps OPTIONS]`` (``GET /containers/{id}/top?ps_args=...``).

As dockerd: without ``ps_args`` a ``ps -ef``-like table (read from /proc, no ``ps`` needed);
with them the host's ``ps`` runs with those arguments and only the rows of the container's
processes are kept (:func:`parse_ps_output`, Docker's ``parsePSOutput``). The container's
processes are those of its cgroup (so ``--pid host`` containers list only their own).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from aiorun.engine.containers.logs import top_of_pid
from aiorun.errors import AiorunError, InvalidArgument


def parse_ps_output(output: str, pids: set[int]) -> dict[str, Any]:
    """Titles from the header; the rows whose PID column is in ``pids``, the overhanging
    fields of the last column (a command with spaces) joined."""
    lines = output.split("\n")
    titles = lines[0].split() if lines else []
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    at = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        try:
            pid = int(fields[at])
        except (ValueError, IndexError):
            raise InvalidArgument(f"Unexpected pid '{fields[at] if at < len(fields) else ''}'"
                                  " in ps output") from None
        if pid in pids:
            rows.append(fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])])
    return {"Titles": titles, "Processes": rows}


def run_ps(ps_args: str, pids: set[int]) -> dict[str, Any]:
    ps = shutil.which("ps")
    if ps is None:
        raise AiorunError("docker top with ps options needs the host's ps (procps)")
    args = ps_args.split()
    try:
        r = subprocess.run([ps, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AiorunError(f"running ps: {e}") from None
    if r.returncode != 0:
        raise InvalidArgument(f"ps: {(r.stderr or r.stdout).strip()}")
    return parse_ps_output(r.stdout, pids)


def top(pid1: int, pids: list[int], ps_args: str = "") -> dict[str, Any]:
    """The table for a container whose PID 1 is ``pid1`` and cgroup holds ``pids`` (empty:
    no cgroup to ask, then the PID namespace of ``pid1`` decides)."""
    if ps_args:
        return run_ps(ps_args, set(pids) or {pid1})
    table = top_of_pid(pid1)
    if pids:
        at = table["Titles"].index("PID")
        table["Processes"] = [p for p in table["Processes"] if int(p[at]) in set(pids)]
    return table
