"""Registry verbs: ``push``, ``login``, ``logout`` — clients of the daemon's API only (the
daemon talks to the registry and keeps the credentials; this module imports no HTTP client).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from aiorun.cli.options import BOOL, STR, Opts, Option, UsageError, err, need, verb
from aiorun.cli.progress import ProgressPrinter, render_stream

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


# ------------------------------------------------------------------ verbs

@verb("push", "NAME[:TAG]", "Upload an image to a registry",
      Option("-a --all-tags", BOOL, "Push all tags of an image to the repository"),
      Option("-q --quiet", BOOL, "Suppress verbose output"))
def cmd_push(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "push", 1, 1)
    name = argv[0]
    last = name.rpartition("/")[2]
    tag = None
    if ":" in last and "@" not in name:
        name, _, tag = name.rpartition(":")
    if args.all_tags and tag:
        raise UsageError("tag can't be used with --all-tags/-a")
    if tag is None and not args.all_tags:
        tag = "latest"
    resp = ctx.client().request("POST", f"/images/{name}/push", {"tag": tag or ""})
    try:
        if args.quiet:
            code = _quiet(resp)
            if code == 0:
                print(f"{name}:{tag}" if tag else name)
            return code
        return render_stream(resp, ProgressPrinter(sys.stdout, sys.stdout.isatty()))
    finally:
        resp.close()


def _quiet(resp: Any) -> int:
    code = 0
    for line in resp.iter_lines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("error"):
            err(str(msg["error"]))
            code = 1
    return code


def _read_login(args: Opts) -> tuple[str, str]:
    """Username and password from the options, stdin, or prompts on a terminal."""
    user, password = args.username or "", args.password or ""
    if args.password and args.password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    if args.password_stdin:
        if not user:
            raise UsageError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password:
        err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    if user and password:
        return user, password
    if not sys.stdin.isatty():
        raise UsageError("Cannot perform an interactive login from a non TTY device")
    if not user:
        sys.stdout.write("Username: ")
        sys.stdout.flush()
        user = sys.stdin.readline().strip()
    if not password:
        import getpass
        password = getpass.getpass("Password: ")
    return user, password


@verb("login", "[SERVER]", "Log in to a registry (Docker Hub when no server is given)",
      Option("-u --username", STR, "Username"),
      Option("-p --password", STR, "Password"),
      Option("--password-stdin", BOOL, "Take the password from stdin"))
def cmd_login(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "login", 0, 1)
    server = argv[0] if argv else DOCKER_HUB_KEY
    user, password = _read_login(args)
    if not user:
        raise UsageError("Username is required")
    if not password:
        raise UsageError("Password is required")
    answer = ctx.client().post("/auth", {"username": user, "password": password,
                                         "serveraddress": server})
    print(answer.get("Status") or "Login Succeeded")
    return 0


@verb("logout", "[SERVER]", "Log out from a registry (Docker Hub when no server is given)")
def cmd_logout(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "logout", 0, 1)
    server = argv[0] if argv else DOCKER_HUB_KEY
    answer = ctx.client().post("/aiorun/logout", {"serveraddress": server})
    print(answer.get("Status") or "")
    return 0
