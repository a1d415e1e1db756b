"""SSH agent forwarding for builds (``RUN --mount=type=ssh``): from ``--ssh`` to the daemon.

``aiorun build --ssh default|ID[=SOCKET]`` (Docker's flag; ``default`` alone, or an ID without
``=``, means ``$SSH_AUTH_SOCK``). The CLI and the daemon run on one machine, so the CLI sends
the agent *socket paths*, never keys: one request header, ``X-Aiorun-Build-Ssh``, base64 of a
JSON object ``{id: socket_path}``. The daemon checks each path is a unix socket it can reach
(refused by name otherwise) and a RUN step's ssh mount gets a socket relaying to it
(:mod:`.sshproxy`) at its target (default ``/run/buildkit/ssh_agent.N``, N counting the
step's ssh mounts) with ``SSH_AUTH_SOCK`` set to the first one. The socket is never part of a layer, the history or
the cache key.

Not implemented, refused by name: key files in place of an agent socket (BuildKit loads them
into an agent of its own), several sockets for one ID.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat

from aiorun.errors import InvalidArgument

HEADER = "X-Aiorun-Build-Ssh"
MAX_ENCODED = 16 * 1024


def parse_spec(spec: str, environ: dict[str, str] | None = None) -> tuple[str, str]:
    """A ``--ssh`` value → ``(id, absolute socket path)`` (CLI side)."""
    env = os.environ if environ is None else environ
    sid, eq, paths = spec.partition("=")
    sid = sid.strip()
    if not sid:
        raise InvalidArgument(f"invalid ssh {spec!r}: the ID is empty")
    if not eq:
        paths = env.get("SSH_AUTH_SOCK", "")
        if not paths:
            raise InvalidArgument("invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is "
                                  "set")
    parts = [p for p in paths.split(",") if p]
    if len(parts) != 1:
        raise InvalidArgument(f"ssh {sid}: aiorun forwards exactly one agent socket per ID "
                              f"(got {len(parts)})")
    path = os.path.abspath(os.path.expanduser(parts[0]))
    check_socket(sid, path, "")
    return sid, path


def check_socket(sid: str, path: str, who: str = "the daemon ") -> None:
    """InvalidArgument unless ``path`` is a unix socket (a key file is refused by name)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(f"ssh {sid}: {who}cannot reach the agent socket {path}: "
                              f"{exc.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        raise InvalidArgument(f"ssh {sid}: {path} is a file (a key?); aiorun build forwards "
                              "ssh-agent sockets only")
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidArgument(f"ssh {sid}: {path} is not an ssh-agent socket")


def encode(sockets: dict[str, str]) -> str:
    """The header value for ``sockets`` (id → path)."""
    out = base64.b64encode(json.dumps(sockets).encode()).decode()
    if len(out) > MAX_ENCODED:
        raise InvalidArgument("too many --ssh sockets")
    return out


def decode(value: str) -> dict[str, str]:
    """The sockets a header value names, each checked (daemon side): InvalidArgument naming
    the problem, e.g. a socket the daemon cannot reach."""
    if len(value) > MAX_ENCODED:
        raise InvalidArgument(f"{HEADER} header is too large")
    try:
        obj = json.loads(base64.b64decode(value, validate=True))
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            raise ValueError("not an object of paths")
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidArgument(f"invalid {HEADER} header: {exc}") from None
    out = {str(k): v for k, v in obj.items()}
    for sid, path in out.items():
        if not os.path.isabs(path):
            raise InvalidArgument(f"ssh {sid}: the agent socket path {path!r} is not absolute")
        check_socket(sid, path)
    return out
