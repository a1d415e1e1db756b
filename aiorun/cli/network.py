"""``aiorun network ls|create|inspect|rm|connect|disconnect|prune`` and ``aiorun port``.

Thin clients of the network API (``aiorun.api.routes.networks``) and of container inspect.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aiorun.cli.flags import filters as _filters
from aiorun.cli.flags import kv_pairs as _kv


def _format(fmt: str, obj: Any) -> str:
    try:
        from aiorun.core.templates import render
    except ImportError:
        render = None
    if render is not None:
        return render(fmt, obj)
    if fmt.strip() == "{{json .}}":
        return json.dumps(obj)
    out = fmt
    for k, v in obj.items():
        out = out.replace("{{.%s}}" % k, str(v)).replace("{{ .%s }}" % k, str(v))
    return out


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _each(names: list[str], fn) -> int:
    from aiorun.api.client import ApiError
    rc = 0
    for n in names:
        try:
            fn(n)
        except ApiError as exc:
            sys.stderr.write(f"Error response from daemon: {exc.message}\n")
            rc = 1
    return rc


def cmd_network(ctx, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="aiorun network", description="Manage networks")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    c = sub.add_parser("create", help="Create a network")
    c.add_argument("name")
    c.add_argument("-d", "--driver", default="bridge")
    c.add_argument("--subnet", default="")
    c.add_argument("--gateway", default="")
    c.add_argument("--internal", action="store_true")
    c.add_argument("--attachable", action="store_true")
    c.add_argument("-o", "--opt", action="append")
    c.add_argument("--label", action="append")
    ls = sub.add_parser("ls", aliases=["list"], help="List networks")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("-f", "--filter", action="append")
    ls.add_argument("--format")
    ls.add_argument("--no-trunc", action="store_true")
    i = sub.add_parser("inspect", help="Display detailed information on networks")
    i.add_argument("names", nargs="+")
    i.add_argument("-f", "--format")
    r = sub.add_parser("rm", aliases=["remove"], help="Remove networks")
    r.add_argument("names", nargs="+")
    r.add_argument("-f", "--force", action="store_true")
    cn = sub.add_parser("connect", help="Connect a container to a network")
    cn.add_argument("network")
    cn.add_argument("container")
    cn.add_argument("--alias", action="append")
    cn.add_argument("--ip", default="")
    dc = sub.add_parser("disconnect", help="Disconnect a container from a network")
    dc.add_argument("network")
    dc.add_argument("container")
    dc.add_argument("-f", "--force", action="store_true")
    pr = sub.add_parser("prune", help="Remove all unused networks")
    pr.add_argument("-f", "--force", action="store_true")
    pr.add_argument("--filter", action="append")
    args = p.parse_args(argv)
    if not args.cmd:
        p.print_help()
        return 1
    client = ctx.client()

    if args.cmd == "create":
        body: dict[str, Any] = {"Name": args.name, "Driver": args.driver,
                                "Internal": args.internal, "Attachable": args.attachable,
                                "Options": _kv(args.opt, "option"),
                                "Labels": _kv(args.label, "label")}
        if args.subnet or args.gateway:
            body["IPAM"] = {"Driver": "default",
                            "Config": [{"Subnet": args.subnet, "Gateway": args.gateway}]}
        print(client.post("/networks/create", body)["Id"])
        return 0
    if args.cmd in ("ls", "list"):
        nets = client.get("/networks", filters=_filters(args.filter) or None) or []
        if args.quiet:
            for n in nets:
                print(n["Id"] if args.no_trunc else n["Id"][:12])
        elif args.format:
            for n in nets:
                view = {"ID": n["Id"] if args.no_trunc else n["Id"][:12], "Name": n["Name"],
                        "Driver": n["Driver"], "Scope": n["Scope"],
                        "Internal": n["Internal"], "Labels": n.get("Labels") or {}}
                print(_format(args.format, view))
        else:
            rows = [("NETWORK ID", "NAME", "DRIVER", "SCOPE")]
            rows += [(n["Id"] if args.no_trunc else n["Id"][:12], n["Name"], n["Driver"],
                      n["Scope"]) for n in nets]
            _table(rows)
        return 0
    if args.cmd == "inspect":
        found: list[dict[str, Any]] = []
        rc = _each(args.names, lambda n: found.append(client.get(f"/networks/{n}")))
        if args.format:
            for n in found:
                print(_format(args.format, n))
        else:
            print(json.dumps(found, indent=4))
        return rc
    if args.cmd in ("rm", "remove"):
        def rm(n: str) -> None:
            from aiorun.api.client import ApiError
            try:
                # 204 without a body: close instead of reading (no Content-Length to wait on)
                client.request("DELETE", f"/networks/{n}").close()
            except ApiError as exc:
                if not (args.force and exc.status == 404):
                    raise
            print(n)
        return _each(args.names, rm)
    if args.cmd == "connect":
        ep: dict[str, Any] = {"Aliases": args.alias or []}
        if args.ip:
            ep["IPAMConfig"] = {"IPv4Address": args.ip}
        client.post(f"/networks/{args.network}/connect",
                    {"Container": args.container, "EndpointConfig": ep})
        return 0
    if args.cmd == "disconnect":
        client.post(f"/networks/{args.network}/disconnect",
                    {"Container": args.container, "Force": args.force})
        return 0
    if args.cmd == "prune":
        if not args.force:
            sys.stdout.write("WARNING! This will remove all custom networks not used by at "
                             "least one container.\nAre you sure you want to continue? [y/N] ")
            sys.stdout.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                return 0
        res = client.post("/networks/prune", filters=_filters(args.filter) or None)
        deleted = res.get("NetworksDeleted") or []
        if deleted:
            print("Deleted Networks:")
            for n in deleted:
                print(n)
        return 0
    p.print_help()
    return 1


def port_lines(ports: dict[str, Any] | None, private: str | None = None) -> list[str]:
    """``aiorun port`` output for a ``NetworkSettings.Ports`` dict (pure, for tests)."""
    from aiorun.core.ports import parse_port_key, port_key
    out: list[str] = []
    want = port_key(*parse_port_key(private)) if private else None
    for key in sorted((ports or {}), key=lambda k: (parse_port_key(k)[1], parse_port_key(k)[0])):
        binds = (ports or {})[key]
        if not binds or (want and key != want):
            continue
        for b in binds:
            ip = b.get("HostIp") or "0.0.0.0"
            ip = f"[{ip}]" if ":" in ip else ip
            addr = f"{ip}:{b.get('HostPort')}"
            out.append(addr if want else f"{key} -> {addr}")
    return out


def cmd_port(ctx, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="aiorun port",
                                description="List port mappings or a specific mapping for "
                                            "the container")
    p.add_argument("container")
    p.add_argument("private", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    args = p.parse_args(argv)
    client = ctx.client()
    info = client.get(f"/containers/{args.container}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports")
    lines = port_lines(ports, args.private)
    if args.private and not lines:
        sys.stderr.write(f"Error: No public port '{args.private}' published for "
                         f"{args.container}\n")
        return 1
    for line in lines:
        print(line)
    return 0
