"""How much the API server lets its clients take: connections, time, bytes.

Pure settings and decisions (no I/O besides reading the fd limit), used by
:mod:`aiorun.api.server`:

* ``max_connections`` — connections served at once; past it a client gets ``503 {"message":
  "too many connections (limit N)"}`` and the connection is closed. By default half the
  daemon's soft ``RLIMIT_NOFILE`` (the other half is headroom for the engine: journals,
  spawner connections, output pumps), at most 1024.
* ``header_timeout`` — once the first byte of a request arrives, its complete head (request
  line and headers) must follow within this many seconds (slow-loris clients).
* ``idle_timeout`` — a keep-alive connection waiting for its next request is closed after
  this many seconds.
* ``max_head_size`` — request line + headers, in bytes (h11's ``max_incomplete_event_size``;
  past it: 431).
* ``max_buffered_body`` — non-upload bodies read before the handler runs (JSON past it: 413).

Long-lived responses (``logs -f``, ``events``, attach and exec hijacks) are never cut by the
timeouts: only the wait for a request head is bounded.

The environment of ``aiorun serve`` may override the first three (tests use ~1 s timeouts):
``AIORUN_API_MAX_CONNECTIONS``, ``AIORUN_API_HEADER_TIMEOUT``, ``AIORUN_API_IDLE_TIMEOUT``.
"""

from __future__ import annotations

import errno
import json
import resource
from dataclasses import dataclass, field
from typing import Mapping

from aiorun.core.accept import (ACCEPT_BACKOFF, EXHAUSTION_ERRNOS,  # noqa: F401
                                TRANSIENT_ERRNOS, accept_error_kind)
from aiorun.errors import InvalidArgument

#: Upper bound of the default connection cap.
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_HEADER_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 120.0
MAX_HEAD_SIZE = 64 * 1024
#: Bodies up to this size that are not uploads are read before the handler runs (``req.body``).
MAX_BUFFERED_BODY = 8 * 1024 * 1024

#: Refusals (503 then close) in progress at once; past it a connection over the cap is closed
#: without an answer, so refusing can never take the fds the served connections need.
MAX_REFUSING = 64
#: A refusal reads (and discards) at most this long for the client's request before closing,
#: so the client sees the 503 instead of a reset while it is still writing.
REFUSE_LINGER = 1.0
ENV_MAX_CONNECTIONS = "AIORUN_API_MAX_CONNECTIONS"
ENV_HEADER_TIMEOUT = "AIORUN_API_HEADER_TIMEOUT"
ENV_IDLE_TIMEOUT = "AIORUN_API_IDLE_TIMEOUT"


def default_max_connections(nofile_soft: int | None = None) -> int:
    """Half the soft fd limit (headroom for the rest of the daemon), between 16 and 1024."""
    if nofile_soft is None:
        nofile_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if nofile_soft == resource.RLIM_INFINITY or nofile_soft < 0:
        return DEFAULT_MAX_CONNECTIONS
    return max(16, min(DEFAULT_MAX_CONNECTIONS, nofile_soft // 2))


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = field(default_factory=default_max_connections)
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_head_size: int = MAX_HEAD_SIZE
    max_buffered_body: int = MAX_BUFFERED_BODY

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "ServerLimits":
        """Defaults, overridden by ``AIORUN_API_*`` variables; a bad value is an error
        naming the variable."""
        base = cls()
        return cls(
            max_connections=_positive_int(env, ENV_MAX_CONNECTIONS, base.max_connections),
            header_timeout=_positive_seconds(env, ENV_HEADER_TIMEOUT, base.header_timeout),
            idle_timeout=_positive_seconds(env, ENV_IDLE_TIMEOUT, base.idle_timeout),
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidArgument(f"invalid {name}={raw!r}: must be a positive whole number")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise InvalidArgument(f"invalid {name}={raw!r}: must be a positive number of seconds")
    return value


def refusal_body(limit: int) -> bytes:
    """The complete HTTP response refusing a connection over the cap."""
    body = json.dumps({"message": f"too many connections (limit {limit})"}).encode() + b"\n"
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n")
    return head.encode("latin-1") + body
