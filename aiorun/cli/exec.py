"""``aiorun exec [-d] [-i] [-t] [-e K=V] [-w DIR] [-u USER] [--privileged] CONTAINER CMD...``

Through the API like docker: ``POST /containers/{id}/exec``, a hijacked ``POST
/exec/{id}/start``, then the exit code from ``GET /exec/{id}/json``. Lean imports (this is a
hot verb).
"""

from __future__ import annotations

import sys
from typing import Any

from aiorun.cli.containers import (BOOL, LIST, STR, UsageError, _api_error, _copy_output, _err,
                                   _env_values, _flags, _on_winch, _pump_stdin,
                                   _RawTerminal, _raw_stream, _resize, _Null, _usage_fail,
                                   call, parse_opts, start_error_code)

EXEC_FLAGS = _flags(
    ("-d --detach", "detach", BOOL), ("-i --interactive", "interactive", BOOL),
    ("-t --tty", "tty", BOOL), ("-e --env", "env", LIST), ("--env-file", "env_file", LIST),
    ("-w --workdir", "workdir", STR), ("-u --user", "user", STR),
    ("--privileged", "privileged", BOOL), ("--detach-keys", "detach_keys", STR),
    ("--help", "help", BOOL),
)

USAGE = """Usage:  aiorun exec [OPTIONS] CONTAINER COMMAND [ARG...]

Execute a command in a running container

Options:
  -d, --detach         Detached mode: run command in the background
  -e, --env K=V        Set environment variables
  -i, --interactive    Keep STDIN open even if not attached
      --privileged     Give extended privileges to the command
  -t, --tty            Allocate a pseudo-TTY
  -u, --user USER      Username or UID (format: "<name|uid>[:<group|gid>]")
  -w, --workdir DIR    Working directory inside the container
"""


def cmd_exec(ctx: Any, argv: list[str]) -> int:
    try:
        opts, rest = parse_opts(EXEC_FLAGS, argv, interspersed=False)
        if opts.help:
            sys.stdout.write(USAGE)
            return 0
        if len(rest) < 2:
            raise UsageError('"exec" requires at least 2 arguments: CONTAINER COMMAND [ARG...]')
        from aiorun.cli.containers import _env_files
        env = _env_values(_env_files(opts.env_file) + opts.env)
    except UsageError as exc:
        return _usage_fail("exec", exc, 1)
    from aiorun.api.client import ApiError
    ref, cmd = rest[0], rest[1:]
    client = ctx.client()
    body = {"AttachStdin": opts.interactive and not opts.detach,
            "AttachStdout": not opts.detach, "AttachStderr": not opts.detach,
            "Tty": opts.tty, "Env": env, "WorkingDir": opts.workdir or "",
            "User": opts.user or "", "Privileged": opts.privileged, "Cmd": cmd}
    try:
        eid = call(client, "POST", f"/containers/{ref}/exec", body)["Id"]
    except ApiError as exc:
        _err(_api_error(exc))
        return 1 if exc.status != 404 else 1
    if opts.detach:
        try:
            call(client, "POST", f"/exec/{eid}/start", {"Detach": True, "Tty": opts.tty})
        except ApiError as exc:
            _err(_api_error(exc))
            return start_error_code(exc.message)
        return 0
    try:
        resp = client.request("POST", f"/exec/{eid}/start", body={"Detach": False,
                                                                    "Tty": opts.tty},
                              upgrade=True)
    except ApiError as exc:
        _err(_api_error(exc))
        try:
            code = client.get(f"/exec/{eid}/json").get("ExitCode")
        except ApiError:
            code = None
        return int(code) if isinstance(code, int) and code > 0 else start_error_code(exc.message)
    sock, first = _raw_stream(resp)
    restore = (lambda: None) if opts.tty and sys.stdin.isatty() else _forward_exec_signals()
    try:
        with _RawTerminal() if opts.tty and opts.interactive else _Null():
            if opts.tty:
                _resize(client, f"/exec/{eid}/resize")
                _on_winch(lambda: _resize(client, f"/exec/{eid}/resize"))
            if opts.interactive:
                _pump_stdin(sock)
            _copy_output(sock, first, bool(opts.tty))
    finally:
        sock.close()
        restore()
    info = client.get(f"/exec/{eid}/json") or {}
    code = info.get("ExitCode")
    return int(code) if isinstance(code, int) else 126


def _forward_exec_signals() -> Any:
    # Docker does not forward signals to exec processes; keep ^C from killing us mid-stream
    # only for the terminal case. Non-TTY: default handling (the CLI exits, the exec goes on).
    return lambda: None


