"""``aiorun serve``: run the daemon in the foreground."""

from __future__ import annotations

import sys
from typing import Any

from aiorun.cli.options import (BOOL, LIST, STR, Command, HelpRequested, Option, UsageError,
                                usage_fail)

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
     Option("-H --host", LIST, "also serve the API on unix:///PATH or tcp://HOST:PORT "
            "(repeatable; plain TCP on loopback only; the daemon's own socket is always "
            "served)"),
     Option("--tls", BOOL, "use TLS on tcp:// listeners (implied by --tlsverify)"),
     Option("--tlsverify", BOOL, "use TLS and require client certificates signed by "
            "--tlscacert (mutual TLS, as dockerd)"),
     Option("--tlscacert", STR, "trust certificates signed by this CA (PEM)"),
     Option("--tlscert", STR, "path to the server's TLS certificate (PEM)"),
     Option("--tlskey", STR, "path to the server's TLS key (PEM)"),
     Option("--metrics-addr", STR, "serve Prometheus metrics at HOST:PORT/metrics "
            "(dockerd's flag; e.g. 127.0.0.1:9323)"),
     Option("--warm-pool", STR, "warm sandboxes the runtime keeps ready for default "
            "creates, 0 to 64; 0 = off (default: $AIORUN_WARM_POOL, else 2)"),
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
    if opts.warm_pool:
        # reaches the spawner through its environment, as the layer limits do
        if not opts.warm_pool.isdigit() or int(opts.warm_pool) > 64:
            raise UsageError(f"--warm-pool takes a number from 0 to 64, not "
                             f"{opts.warm_pool!r}")
        given["AIORUN_WARM_POOL"] = str(int(opts.warm_pool))
    if given:
        settings["layer_limits_env"] = given
    settings["listen"] = _listeners(opts)
    return settings


def _listeners(opts: Any) -> Any:
    """``-H``/TLS/``--metrics-addr`` → :class:`aiorun.serve.Listeners` (UsageError when an
    address is malformed or must not be served)."""
    from aiorun.api.listen import TlsSettings, check_listen, parse_host
    from aiorun.bus.subscribers.metrics import parse_listen
    from aiorun.errors import InvalidArgument
    from aiorun.serve import Listeners
    verify = bool(opts.tlsverify)
    tls = TlsSettings(enabled=bool(opts.tls) or verify, verify=verify,
                      cacert=opts.tlscacert or "", cert=opts.tlscert or "",
                      key=opts.tlskey or "")
    if not tls.enabled and (tls.cacert or tls.cert or tls.key):
        raise UsageError("--tlscacert, --tlscert and --tlskey need --tls or --tlsverify")
    try:
        hosts = tuple(parse_host(h, tls.enabled) for h in opts.host)
        for h in hosts:
            check_listen(h, tls)
        if tls.enabled and not any(h.kind == "tcp" for h in hosts):
            raise InvalidArgument("--tls/--tlsverify need a tcp:// address (-H)")
        if opts.metrics_addr:
            parse_listen(opts.metrics_addr)
    except InvalidArgument as exc:
        raise UsageError(exc.message) from None
    return Listeners(hosts, tls, opts.metrics_addr or "")


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
             backend=str(opts["backend"]), debug=bool(opts["debug"] or ctx.debug),
             listen=opts["listen"])  # type: ignore[arg-type]
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
