"""``aiorun diff`` and ``aiorun export``: a container's changes and its flattened rootfs."""

from __future__ import annotations

import os
import sys

from aiorun.cli.options import STR, Option, UsageError, need, verb

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from aiorun.cli.options import Opts

KINDS = {0: "C", 1: "A", 2: "D"}


@verb("diff", "CONTAINER", "Inspect changes to files or directories on a container's "
      "filesystem")
def cmd_diff(ctx: Any, opts: Opts, rest: list[str]) -> int:
    need(rest, "diff", 1, 1)
    changes = ctx.client().get(f"/containers/{rest[0]}/changes") or []
    sys.stdout.write("".join(f"{KINDS.get(c['Kind'], '?')} {c['Path']}\n" for c in changes))
    return 0


@verb("export", "CONTAINER", "Export a container's filesystem as a tar archive",
      Option("-o --output", STR, "Write to a file, instead of STDOUT"))
def cmd_export(ctx: Any, opts: Opts, rest: list[str]) -> int:
    need(rest, "export", 1, 1)
    if not opts.output and sys.stdout.isatty():
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or "
                         "redirect")
    r = ctx.client().request("GET", f"/containers/{rest[0]}/export")
    try:
        if opts.output:
            tmp = f"{opts.output}.aiorun-tmp"
            try:
                with open(tmp, "wb") as f:
                    for chunk in r.iter_chunks():
                        f.write(chunk)
                os.replace(tmp, opts.output)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            out = sys.stdout.buffer
            for chunk in r.iter_chunks():
                out.write(chunk)
            out.flush()
    finally:
        r.close()
    return 0
