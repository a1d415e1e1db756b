"""``aiorun exec [-d] [-i] [-t] [-e K=V] [-w DIR] [-u USER] [--privileged] CONTAINER CMD...``

Through the API like docker: ``POST /containers/{id}/exec``, a hijacked ``POST
/exec/{id}/start``, then the exit code from ``GET /exec/{id}/json``. Lean imports (this is a
hot verb).
"""

from __future__ import annotations

from aiorun.cli.common import api_error, call, start_error_code
from aiorun.cli.createbody import env_files, env_values
from aiorun.cli.options import BOOL, LIST, STR, Option, UsageError, err, verb
from aiorun.cli.terminal import (Null, RawTerminal, copy_output, detach_sequence, on_winch,
                                 pump_stdin, raw_stream, resize)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any

    from aiorun.cli.options import Opts


@verb("exec", "CONTAINER COMMAND [ARG...]", "Execute a command in a running container",
      Option("-d --detach", BOOL, "Detached mode: run command in the background"),
      Option("-i --interactive", BOOL, "Keep STDIN open even if not attached"),
      Option("-t --tty", BOOL, "Allocate a pseudo-TTY"),
      Option("-e --env", LIST, "Set environment variables"),
      Option("--env-file", LIST, "Read in a file of environment variables"),
      Option("-w --workdir", STR, "Working directory inside the container"),
      Option("-u --user", STR, 'Username or UID (format: "<name|uid>[:<group|gid>]")'),
      Option("--privileged", BOOL, "Give extended privileges to the command"),
      Option("--detach-keys", STR, "Override the key sequence for detaching a container "
             "(default ctrl-p,ctrl-q)"),
      interspersed=False)
def cmd_exec(ctx: Any, opts: Opts, rest: list[str]) -> int:
    if len(rest) < 2:
        raise UsageError('"exec" requires at least 2 arguments: CONTAINER COMMAND [ARG...]')
    env = env_values(env_files(opts.env_file) + opts.env)
    keys = detach_sequence(opts.detach_keys) if opts.tty and opts.interactive else b""
    from aiorun.api.client import ApiError
    ref, cmd = rest[0], rest[1:]
    client = ctx.client()
    body = {"AttachStdin": opts.interactive and not opts.detach,
            "AttachStdout": not opts.detach, "AttachStderr": not opts.detach,
            "Tty": opts.tty, "Env": env, "WorkingDir": opts.workdir or "",
            "User": opts.user or "", "Privileged": opts.privileged, "Cmd": cmd,
            "DetachKeys": opts.detach_keys or ""}
    try:
        eid = call(client, "POST", f"/containers/{ref}/exec", body)["Id"]
    except ApiError as exc:
        err(api_error(exc))
        return 1
    if opts.detach:
        try:
            call(client, "POST", f"/exec/{eid}/start", {"Detach": True, "Tty": opts.tty})
        except ApiError as exc:
            err(api_error(exc))
            return start_error_code(exc.message)
        return 0
    try:
        resp = client.request("POST", f"/exec/{eid}/start", body={"Detach": False,
                                                                    "Tty": opts.tty},
                              upgrade=True)
    except ApiError as exc:
        err(api_error(exc))
        try:
            code = client.get(f"/exec/{eid}/json").get("ExitCode")
        except ApiError:
            code = None
        return int(code) if isinstance(code, int) and code > 0 else start_error_code(exc.message)
    sock, first = raw_stream(resp)
    detached = None
    # Docker does not forward signals to exec processes: default handling (the CLI exits,
    # the exec goes on).
    try:
        with RawTerminal() if opts.tty and opts.interactive else Null():
            if opts.tty:
                resize(client, f"/exec/{eid}/resize")
                on_winch(lambda: resize(client, f"/exec/{eid}/resize"))
            detached = pump_stdin(sock, keys) if opts.interactive else None
            copy_output(sock, first, bool(opts.tty))
    finally:
        sock.close()
    if detached is not None and detached.is_set():
        return 0                # the exec goes on
    info = client.get(f"/exec/{eid}/json") or {}
    code = info.get("ExitCode")
    return int(code) if isinstance(code, int) else 126
