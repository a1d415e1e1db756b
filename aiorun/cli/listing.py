"""Verbs that show containers: ``ps``, ``logs``, ``top`` and ``inspect`` (which also finds
images, volumes and networks, as docker's does)."""

from __future__ import annotations

import sys

from aiorun.cli.common import api_error
from aiorun.cli.options import BOOL, LIST, STR, Option, UsageError, err, filters, integer, verb

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any

    from aiorun.cli.options import Opts

# --------------------------------------------------------------------------- ps

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Status": "STATUS",
              "Ports": "PORTS", "Names": "NAMES", "State": "STATE", "Labels": "LABELS",
              "Mounts": "MOUNTS", "Networks": "NETWORKS", "Size": "SIZE"}
PS_DEFAULT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def _ellipsis(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"


def ps_row(c: dict[str, Any], no_trunc: bool, now: float | None = None) -> dict[str, Any]:
    """The fields ``ps`` can print (``--format``) for one container of ``/containers/json``."""
    import json                 # here, not at the top: `ps -q` never renders a row
    import time

    from aiorun.core.state import human_duration
    now = now or time.time()
    cmd = c.get("Command", "")
    ports = ""
    if c.get("Ports"):
        try:
            from aiorun.core.ports import format_ports
            ports = format_ports(c["Ports"])
        except Exception:
            ports = ""
    image = c.get("Image", "")
    if image.startswith("sha256:") and not no_trunc:
        image = image[7:19]
    labels = c.get("Labels") or {}
    return {
        "ID": c["Id"] if no_trunc else c["Id"][:12],
        "Image": image,
        "Command": json.dumps(cmd if no_trunc else _ellipsis(cmd, 20), ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(c["Created"])),
        "RunningFor": human_duration(now - c["Created"]) + " ago",
        "Status": c.get("Status", ""),
        "State": c.get("State", ""),
        "Ports": ports,
        "Names": ",".join(n.lstrip("/") for n in c.get("Names") or []),
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []),
        "Networks": ",".join(sorted((c.get("NetworkSettings") or {}).get("Networks") or {})),
        "Size": "",
    }


@verb("ps", "", "List containers",
      Option("-a --all", BOOL, "Show all containers (default shows just running)"),
      Option("-q --quiet", BOOL, "Only display container IDs"),
      Option("--no-trunc", BOOL, "Don't truncate output"),
      Option("-f --filter", LIST, "Filter output based on conditions provided (KEY=VALUE)"),
      Option("--format", STR, "Format output using a Go template, or 'json'"),
      Option("-n --last", STR, "Show n last created containers (includes all states)",
             metavar="int"),
      Option("-l --latest", BOOL, "Show the latest created container (includes all states)"),
      Option("-s --size", BOOL, "Display total file sizes (accepted)"))
def cmd_ps(ctx: Any, opts: Opts, rest: list[str]) -> int:
    if rest:
        raise UsageError(f"unexpected argument {rest[0]!r}")
    wanted = filters(opts.filter)
    q: dict[str, Any] = {"all": opts.all or None}
    if wanted:
        q["filters"] = wanted
    if opts.latest:
        q["limit"] = 1
    elif opts.last:
        q["limit"] = integer(opts.last, "--last")
    rows = ctx.client().get("/containers/json", **q) or []
    if opts.quiet:
        sys.stdout.write("".join((c["Id"] if opts.no_trunc else c["Id"][:12]) + "\n"
                                 for c in rows))
        return 0
    from aiorun.core.templates import render_table
    fmt = opts.format or PS_DEFAULT
    if fmt == "json":
        fmt = "{{json .}}"
    sys.stdout.write(render_table(fmt, [ps_row(c, opts.no_trunc) for c in rows], PS_HEADERS))
    return 0


# --------------------------------------------------------------------------- logs

@verb("logs", "CONTAINER", "Fetch the logs of a container",
      Option("-f --follow", BOOL, "Follow log output"),
      Option("-n --tail", STR, "Number of lines to show from the end of the logs"),
      Option("-t --timestamps", BOOL, "Show timestamps"),
      Option("--since", STR, "Show logs since timestamp or relative (e.g. 42m)"),
      Option("--until", STR, "Show logs before a timestamp or relative (e.g. 42m)"),
      Option("--details", BOOL, "Show extra details (accepted)"))
def cmd_logs(ctx: Any, opts: Opts, rest: list[str]) -> int:
    if len(rest) != 1:
        raise UsageError('"logs" requires exactly 1 argument')
    client = ctx.client()
    info = client.get(f"/containers/{rest[0]}/json")
    q = {"stdout": True, "stderr": True, "follow": opts.follow or None,
         "timestamps": opts.timestamps or None, "tail": opts.tail,
         "since": _since(opts.since), "until": _since(opts.until)}
    resp = client.request("GET", f"/containers/{info['Id']}/logs", q)
    tty = bool(info["Config"].get("Tty"))
    try:
        buf = bytearray()
        for chunk in resp.iter_chunks():
            if tty:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                continue
            buf += chunk
            while len(buf) >= 8:
                stream, n = buf[0], int.from_bytes(buf[4:8], "big")
                if len(buf) < 8 + n:
                    break
                target = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
                target.write(bytes(buf[8:8 + n]))
                target.flush()
                del buf[:8 + n]
    except KeyboardInterrupt:
        return 0
    finally:
        resp.close()
    return 0


def _since(v: str | None) -> str | None:
    """Docker accepts RFC3339, unix seconds, or a relative duration like "10m"."""
    if not v:
        return None
    import re
    import time
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", v)
    if m:
        mult = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        return f"{time.time() - float(m.group(1)) * mult:.9f}"
    return v


# --------------------------------------------------------------------------- top

@verb("top", "CONTAINER [ps OPTIONS]", "Display the running processes of a container",
      interspersed=False)
def cmd_top(ctx: Any, opts: Opts, argv: list[str]) -> int:
    if not argv:
        raise UsageError('"top" requires at least 1 argument')
    query = {"ps_args": " ".join(argv[1:])} if argv[1:] else {}
    res = ctx.client().get(f"/containers/{argv[0]}/top", **query)
    from aiorun.core.templates import tabwrite
    lines = ["\t".join(res["Titles"])] + ["\t".join(p) for p in res["Processes"]]
    sys.stdout.write(tabwrite(lines, minwidth=0, padding=4))
    return 0


# --------------------------------------------------------------------------- inspect

INSPECT_OPTIONS = (
    Option("-f --format", STR, "Format output using a Go template"),
    Option("-s --size", BOOL, "Display total file sizes (accepted)"),
)


@verb("inspect", "NAME|ID [NAME|ID...]", "Return low-level information on Docker objects",
      *INSPECT_OPTIONS,
      Option("--type", STR, "Only this type of object: container, image, volume or network"))
def cmd_inspect(ctx: Any, opts: Opts, refs: list[str]) -> int:
    return inspect(ctx, opts, refs, opts.type)


@verb("container inspect", "CONTAINER [CONTAINER...]",
      "Display detailed information on one or more containers", *INSPECT_OPTIONS)
def cmd_container_inspect(ctx: Any, opts: Opts, refs: list[str]) -> int:
    return inspect(ctx, opts, refs, "container")


def inspect(ctx: Any, opts: Opts, refs: list[str], kind: str | None) -> int:
    if not refs:
        raise UsageError('"inspect" requires at least 1 argument')
    from aiorun.api.client import ApiError
    from aiorun.api.wire import quote
    client = ctx.client()
    results, rc = [], 0
    for ref in refs:
        obj = None
        reported = False
        kinds = [kind] if kind else ["container", "image", "volume", "network"]
        for k in kinds:
            path = {"container": f"/containers/{quote(ref, safe='')}/json",
                    "image": f"/images/{ref}/json",
                    "volume": f"/volumes/{quote(ref, safe='')}",
                    "network": f"/networks/{quote(ref, safe='')}"}.get(k)
            if path is None:
                raise UsageError(f'"{k}" is not a valid value for --type')
            try:
                obj = client.get(path)
                break
            except ApiError as exc:
                if exc.status not in (404, 405):
                    err(api_error(exc))
                    reported = True
                    break
        if obj is None:
            if not reported:
                err(f"Error: No such {kind or 'object'}: {ref}")
            rc = 1
            continue
        results.append(obj)
    if opts.format:
        from aiorun.core.templates import Template
        tpl = Template(opts.format)
        for obj in results:
            sys.stdout.write(tpl.render(obj) + "\n")
    else:
        import json
        sys.stdout.write(json.dumps(results, indent=4) + "\n")
    return rc
