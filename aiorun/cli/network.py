"""``aiorun network ls|create|inspect|rm|connect|disconnect|prune`` and ``aiorun port``.

Thin clients of the network API (``aiorun.api.routes.networks``) and of container inspect.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from aiorun.cli.options import (BOOL, LIST, STR, Group, Opts, Option, UsageError, filters,
                                kv_pairs, need, verb)


def _format(fmt: str, obj: Any) -> str:
    from aiorun.core.templates import render
    return render(fmt, obj)


def _table(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _each(names: list[str], fn: Any) -> int:
    from aiorun.api.client import ApiError
    rc = 0
    for n in names:
        try:
            fn(n)
        except ApiError as exc:
            sys.stderr.write(f"Error response from daemon: {exc.message}\n")
            rc = 1
    return rc


@verb("network create", "NETWORK", "Create a network",
      Option("-d --driver", STR, "Driver to manage the network", default="bridge"),
      Option("--subnet", LIST, "Subnet in CIDR format (one IPv4 and, with --ipv6, one IPv6)"),
      Option("--gateway", LIST, "Gateway for the subnet of the same position"),
      Option("--ipv6", BOOL, "Enable IPv6 networking"),
      Option("--internal", BOOL, "Restrict external access to the network"),
      Option("--attachable", BOOL, "Enable manual container attachment"),
      Option("-o --opt", LIST, "Set driver specific options (K=V)"),
      Option("--label", LIST, "Set metadata on a network (K=V)"))
def cmd_network_create(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "network create", 1, 1)
    body: dict[str, Any] = {"Name": names[0], "Driver": args.driver,
                            "Internal": args.internal, "Attachable": args.attachable,
                            "Options": kv_pairs(args.opt, "option"),
                            "Labels": kv_pairs(args.label, "label"),
                            "EnableIPv6": args.ipv6}
    if len(args.gateway) > len(args.subnet):
        raise UsageError("every --gateway needs a --subnet")
    if args.subnet:
        gws = list(args.gateway) + [""] * (len(args.subnet) - len(args.gateway))
        body["IPAM"] = {"Driver": "default",
                        "Config": [{"Subnet": s, "Gateway": g} for s, g in zip(args.subnet, gws)]}
    print(ctx.client().post("/networks/create", body)["Id"])
    return 0


@verb("network ls", "", "List networks",
      Option("-q --quiet", BOOL, "Only display network IDs"),
      Option("-f --filter", LIST, "Provide filter values (e.g. 'driver=bridge')"),
      Option("--format", STR, "Format output using a Go template"),
      Option("--no-trunc", BOOL, "Do not truncate the output"))
def cmd_network_ls(ctx: Any, args: Opts, rest: list[str]) -> int:
    need(rest, "network ls", 0, 0)
    nets = ctx.client().get("/networks", filters=filters(args.filter) or None) or []
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


@verb("network inspect", "NETWORK [NETWORK...]",
      "Display detailed information on one or more networks",
      Option("-f --format", STR, "Format output using a Go template"))
def cmd_network_inspect(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "network inspect", 1)
    client = ctx.client()
    found: list[dict[str, Any]] = []
    rc = _each(names, lambda n: found.append(client.get(f"/networks/{n}")))
    if args.format:
        for n in found:
            print(_format(args.format, n))
    else:
        print(json.dumps(found, indent=4))
    return rc


@verb("network rm", "NETWORK [NETWORK...]", "Remove one or more networks",
      Option("-f --force", BOOL, "Do not error if the network does not exist"))
def cmd_network_rm(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "network rm", 1)
    client = ctx.client()

    def rm(n: str) -> None:
        from aiorun.api.client import ApiError
        try:
            # 204 without a body: close instead of reading (no Content-Length to wait on)
            client.request("DELETE", f"/networks/{n}").close()
        except ApiError as exc:
            if not (args.force and exc.status == 404):
                raise
        print(n)
    return _each(names, rm)


@verb("network connect", "NETWORK CONTAINER", "Connect a container to a network",
      Option("--alias", LIST, "Add network-scoped alias for the container"),
      Option("--ip", STR, "IPv4 address (e.g. 172.30.100.104)", default=""),
      Option("--ip6", STR, "IPv6 address (e.g. 2001:db8::33)", default=""))
def cmd_network_connect(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "network connect", 2, 2)
    ep: dict[str, Any] = {"Aliases": args.alias}
    if args.ip or args.ip6:
        ep["IPAMConfig"] = {"IPv4Address": args.ip, "IPv6Address": args.ip6}
    ctx.client().post(f"/networks/{names[0]}/connect",
                      {"Container": names[1], "EndpointConfig": ep})
    return 0


@verb("network disconnect", "NETWORK CONTAINER", "Disconnect a container from a network",
      Option("-f --force", BOOL, "Force the container to disconnect from a network"))
def cmd_network_disconnect(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "network disconnect", 2, 2)
    ctx.client().post(f"/networks/{names[0]}/disconnect",
                      {"Container": names[1], "Force": args.force})
    return 0


@verb("network prune", "", "Remove all unused networks",
      Option("-f --force", BOOL, "Do not prompt for confirmation"),
      Option("--filter", LIST, "Provide filter values (e.g. 'until=<timestamp>')"))
def cmd_network_prune(ctx: Any, args: Opts, rest: list[str]) -> int:
    need(rest, "network prune", 0, 0)
    wanted = filters(args.filter)
    if not args.force:
        sys.stdout.write("WARNING! This will remove all custom networks not used by at "
                         "least one container.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    res = ctx.client().post("/networks/prune", filters=wanted or None)
    deleted = res.get("NetworksDeleted") or []
    if deleted:
        print("Deleted Networks:")
        for n in deleted:
            print(n)
    return 0


def network_group() -> Group:
    """``aiorun network SUBCOMMAND``."""
    return Group("network", "Manage networks", {
        "connect": cmd_network_connect, "create": cmd_network_create,
        "disconnect": cmd_network_disconnect, "inspect": cmd_network_inspect,
        "ls": cmd_network_ls, "prune": cmd_network_prune, "rm": cmd_network_rm,
    }, aliases={"list": "ls", "remove": "rm"})


def cmd_network(ctx: Any, argv: list[str]) -> int:
    return network_group()(ctx, argv)


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


@verb("port", "CONTAINER [PRIVATE_PORT[/PROTO]]",
      "List port mappings or a specific mapping for the container")
def cmd_port(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "port", 1, 2)
    container, private = argv[0], (argv[1] if len(argv) > 1 else None)
    client = ctx.client()
    info = client.get(f"/containers/{container}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports")
    lines = port_lines(ports, private)
    if private and not lines:
        sys.stderr.write(f"Error: No public port '{private}' published for "
                         f"{container}\n")
        return 1
    for line in lines:
        print(line)
    return 0
