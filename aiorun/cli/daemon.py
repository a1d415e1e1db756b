"""``aiorun serve``: run the daemon in the foreground."""

from __future__ import annotations

import sys

SERVE_USAGE = """usage: aiorun serve [--storage-driver NAME] [--backend asyncio|trio] [--debug]

Run the aiorun daemon in the foreground (other commands start it on demand).
  --storage-driver NAME   overlay, aufs or copy (default: $AIORUN_STORAGE_DRIVER, else the
                          first available)
  --backend NAME          async backend: asyncio or trio (default: $AIORUN_BACKEND, else
                          asyncio)
  --debug, -D             log every request
"""


def parse_serve_args(argv: list[str]) -> dict[str, object]:
    from aiorun.errors import InvalidArgument
    import os
    opts: dict[str, object] = {"storage_driver": os.environ.get("AIORUN_STORAGE_DRIVER") or None,
                               "backend": os.environ.get("AIORUN_BACKEND") or "asyncio",
                               "debug": False}
    i = 0
    while i < len(argv):
        a = argv[i]
        key, eq, val = a.partition("=")
        if key in ("--storage-driver", "-s", "--backend"):
            if not eq:
                if i + 1 >= len(argv):
                    raise InvalidArgument(f"option {key} needs a value")
                i += 1
                val = argv[i]
            opts["backend" if key == "--backend" else "storage_driver"] = val
        elif a in ("--debug", "-D"):
            opts["debug"] = True
        else:
            raise InvalidArgument(f"unknown option for serve: {a!r}")
        i += 1
    if opts["backend"] not in ("asyncio", "trio"):
        raise InvalidArgument(f"unknown backend {opts['backend']!r}: use asyncio or trio")
    return opts


def _first_error(exc: BaseException) -> BaseException:
    """anyio wraps failures of a task group in ExceptionGroups: find the real one."""
    from aiorun.api.server import unwrap_error
    return unwrap_error(exc)


def cmd_serve(ctx, argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(SERVE_USAGE)
        return 0
    opts = parse_serve_args(argv)
    from aiorun.serve import main
    from aiorun.errors import AiorunError
    try:
        main(ctx.paths, storage_driver=opts["storage_driver"],  # type: ignore[arg-type]
             backend=str(opts["backend"]), debug=bool(opts["debug"] or ctx.debug))
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:
        real = _first_error(exc)
        if isinstance(real, AiorunError):
            sys.stderr.write(f"aiorun serve: {real.message}\n")
            return 1
        if real is not exc:
            raise real from exc
        raise
    return 0
