"""``aiorun info``, ``aiorun version`` and ``aiorun system info|reset``."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

from aiorun.cli.options import BOOL, STR, Group, Opts, Option, UsageError, need, verb


FORMAT = Option("-f --format", STR, "Print the raw JSON: 'json' (or '{{json .}}')")


def want_json(fmt: str | None) -> bool:
    """``-f/--format json`` (or '{{json .}}') prints the raw JSON; other formats are refused."""
    if fmt is None:
        return False
    if fmt.strip() in ("json", "{{json .}}"):
        return True
    raise UsageError(f"unsupported format {fmt!r}: only 'json' is supported")


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n}B"


def render_info(d: dict[str, Any]) -> str:
    lines = [
        "Server:",
        f" Containers: {d.get('Containers', 0)}",
        f"  Running: {d.get('ContainersRunning', 0)}",
        f"  Paused: {d.get('ContainersPaused', 0)}",
        f"  Stopped: {d.get('ContainersStopped', 0)}",
        f" Images: {d.get('Images', 0)}",
        f" Server Version: {d.get('ServerVersion', '')}",
        f" Storage Driver: {d.get('Driver', '')}",
    ]
    if d.get("StorageDriverReason"):
        lines.append(f"  Selected: {d['StorageDriverReason']}")
    for k, v in d.get("DriverStatus") or []:
        lines.append(f"  {k}: {v}")
    lines += [
        f" Logging Driver: {d.get('LoggingDriver', '')}",
        f" Cgroup Driver: {d.get('CgroupDriver', '')}",
        f" Cgroup Version: {d.get('CgroupVersion', '')}",
        f" Async Backend: {d.get('Backend', '')}",
        f" Kernel Version: {d.get('KernelVersion', '')}",
        f" Operating System: {d.get('OperatingSystem', '')}",
        f" OSType: {d.get('OSType', '')}",
        f" Architecture: {d.get('Architecture', '')}",
        f" CPUs: {d.get('NCPU', 0)}",
        f" Total Memory: {format_size(d.get('MemTotal', 0))}",
        f" Name: {d.get('Name', '')}",
        f" ID: {d.get('ID', '')}",
        f" Docker Root Dir: {d.get('DockerRootDir', '')}",
        f" Debug Mode: {str(bool(d.get('Debug'))).lower()}",
    ]
    if d.get("Managers") is not None:
        lines.append(f" Managers: {', '.join(d['Managers']) or '(none)'}")
    lines += render_firewall(d.get("Firewall") or {})
    return "\n".join(lines) + "\n"


def render_firewall(fw: dict[str, Any]) -> list[str]:
    """The ``Firewall`` part of ``info``: per network driver, the host's other firewalls
    found and aiorun's accept rules in them."""
    out = []
    for driver, st in sorted(fw.items()):
        if not st.get("Checked"):
            out.append(f" Host Firewall ({driver}): not checked yet (no network created)")
            continue
        out.append(f" Host Firewall ({driver}): mode {st.get('Mode')}, br_netfilter "
                   f"{'on' if st.get('BridgeNfIptables') else 'off'}")
        for ipt in st.get("Iptables") or []:
            drops = ipt.get("forward_drops") or "accepts"
            docker = ", Docker's DOCKER-USER" if ipt.get("docker_user") else ""
            out.append(f"  {ipt['binary']}: FORWARD {drops}{docker}")
        for c in st.get("NftablesChains") or []:
            out.append(f"  nftables {c['family']} {c['table']} {c['chain']} "
                       f"({c['hook']}): {c['why']}")
        for r in st.get("Rules") or []:
            out.append(f"  added: {r}")
        for p in st.get("Problems") or []:
            out.append(f"  problem: {p}")
    return out


def render_df(d: dict[str, Any]) -> str:
    images = d.get("Images") or []
    containers = d.get("Containers") or []
    volumes = d.get("Volumes") or []
    rows = [
        ("Images", len(images), sum(1 for i in images if i.get("Containers", 0) > 0),
         d.get("LayersSize", 0)),
        ("Containers", len(containers),
         sum(1 for c in containers if c.get("State") == "running"),
         sum(c.get("SizeRw", 0) or 0 for c in containers)),
        ("Local Volumes", len(volumes),
         sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount", 0) > 0),
         sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in volumes)),
    ]
    out = [f"{'TYPE':<15} {'TOTAL':<9} {'ACTIVE':<9} SIZE"]
    out += [f"{t:<15} {n:<9} {a:<9} {format_size(sz)}" for t, n, a, sz in rows]
    return "\n".join(out) + "\n"


@verb("info", "", "Display system-wide information", FORMAT)
def cmd_info(ctx: Any, opts: Opts, rest: list[str]) -> int:
    need(rest, "info", 0, 0)
    as_json = want_json(opts.format)
    d = ctx.client().get("/info")
    sys.stdout.write(json.dumps(d) + "\n" if as_json else render_info(d))
    if not as_json:
        for warning in d.get("Warnings") or []:     # as docker info: on stderr, at the end
            sys.stderr.write(f"{warning}\n")
    return 0


def client_version() -> dict[str, Any]:
    from aiorun import API_VERSION, __version__
    m = platform.machine()
    return {"Version": __version__, "ApiVersion": API_VERSION,
            "Python": platform.python_version(), "Os": "linux",
            "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)}


@verb("version", "", "Show the aiorun version information", FORMAT)
def cmd_version(ctx: Any, opts: Opts, rest: list[str]) -> int:
    need(rest, "version", 0, 0)
    as_json = want_json(opts.format)
    client = client_version()
    from aiorun.errors import AiorunError
    server: dict[str, Any] | None = None
    error = None
    try:
        server = ctx.client().get("/version")
    except AiorunError as exc:
        error = exc.message
    if as_json:
        sys.stdout.write(json.dumps({"Client": client, "Server": server}) + "\n")
    else:
        out = ["Client:", f" Version:           {client['Version']}",
               f" API version:       {client['ApiVersion']}",
               f" Python version:    {client['Python']}",
               f" OS/Arch:           {client['Os']}/{client['Arch']}"]
        if server is not None:
            out += ["", "Server:", " Engine:",
                    f"  Version:          {server.get('Version', '')}",
                    f"  API version:      {server.get('ApiVersion', '')} "
                    f"(minimum version {server.get('MinAPIVersion', '')})",
                    f"  Backend:          {server.get('Backend', '')}",
                    f"  OS/Arch:          {server.get('Os', '')}/{server.get('Arch', '')}",
                    f"  Kernel:           {server.get('KernelVersion', '')}"]
        sys.stdout.write("\n".join(out) + "\n")
    if error is not None:
        sys.stderr.write(f"aiorun: {error}\n")
        return 1
    return 0


@verb("system df", "", "Show disk usage (images, containers, local volumes)", FORMAT)
def cmd_system_df(ctx: Any, opts: Opts, rest: list[str]) -> int:
    need(rest, "system df", 0, 0)
    as_json = want_json(opts.format)
    d = ctx.client().get("/system/df")
    sys.stdout.write(json.dumps(d) + "\n" if as_json else render_df(d))
    return 0


@verb("system reset", "", "Stop every container and remove all aiorun state (containers, "
      "images, volumes, networks) through the daemon",
      Option("-f --force", BOOL, "Do not prompt for confirmation"))
def cmd_system_reset(ctx: Any, opts: Opts, rest: list[str]) -> int:
    need(rest, "system reset", 0, 0)
    if not opts.force:
        if not sys.stdin.isatty():
            sys.stderr.write("aiorun system reset: refusing without -f (stdin is not a "
                             "terminal to confirm)\n")
            return 1
        sys.stdout.write("WARNING! This stops every container and removes all aiorun "
                         "state.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 1
    d = ctx.client().post("/aiorun/system/reset")
    done = (d or {}).get("Reset") or []
    sys.stdout.write(f"Reset: {', '.join(done) if done else 'nothing to reset'}\n")
    return 0


def system_group() -> Group:
    """``aiorun system SUBCOMMAND``."""
    return Group("system", "Manage aiorun", {
        "df": cmd_system_df, "info": cmd_info.renamed("system info"),
        "reset": cmd_system_reset, "prune": _system_prune()})


def _system_prune() -> Any:
    from aiorun.cli.prune import cmd_system_prune
    return cmd_system_prune


def cmd_system(ctx: Any, argv: list[str]) -> int:
    return system_group()(ctx, argv)
