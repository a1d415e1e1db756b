"""Verbs that act on existing containers: ``stop``, ``kill``, ``restart``, ``rm``, ``wait``,
``update``, ``pause``, ``unpause``, ``rename`` and ``container prune``."""

from __future__ import annotations

import sys

from aiorun.cli.common import call, each
from aiorun.cli.options import BOOL, LIST, STR, Option, UsageError, filters, integer, verb

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any

    from aiorun.cli.options import Opts


@verb("stop", "CONTAINER [CONTAINER...]", "Stop one or more running containers",
      Option("-t --time --timeout", STR, "Seconds to wait before killing the container",
             dest="time", metavar="int"),
      Option("-s --signal", STR, "Signal to send to the container"))
def cmd_stop(ctx: Any, opts: Opts, refs: list[str]) -> int:
    def stop(client: Any, ref: str) -> None:
        r = client.request("POST", f"/containers/{ref}/stop",
                           {"t": opts.time, "signal": opts.signal})
        r.close()
    return each(ctx, "stop", refs, stop)


@verb("kill", "CONTAINER [CONTAINER...]", "Kill one or more running containers",
      Option("-s --signal", STR, "Signal to send to the container (default KILL)"))
def cmd_kill(ctx: Any, opts: Opts, refs: list[str]) -> int:
    return each(ctx, "kill", refs, lambda cl, ref: call(cl, "POST", f"/containers/{ref}/kill",
                                                            signal=opts.signal or "KILL"))


@verb("restart", "CONTAINER [CONTAINER...]", "Restart one or more containers",
      Option("-t --time --timeout", STR, "Seconds to wait before killing the container",
             dest="time", metavar="int"))
def cmd_restart(ctx: Any, opts: Opts, refs: list[str]) -> int:
    return each(ctx, "restart", refs,
                lambda cl, ref: call(cl, "POST", f"/containers/{ref}/restart", t=opts.time))


@verb("rm", "CONTAINER [CONTAINER...]", "Remove one or more containers",
      Option("-f --force", BOOL, "Force the removal of a running container"),
      Option("-v --volumes", BOOL, "Remove anonymous volumes of the container"),
      Option("-l --link", BOOL, "Remove the specified link (accepted)"))
def cmd_rm(ctx: Any, opts: Opts, refs: list[str]) -> int:
    return each(ctx, "rm", refs, lambda cl, ref: call(
        cl, "DELETE", f"/containers/{ref}", force=opts.force or None, v=opts.volumes or None))


@verb("wait", "CONTAINER [CONTAINER...]",
      "Block until one or more containers stop, then print their exit codes")
def cmd_wait(ctx: Any, opts: Opts, refs: list[str]) -> int:
    def wait(cl: Any, ref: str) -> None:
        res = call(cl, "POST", f"/containers/{ref}/wait", condition="not-running") or {}
        sys.stdout.write(f"{res.get('StatusCode', -1)}\n")
    return each(ctx, "wait", refs, wait, echo=False)


@verb("update", "CONTAINER [CONTAINER...]", "Update configuration of one or more containers",
      Option("-m --memory", STR, "Memory limit", metavar="bytes"),
      Option("--memory-swap", STR, "Memory plus swap limit ('-1': unlimited swap)",
             metavar="bytes"),
      Option("--cpus", STR, "Number of CPUs", metavar="decimal"),
      Option("-c --cpu-shares", STR, "CPU shares (relative weight)", metavar="int"),
      Option("--pids-limit", STR, "Limit the number of processes", metavar="int"),
      Option("--restart", STR, "Restart policy to apply when a container exits"))
def cmd_update(ctx: Any, opts: Opts, refs: list[str]) -> int:
    from aiorun.core import spec
    from aiorun.errors import InvalidArgument
    body: dict[str, Any] = {}
    try:
        if opts.memory:
            body["Memory"] = spec.parse_memory(opts.memory)
        if opts.memory_swap:
            body["MemorySwap"] = -1 if opts.memory_swap == "-1" else \
                spec.parse_memory(opts.memory_swap)
        if opts.cpus:
            body["NanoCpus"] = spec.parse_cpus(opts.cpus)
        if opts.cpu_shares:
            body["CpuShares"] = integer(opts.cpu_shares, "--cpu-shares")
        if opts.pids_limit:
            body["PidsLimit"] = integer(opts.pids_limit, "--pids-limit")
        if opts.restart:
            body["RestartPolicy"] = spec.parse_restart_policy(opts.restart)
    except InvalidArgument as exc:
        raise UsageError(exc.message) from None
    return each(ctx, "update", refs,
                lambda cl, ref: call(cl, "POST", f"/containers/{ref}/update", body))


@verb("pause", "CONTAINER [CONTAINER...]",
      "Pause all processes within one or more containers")
def cmd_pause(ctx: Any, opts: Opts, refs: list[str]) -> int:
    return each(ctx, "pause", refs, lambda cl, ref: call(cl, "POST", f"/containers/{ref}/pause"))


@verb("unpause", "CONTAINER [CONTAINER...]",
      "Unpause all processes within one or more containers")
def cmd_unpause(ctx: Any, opts: Opts, refs: list[str]) -> int:
    return each(ctx, "unpause", refs,
                lambda cl, ref: call(cl, "POST", f"/containers/{ref}/unpause"))


@verb("rename", "CONTAINER NEW_NAME", "Rename a container")
def cmd_rename(ctx: Any, opts: Opts, args: list[str]) -> int:
    if len(args) != 2:
        raise UsageError('"rename" requires exactly 2 arguments: CONTAINER NEW_NAME')
    call(ctx.client(), "POST", f"/containers/{args[0]}/rename", name=args[1])
    return 0


@verb("container prune", "", "Remove all stopped containers",
      Option("-f --force", BOOL, "Do not prompt for confirmation"),
      Option("--filter", LIST, "Provide filter values (e.g. 'until=<timestamp>')"))
def cmd_prune(ctx: Any, opts: Opts, rest: list[str]) -> int:
    wanted = filters(opts.filter)
    if not opts.force and sys.stdin.isatty():
        sys.stdout.write("WARNING! This will remove all stopped containers.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    res = call(ctx.client(), "POST", "/containers/prune", filters=wanted or None) or {}
    deleted = res.get("ContainersDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Containers:\n" + "".join(d + "\n" for d in deleted) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}\n")
    return 0


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}PB"
