"""Saved registry credentials: ``aiorun login`` writes them, pull and push read them.

Two sources, in this order:

* aiorun's own file ``<state root>/auth.json`` (mode 0600, replaced atomically), written by
  ``POST /auth`` once the registry accepted the credentials and emptied by ``logout``;
* Docker's ``config.json`` of the daemon's user (``$DOCKER_CONFIG/config.json``, else
  ``~/.docker/config.json``): its ``auths`` entries' base64 ``auth`` field, so a host where
  ``docker login`` was run works as is. aiorun never writes that file.

Both files have Docker's shape: ``{"auths": {"<server>": {"auth": base64("user:secret")}}}``.
Server keys are normalised (:func:`server_key`): Docker Hub is ``https://index.docker.io/v1/``
(Docker's key, whatever spelling the user gave), any other registry its ``host[:port]``
(a scheme or path in a key written by another tool is ignored).

Secrets are never logged, nor put in errors (:class:`Credentials` hides them in its repr).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path
from typing import Any

from aiorun.config import Paths
from aiorun.core.atomicfile import write_json_atomic
from aiorun.errors import InvalidArgument
from aiorun.registry.auth import Credentials
from aiorun.registry.remote import DOCKER_HUB, DOCKER_HUB_API

log = logging.getLogger("aiorun.registry")

#: Docker's key for Docker Hub in ``auths``.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {DOCKER_HUB, DOCKER_HUB_API, "index.docker.io", "registry.hub.docker.com"}


def server_key(server: str) -> str:
    """The ``auths`` key of a server as users write it (``""`` is Docker Hub)."""
    s = (server or "").strip()
    host = s.split("://", 1)[-1].split("/", 1)[0].lower()
    if not host or host in _HUB_NAMES:
        return DOCKER_HUB_KEY
    return host


def registry_host(server: str) -> str:
    """Where the v2 API of ``server`` answers (``host[:port]``; Docker Hub's API host)."""
    key = server_key(server)
    return DOCKER_HUB_API if key == DOCKER_HUB_KEY else key


def auth_file(paths: Paths) -> Path:
    return paths.root / "auth.json"


def docker_config_file() -> Path:
    """Docker's client config of the daemon's user (``$DOCKER_CONFIG`` wins, as in Docker)."""
    d = os.environ.get("DOCKER_CONFIG")
    return Path(d) / "config.json" if d else Path.home() / ".docker" / "config.json"


def _read_auths(path: Path) -> dict[str, Any]:
    """The ``auths`` object of a Docker-shaped config file; {} if it is missing or unreadable
    (logged without content: it holds secrets)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("cannot read credentials file %s: %s", path,
                    exc.strerror if isinstance(exc, OSError) else "not valid JSON")
        return {}
    auths = data.get("auths") if isinstance(data, dict) else None
    return auths if isinstance(auths, dict) else {}


def _decode_entry(entry: object) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    raw = entry.get("auth")
    if isinstance(raw, str) and raw:
        try:
            user, sep, secret = base64.b64decode(raw, validate=False).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if sep and user:
            return Credentials(user, secret)
        return None
    name, password = entry.get("username"), entry.get("password")
    if isinstance(name, str) and name and isinstance(password, str):
        return Credentials(name, password)
    return None


def _find(auths: dict[str, Any], registry: str) -> Credentials | None:
    want = server_key(registry)
    for key, entry in auths.items():
        if isinstance(key, str) and server_key(key) == want:
            found = _decode_entry(entry)
            if found is not None:
                return found
    return None


def lookup(paths: Paths, registry: str) -> Credentials | None:
    """The saved credentials for ``registry`` (``host[:port]``, ``docker.io``, or a URL):
    aiorun's ``auth.json`` first, then Docker's ``config.json``; None if neither has any."""
    for path in (auth_file(paths), docker_config_file()):
        found = _find(_read_auths(path), registry)
        if found is not None:
            return found
    return None


def save(paths: Paths, server: str, creds: Credentials) -> str:
    """Store ``creds`` for ``server`` in ``auth.json`` (0600, atomic); returns the key."""
    key = server_key(server)
    path = auth_file(paths)
    auths = {k: v for k, v in _read_auths(path).items() if server_key(k) != key}
    token = base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()
    auths[key] = {"auth": token}
    _write(path, auths)
    return key


def remove(paths: Paths, server: str) -> bool:
    """Forget aiorun's saved credentials for ``server``; False if it had none. (Docker's own
    config file is Docker's: ``docker logout`` edits it.)"""
    key = server_key(server)
    path = auth_file(paths)
    auths = _read_auths(path)
    kept = {k: v for k, v in auths.items() if server_key(k) != key}
    if len(kept) == len(auths):
        return False
    _write(path, kept)
    return True


def _write(path: Path, auths: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"auths": auths}, mode=0o600)
    os.chmod(path, 0o600)   # a file made by hand with a wider mode is narrowed too


def decode_registry_auth(header: str | None) -> tuple[Credentials | None, str]:
    """Docker's ``X-Registry-Auth`` header (base64url JSON ``{username, password,
    serveraddress}`` or ``{identitytoken}``) → (credentials or None, serveraddress).
    An empty ``{}`` (what the docker CLI sends without a login) gives None."""
    if not header:
        return None, ""
    padded = header.strip() + "=" * (-len(header.strip()) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        raise InvalidArgument("X-Registry-Auth header is not base64url-encoded JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("X-Registry-Auth header is not a JSON object")
    server = str(data.get("serveraddress") or "")
    user, secret = data.get("username"), data.get("password")
    if isinstance(user, str) and user and isinstance(secret, str) and secret:
        return Credentials(user, secret), server
    token = data.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials("<token>", token), server
    return None, server
