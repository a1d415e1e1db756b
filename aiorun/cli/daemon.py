"""``aiorun serve``: run the daemon in the foreground."""

from __future__ import annotations

import sys
from typing import Any

from aiorun.cli.options import BOOL, STR, Command, HelpRequested, Option, UsageError, usage_fail

SERVE = Command(
    "serve", "", "Run the aiorun daemon in the foreground (other commands start it on demand)",
    [Option("-s --storage-driver", STR, "overlay, aufs or copy (default: "
            "$AIORUN_STORAGE_DRIVER, else the first available)"),
     Option("--backend", STR, "async backend: asyncio or trio (default: $AIORUN_BACKEND, "
            "else asyncio)"),
     Option("--max-layer-size", STR, "largest size a layer may expand to, e.g. 2g "
            "(default: $AIORUN_MAX_LAYER_SIZE, else a third of the state root's free space)"),
     Option("--max-layer-entries", STR, "most entries a layer may have (default: "
            "$AIORUN_MAX_LAYER_ENTRIES, else 1000000)"),
     Option("-D --debug", BOOL, "log every request")])


def parse_serve_args(argv: list[str]) -> dict[str, object]:
    """The daemon's settings from ``serve``'s options and the environment. UsageError
    (HelpRequested for ``--help``)."""
    import os
    opts, rest = SERVE.parse(argv)
    if rest:
        raise UsageError(f"unexpected argument {rest[0]!r}")
    settings: dict[str, object] = {
        "storage_driver": opts.storage_driver or os.environ.get("AIORUN_STORAGE_DRIVER") or None,
        "backend": opts.backend or os.environ.get("AIORUN_BACKEND") or "asyncio",
        "debug": opts.debug}
    if settings["backend"] not in ("asyncio", "trio"):
        raise UsageError(f"unknown backend {settings['backend']!r}: use asyncio or trio")
    # The layer limits reach the image store through its environment variables (a flag
    # wins over an inherited value); checked here so a bad value is a usage error.
    from aiorun.errors import InvalidArgument
    from aiorun.images import limits
    given: dict[str, str] = {}
    try:
        if opts.max_layer_size:
            limits.parse_size(opts.max_layer_size, limits.SIZE_FLAG)
            given[limits.SIZE_ENV] = opts.max_layer_size
        if opts.max_layer_entries:
            limits.parse_count(opts.max_layer_entries, limits.ENTRIES_FLAG)
            given[limits.ENTRIES_ENV] = opts.max_layer_entries
        limits.LimitSettings.from_env({**os.environ, **given})
    except InvalidArgument as exc:
        raise UsageError(exc.message) from None
    if given:
        settings["layer_limits_env"] = given
    return settings


def _first_error(exc: BaseException) -> BaseException:
    """anyio wraps failures of a task group in ExceptionGroups: find the real one."""
    from aiorun.api.server import unwrap_error
    return unwrap_error(exc)


def cmd_serve(ctx: Any, argv: list[str]) -> int:
    try:
        opts = parse_serve_args(argv)
    except HelpRequested:
        sys.stdout.write(SERVE.help())
        return 0
    except UsageError as exc:
        return usage_fail("serve", exc, 1)
    import os
    limits_env = opts.get("layer_limits_env") or {}
    assert isinstance(limits_env, dict)
    os.environ.update(limits_env)
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
