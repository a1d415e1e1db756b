"""``aiorun volume create|ls|inspect|rm|prune`` — a thin client of the volume API."""

from __future__ import annotations

import json
import sys
from typing import Any

from aiorun.cli.options import (BOOL, LIST, STR, Group, Opts, Option, filters, kv_pairs,
                                need, verb)


def _format(fmt: str, obj: dict[str, Any]) -> str:
    from aiorun.core.templates import render
    return render(fmt.replace("\\t", "\t").replace("\\n", "\n"), obj)


@verb("volume create", "[VOLUME]", "Create a volume",
      Option("--name", STR, "Specify volume name"),
      Option("-d --driver", STR, "Specify volume driver name", default="local"),
      Option("-l --label", LIST, "Set metadata for a volume (K=V)"),
      Option("-o --opt", LIST, "Set driver specific options (K=V)"))
def cmd_volume_create(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "volume create", 0, 1)
    body = {"Name": args.name or (names[0] if names else ""), "Driver": args.driver,
            "Labels": kv_pairs(args.label, "label"), "DriverOpts": kv_pairs(args.opt, "option")}
    vol = ctx.client().post("/volumes/create", body)
    print(vol["Name"])
    return 0


@verb("volume ls", "", "List volumes",
      Option("-q --quiet", BOOL, "Only display volume names"),
      Option("-f --filter", LIST, "Provide filter values (e.g. 'dangling=true')"),
      Option("--format", STR, "Format output using a Go template"))
def cmd_volume_ls(ctx: Any, args: Opts, rest: list[str]) -> int:
    need(rest, "volume ls", 0, 0)
    vols = ctx.client().get("/volumes", filters=filters(args.filter) or None)["Volumes"] or []
    if args.quiet:
        for v in vols:
            print(v["Name"])
    else:
        from aiorun.core.templates import render_table
        fmt = args.format or "table {{.Driver}}\t{{.Name}}"
        sys.stdout.write(render_table(fmt, vols, headers={"Name": "VOLUME NAME"}))
    return 0


@verb("volume inspect", "VOLUME [VOLUME...]",
      "Display detailed information on one or more volumes",
      Option("-f --format", STR, "Format output using a Go template"))
def cmd_volume_inspect(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "volume inspect", 1)
    from aiorun.api.client import ApiError
    client = ctx.client()
    found: list[dict[str, Any]] = []
    rc = 0
    for n in names:
        try:
            found.append(client.get(f"/volumes/{n}"))
        except ApiError as exc:
            sys.stderr.write(f"Error response from daemon: {exc.message}\n")
            rc = 1
    if args.format:
        for v in found:
            print(_format(args.format, v))
    else:
        print(json.dumps(found, indent=4))
    return rc


@verb("volume rm", "VOLUME [VOLUME...]", "Remove one or more volumes",
      Option("-f --force", BOOL, "Force the removal of one or more volumes"))
def cmd_volume_rm(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "volume rm", 1)
    from aiorun.api.client import ApiError
    client = ctx.client()
    rc = 0
    for n in names:
        try:
            # 204 has no body: do not read one (the connection may stay open)
            client.request("DELETE", f"/volumes/{n}", {"force": bool(args.force)}).close()
            print(n)
        except ApiError as exc:
            sys.stderr.write(f"Error response from daemon: {exc.message}\n")
            rc = 1
    return rc


@verb("volume prune", "", "Remove unused local volumes",
      Option("-a --all", BOOL, "Remove all unused volumes, not just anonymous ones"),
      Option("-f --force", BOOL, "Do not prompt for confirmation"),
      Option("--filter", LIST, "Provide filter values (e.g. 'label=<label>')"))
def cmd_volume_prune(ctx: Any, args: Opts, rest: list[str]) -> int:
    need(rest, "volume prune", 0, 0)
    if not args.force and sys.stdin.isatty():
        what = "all volumes not used by at least one container" if args.all else \
            "all anonymous local volumes not used by at least one container"
        ans = input(f"WARNING! This will remove {what}.\nAre you sure you want to "
                    "continue? [y/N] ")
        if ans.strip().lower() not in ("y", "yes"):
            return 0
    wanted = filters(args.filter)
    if args.all:
        wanted["all"] = ["true"]
    res = ctx.client().post("/volumes/prune", None, filters=wanted or None)
    deleted = res.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        for n in deleted:
            print(n)
        print()
    print(f"Total reclaimed space: {_human(res.get('SpaceReclaimed') or 0)}")
    return 0


def volume_group() -> Group:
    """``aiorun volume SUBCOMMAND``."""
    return Group("volume", "Manage volumes", {
        "create": cmd_volume_create, "inspect": cmd_volume_inspect, "ls": cmd_volume_ls,
        "prune": cmd_volume_prune, "rm": cmd_volume_rm,
    }, aliases={"list": "ls", "remove": "rm"})


def cmd_volume(ctx: Any, argv: list[str]) -> int:
    return volume_group()(ctx, argv)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}TB"
