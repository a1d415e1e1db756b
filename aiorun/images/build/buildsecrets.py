"""Build secrets (``RUN --mount=type=secret``): from ``--secret`` on the CLI to the daemon.

The classic build API has no secrets parameter; aiorun sends them in one request header,
``X-Aiorun-Build-Secrets``: base64 of a JSON object ``{id: base64(content)}``. The daemon
keeps them in memory for the build (a step's secret is written, mode 0400, to that step's
private work directory only while it runs) — never in the context, a layer, the history or
the cache key. A header is small by nature: the encoded secrets may be at most
:data:`MAX_ENCODED` bytes.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import os

from aiorun.errors import InvalidArgument

HEADER = "X-Aiorun-Build-Secrets"
MAX_ENCODED = 32 * 1024


def parse_spec(spec: str) -> tuple[str, bytes]:
    """``--secret`` value (Docker's: ``id=x,src=FILE`` | ``id=x,env=VAR`` |
    ``id=x`` (the variable or file named x), ``type=file|env``) → ``(id, content)``."""
    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise InvalidArgument(f"invalid secret {spec!r}") from None
    opts: dict[str, str] = {}
    for f in fields:
        k, eq, v = f.partition("=")
        k = k.strip().lower()
        if not eq or k not in ("id", "src", "source", "env", "type"):
            raise InvalidArgument(f"invalid secret {spec!r}: unexpected field {f!r}")
        opts["src" if k == "source" else k] = v
    sid = opts.get("id") or ""
    typ = opts.get("type", "")
    if typ not in ("", "file", "env"):
        raise InvalidArgument(f"invalid secret {spec!r}: type must be file or env")
    if not sid:
        sid = opts.get("src") or opts.get("env") or ""
        if not sid:
            raise InvalidArgument(f"invalid secret {spec!r}: id is required")
    env = opts.get("env") or (sid if typ == "env" else "")
    if env:
        if env not in os.environ:
            raise InvalidArgument(f"secret {sid}: environment variable {env} is not set")
        return sid, os.environ[env].encode()
    src = opts.get("src") or sid
    try:
        with open(os.path.expanduser(src), "rb") as fh:
            return sid, fh.read()
    except OSError as exc:
        raise InvalidArgument(f"secret {sid}: cannot read {src}: {exc.strerror}") from None


def encode(secrets: dict[str, bytes]) -> str:
    """The header value for ``secrets``; InvalidArgument when they are too large."""
    obj = {k: base64.b64encode(v).decode() for k, v in secrets.items()}
    out = base64.b64encode(json.dumps(obj).encode()).decode()
    if len(out) > MAX_ENCODED:
        raise InvalidArgument(f"build secrets are too large ({len(out)} bytes encoded, at most "
                              f"{MAX_ENCODED})")
    return out


def decode(value: str) -> dict[str, bytes]:
    """The secrets a header value carries; InvalidArgument naming the problem."""
    if len(value) > MAX_ENCODED:
        raise InvalidArgument("build secrets header is too large")
    try:
        obj = json.loads(base64.b64decode(value, validate=True))
        if not isinstance(obj, dict):
            raise ValueError("not an object")
        return {str(k): base64.b64decode(v, validate=True) for k, v in obj.items()}
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidArgument(f"invalid {HEADER} header: {exc}") from None
