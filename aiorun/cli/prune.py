"""``aiorun system prune``: stopped containers, unused networks, dangling (``-a``: unused)
images, the build cache, and with ``--volumes`` unused anonymous volumes — as
``docker system prune``, each through its own prune endpoint with the same filters."""

from __future__ import annotations

import sys

from aiorun.cli.options import BOOL, LIST, Option, filters, need, verb

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from aiorun.cli.options import Opts


@verb("system prune", "", "Remove unused data",
      Option("-a --all", BOOL, "Remove all unused images not just dangling ones"),
      Option("-f --force", BOOL, "Do not prompt for confirmation"),
      Option("--volumes", BOOL, "Prune anonymous volumes"),
      Option("--filter", LIST, "Provide filter values (e.g. 'label=<key>=<value>')"))
def cmd_system_prune(ctx: Any, opts: Opts, rest: list[str]) -> int:
    need(rest, "system prune", 0, 0)
    from aiorun.cli.lifecycle import human_size
    wanted = filters(opts.filter)
    if not opts.force and sys.stdin.isatty():
        sys.stdout.write("WARNING! This will remove all stopped containers, unused networks, "
                         f"{'all unused' if opts.all else 'dangling'} images and the build "
                         "cache. Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    client = ctx.client()
    total = 0
    out = []
    res = client.post("/containers/prune", None, filters=wanted or None) or {}
    total += res.get("SpaceReclaimed") or 0
    out += [("Deleted Containers:", res.get("ContainersDeleted"))]
    net_filters = {k: v for k, v in wanted.items() if k in ("until", "label")}
    res = client.post("/networks/prune", None, filters=net_filters or None) or {}
    out += [("Deleted Networks:", res.get("NetworksDeleted"))]
    if opts.volumes:
        vol_filters = {k: v for k, v in wanted.items() if k.startswith("label")}
        res = client.post("/volumes/prune", None, filters=vol_filters or None) or {}
        total += res.get("SpaceReclaimed") or 0
        out += [("Deleted Volumes:", res.get("VolumesDeleted"))]
    img_filters = dict(wanted)
    img_filters["dangling"] = ["false" if opts.all else "true"]
    res = client.post("/images/prune", None, filters=img_filters) or {}
    total += res.get("SpaceReclaimed") or 0
    out += [("Deleted Images:", [f"{k.lower()}: {v}" for e in res.get("ImagesDeleted") or []
                                 for k, v in e.items()])]
    cache_filters = {k: v for k, v in wanted.items() if k == "until"}
    res = client.post("/build/prune", None, filters=cache_filters or None) or {}
    total += res.get("SpaceReclaimed") or 0
    out += [("Deleted build cache objects:", res.get("CachesDeleted"))]
    for title, items in out:
        if items:
            sys.stdout.write(title + "\n" + "".join(f"{i}\n" for i in items) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(total)}\n")
    return 0
