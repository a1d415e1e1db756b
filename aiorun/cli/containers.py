"""Container verbs that create, start or attach: ``run``, ``create``, ``start``, ``attach``,
and the ``container SUBCOMMAND`` group (whose other verbs live in ``lifecycle`` and
``listing``).

A thin client of the daemon's Docker-shaped API. This module is on ``aiorun run``'s hot path:
it imports only the standard library's light modules at load time (no argparse, anyio, h11 or
typing); options are parsed by :mod:`aiorun.cli.options`, the create body is made by
:mod:`aiorun.cli.createbody`.

Exit codes of ``run``: the container's; 125 when the engine refused (bad flag, unknown image,
...); 126 / 127 when the command could not be executed / was not found — as Docker.
"""

from __future__ import annotations

import sys

from aiorun.cli.common import api_error, call, start_error_code
from aiorun.cli.createbody import CREATE_OPTIONS, build_create
from aiorun.cli.options import BOOL, STR, Option, UsageError, err, verb
from aiorun.cli.terminal import (Null, RawTerminal, copy_output, detach_sequence,
                                 forward_signals, on_winch, pump_stdin, raw_stream, resize)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any

    from aiorun.cli.options import Group, Opts


# --------------------------------------------------------------------------- run / create

def _create_body(opts: Opts, rest: list[str]) -> tuple[dict[str, Any], str | None]:
    from aiorun.errors import InvalidArgument   # loaded anyway by the API client
    try:
        return build_create(opts, rest)
    except InvalidArgument as exc:     # from the pure parsers (ports, mounts, sizes)
        raise UsageError(exc.message) from None


DETACH_KEYS = Option("--detach-keys", STR, "Override the key sequence for detaching a "
                     "container (default ctrl-p,ctrl-q)")


@verb("run", "IMAGE [COMMAND] [ARG...]", "Create and run a new container from an image",
      *CREATE_OPTIONS, DETACH_KEYS, interspersed=False, usage_status=125)
def cmd_run(ctx: Any, opts: Opts, rest: list[str]) -> int:
    keys = detach_sequence(opts.detach_keys) if opts.tty and opts.interactive else b""
    body, name = _create_body(opts, rest)
    from aiorun.api.client import ApiError
    client = ctx.client()
    from aiorun.cli.pull import create_pulling      # a missing image is pulled (Docker's)
    cid = create_pulling(client, body, name, opts)["Id"]
    if opts.detach:
        try:
            call(client, "POST", f"/containers/{cid}/start")
        except ApiError as exc:
            err(api_error(exc))
            return start_error_code(exc.message)
        sys.stdout.write(cid + "\n")
        return 0
    return run_attached(client, cid, opts.tty, opts.interactive, bool(opts.rm), keys=keys)


@verb("create", "IMAGE [COMMAND] [ARG...]", "Create a new container",
      *CREATE_OPTIONS, interspersed=False, usage_status=125)
def cmd_create(ctx: Any, opts: Opts, rest: list[str]) -> int:
    opts["detach"] = True
    body, name = _create_body(opts, rest)
    from aiorun.cli.pull import create_pulling
    cid = create_pulling(ctx.client(), body, name, opts)["Id"]
    sys.stdout.write(cid + "\n")
    return 0


def run_attached(client: Any, cid: str, tty: bool, interactive: bool, auto_remove: bool,
                 start: bool = True, keys: bytes = b"") -> int:
    """Attach to the container (starting it when ``start``), copy its output (and feed it
    stdin when ``interactive``) until it exits; its exit status. Typing the detach ``keys``
    (a TTY session) leaves it running: status 0."""
    from aiorun.api.client import ApiError
    # Attach and wait are both sent before either answer is read (one round trip, not
    # two); both answers' heads are read before the start is sent, so the daemon has the
    # attach and the wait registered when the container starts: no output and no exit can
    # be missed.
    attaching = client.send("POST", f"/containers/{cid}/attach",
                            {"stream": True, "stdout": True, "stderr": True,
                             "stdin": interactive}, upgrade=True)
    try:
        waiting = client.send("POST", f"/containers/{cid}/wait",
                              {"condition": "removed" if auto_remove else "next-exit"})
    except BaseException:
        attaching.close()
        raise
    try:
        sock, first = raw_stream(attaching.response())
    except BaseException:
        waiting.close()
        raise
    try:
        waiter = waiting.response()
    except BaseException:
        sock.close()
        raise
    restore = (lambda: None) if tty and sys.stdin.isatty() else forward_signals(client, cid)
    try:
        if start:
            try:
                call(client, "POST", f"/containers/{cid}/start")
            except ApiError as exc:
                sock.close()
                waiter.close()
                err(api_error(exc))
                return start_error_code(exc.message)
        with RawTerminal() if tty and interactive else Null():
            if tty:
                resize(client, f"/containers/{cid}/resize")
                on_winch(lambda: resize(client, f"/containers/{cid}/resize"))
            detached = pump_stdin(sock, keys if tty else b"") if interactive else None
            copy_output(sock, first, tty)
        sock.close()
        if detached is not None and detached.is_set():
            waiter.close()
            return 0
        try:
            # a daemon gone mid-wait raises ConnectionLost: reported by main, status 125
            result = waiter.json() or {}
        finally:
            waiter.close()
        err_msg = (result.get("Error") or {}).get("Message") \
            if isinstance(result.get("Error"), dict) else None
        if err_msg and start:
            err(err_msg)
        return int(result.get("StatusCode", 125))
    finally:
        restore()


# --------------------------------------------------------------------------- start / attach

@verb("start", "CONTAINER [CONTAINER...]", "Start one or more stopped containers",
      Option("-a --attach", BOOL, "Attach STDOUT/STDERR and forward signals"),
      Option("-i --interactive", BOOL, "Attach container's STDIN"), DETACH_KEYS)
def cmd_start(ctx: Any, opts: Opts, refs: list[str]) -> int:
    if not refs:
        raise UsageError("requires at least 1 argument")
    from aiorun.api.client import ApiError
    client = ctx.client()
    if opts.attach:
        if len(refs) > 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        info = client.get(f"/containers/{refs[0]}/json")
        tty = bool(info["Config"].get("Tty"))
        return run_attached(client, info["Id"], tty, bool(opts.interactive), False,
                            keys=detach_sequence(opts.detach_keys) if tty else b"")
    rc = 0
    for ref in refs:
        try:
            r = client.request("POST", f"/containers/{ref}/start")
            status = r.status
            r.close()
            if status == 304:
                err(f"Error response from daemon: container {ref} is already running")
                rc = 1
                continue
            sys.stdout.write(ref + "\n")
        except ApiError as exc:
            err(api_error(exc))
            err(f"Error: failed to start containers: {ref}")
            rc = 1
    return rc


@verb("attach", "CONTAINER",
      "Attach local standard input, output, and error streams to a running container",
      Option("--no-stdin", BOOL, "Do not attach STDIN"),
      Option("--sig-proxy", BOOL, "Proxy all received signals to the process (accepted)"),
      DETACH_KEYS)
def cmd_attach(ctx: Any, opts: Opts, refs: list[str]) -> int:
    """Stream a running container's output (and feed it stdin when it was started with -i)
    until it exits; its exit code."""
    if len(refs) != 1:
        raise UsageError('"attach" requires exactly 1 argument')
    client = ctx.client()
    info = client.get(f"/containers/{refs[0]}/json")
    if not info["State"]["Running"]:
        err("You cannot attach to a stopped container, start it first")
        return 1
    cfg = info["Config"]
    tty = bool(cfg.get("Tty"))
    return run_attached(client, info["Id"], tty,
                        bool(cfg.get("OpenStdin")) and not opts.no_stdin, False, start=False,
                        keys=detach_sequence(opts.detach_keys) if tty else b"")


# --------------------------------------------------------------------------- container group

def container_group() -> Group:
    """``aiorun container SUBCOMMAND`` (built on use: it imports every container verb)."""
    from aiorun.cli import lifecycle, listing
    from aiorun.cli.exec import cmd_exec
    from aiorun.cli.options import Group
    subs = {"attach": cmd_attach, "create": cmd_create, "exec": cmd_exec,
            "inspect": listing.cmd_container_inspect, "kill": lifecycle.cmd_kill,
            "logs": listing.cmd_logs, "ls": listing.cmd_ps, "pause": lifecycle.cmd_pause,
            "prune": lifecycle.cmd_prune, "rename": lifecycle.cmd_rename,
            "restart": lifecycle.cmd_restart, "rm": lifecycle.cmd_rm, "run": cmd_run,
            "start": cmd_start, "stop": lifecycle.cmd_stop, "top": listing.cmd_top,
            "unpause": lifecycle.cmd_unpause, "update": lifecycle.cmd_update,
            "wait": lifecycle.cmd_wait}
    from aiorun.cli import cp, fsverbs, stats     # issue 14's verbs
    subs.update(cp=cp.cmd_cp, diff=fsverbs.cmd_diff, export=fsverbs.cmd_export,
                stats=stats.cmd_stats)
    subs = {name: v if v.command.name == f"container {name}" else
            v.renamed(f"container {name}") for name, v in subs.items()}
    return Group("container", "Manage containers", subs,
                 aliases={"list": "ls", "ps": "ls", "remove": "rm"})


def cmd_container(ctx: Any, argv: list[str]) -> int:
    return container_group()(ctx, argv)
