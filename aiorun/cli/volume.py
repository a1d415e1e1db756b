"""``aiorun volume create|ls|inspect|rm|prune`` — a thin client of the volume API."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aiorun.cli.flags import filters as _filters
from aiorun.cli.flags import kv_pairs as _kv


def _format(fmt: str, obj: dict[str, Any]) -> str:
    from aiorun.core.templates import render
    return render(fmt.replace("\\t", "\t").replace("\\n", "\n"), obj)


def cmd_volume(ctx, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="aiorun volume", description="Manage volumes")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    c = sub.add_parser("create", help="Create a volume")
    c.add_argument("name", nargs="?")
    c.add_argument("--name", dest="name_opt")
    c.add_argument("-d", "--driver", default="local")
    c.add_argument("-l", "--label", action="append")
    c.add_argument("-o", "--opt", action="append")
    ls = sub.add_parser("ls", aliases=["list"], help="List volumes")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("-f", "--filter", action="append")
    ls.add_argument("--format")
    i = sub.add_parser("inspect", help="Display detailed information on volumes")
    i.add_argument("names", nargs="+")
    i.add_argument("-f", "--format")
    r = sub.add_parser("rm", aliases=["remove"], help="Remove volumes")
    r.add_argument("-f", "--force", action="store_true")
    r.add_argument("names", nargs="+")
    pr = sub.add_parser("prune", help="Remove unused volumes")
    pr.add_argument("-a", "--all", action="store_true", help="also unused named volumes")
    pr.add_argument("-f", "--force", action="store_true", help="do not prompt")
    pr.add_argument("--filter", action="append")
    args = p.parse_args(argv)
    if not args.cmd:
        p.print_help()
        return 1
    client = ctx.client()

    if args.cmd == "create":
        body = {"Name": args.name_opt or args.name or "", "Driver": args.driver,
                "Labels": _kv(args.label, "label"), "DriverOpts": _kv(args.opt, "option")}
        vol = client.post("/volumes/create", body)
        print(vol["Name"])
        return 0
    if args.cmd in ("ls", "list"):
        vols = client.get("/volumes", filters=_filters(args.filter) or None)["Volumes"] or []
        if args.quiet:
            for v in vols:
                print(v["Name"])
        else:
            from aiorun.core.templates import render_table
            fmt = args.format or "table {{.Driver}}\t{{.Name}}"
            sys.stdout.write(render_table(fmt, vols, headers={"Name": "VOLUME NAME"}))
        return 0
    if args.cmd == "inspect":
        from aiorun.api.client import ApiError
        found: list[dict[str, Any]] = []
        rc = 0
        for n in args.names:
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
    if args.cmd in ("rm", "remove"):
        from aiorun.api.client import ApiError
        rc = 0
        for n in args.names:
            try:
                # 204 has no body: do not read one (the connection may stay open)
                client.request("DELETE", f"/volumes/{n}", {"force": bool(args.force)}).close()
                print(n)
            except ApiError as exc:
                sys.stderr.write(f"Error response from daemon: {exc.message}\n")
                rc = 1
        return rc
    if args.cmd == "prune":
        if not args.force and sys.stdin.isatty():
            what = "all volumes not used by at least one container" if args.all else \
                "all anonymous local volumes not used by at least one container"
            ans = input(f"WARNING! This will remove {what}.\nAre you sure you want to "
                        "continue? [y/N] ")
            if ans.strip().lower() not in ("y", "yes"):
                return 0
        filters = _filters(args.filter)
        if args.all:
            filters["all"] = ["true"]
        res = client.post("/volumes/prune", None, filters=filters or None)
        deleted = res.get("VolumesDeleted") or []
        if deleted:
            print("Deleted Volumes:")
            for n in deleted:
                print(n)
            print()
        print(f"Total reclaimed space: {_human(res.get('SpaceReclaimed') or 0)}")
        return 0
    return 1


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.4g}{unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.4g}TB"
