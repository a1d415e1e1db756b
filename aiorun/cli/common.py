"""What the container and exec verbs share: one API call, the daemon's error line, the exit
status of a failed start, and "do this to each container named". Lean imports (hot path)."""

from __future__ import annotations

import sys

from aiorun.cli.options import UsageError, err

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any, Callable


def call(client: Any, method: str, path: str, body: Any = None, **query: Any) -> Any:
    """One API call; the JSON body or None. 204/304 answers carry no body (and, with
    keep-alive, no Content-Length either: never read them until close)."""
    r = client.request(method, path, query, body)
    try:
        if r.status in (204, 304) or (r.status < 200):
            return None
        return r.json()
    finally:
        r.close()


def api_error(exc: Any) -> str:
    """The line docker prints for an error answer of the daemon (an ApiError)."""
    return f"Error response from daemon: {exc.message}"


def start_error_code(message: str) -> int:
    """Docker's exit status when a container's command could not start: 127 not found,
    126 not executable (the docker CLI also counts EISDIR's "is a directory"), else 125."""
    m = message.lower()
    if "not found" in m or "no such file" in m:
        return 127
    if ("permission denied" in m or "not executable" in m or "exec format" in m
            or "is a directory" in m):
        return 126
    return 125


def each(ctx: Any, verb: str, refs: list[str], fn: Callable[[Any, str], Any],
         echo: bool = True) -> int:
    """``fn(client, ref)`` for each named container, echoing the name (docker's
    ``stop``/``rm``/...); an API error is reported and makes the status 1."""
    if not refs:
        raise UsageError(f'"{verb}" requires at least 1 argument')
    from aiorun.api.client import ApiError
    client = ctx.client()
    rc = 0
    for ref in refs:
        try:
            fn(client, ref)
            if echo:
                sys.stdout.write(ref + "\n")
        except ApiError as exc:
            err(api_error(exc))
            rc = 1
    return rc
