"""Registry endpoints: push, login, logout.

``POST /images/{name}/push?tag=`` (``X-Registry-Auth``: base64url JSON credentials, as the
docker CLI sends them; without it the credentials saved by ``login`` or Docker's
``config.json`` are used) streams Docker's push JSON messages. An empty ``tag`` pushes every
local tag of the repository (docker's ``--all-tags``).

``POST /auth`` (``{"username", "password", "serveraddress"}``) verifies the credentials
against the registry (``GET /v2/`` with them) and saves them in ``<root>/auth.json``; answers
``{"Status": "Login Succeeded", "IdentityToken": ""}``, or 401 with Docker's wording.

``POST /aiorun/logout`` (``{"serveraddress"}``) forgets aiorun's saved credentials (Docker has
no such route: its CLI edits its own file).

Secrets are never logged nor echoed in answers.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator

import anyio.to_thread

from aiorun.api.http import Request, Response, Router
from aiorun.errors import AiorunError, InvalidArgument, NotFound, Unavailable
from aiorun.images import reference as R
from aiorun.registry import credentials as C
from aiorun.registry.auth import Credentials
from aiorun.registry.push import push
from aiorun.registry.remote import parse_remote
from aiorun.registry.transport import RegistryClient, RegistryUnauthorized

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.daemon import Engine

log = logging.getLogger("aiorun.api")
router = Router()


def _line(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode() + b"\r\n"


def _tags_to_push(engine: Engine, name: str, tag: str) -> list[str]:
    """``name:tag``s to push: the one named, or every local tag of the repository."""
    parsed = R.parse(name if not tag else f"{name}:{tag}")
    if tag or ":" in name.rpartition("/")[2]:
        wanted = [parsed.name_tag]
    else:
        wanted = sorted({t for img in engine.images.list() for t in img.repo_tags
                         if t.rpartition(":")[0] == parsed.repo})
        if not wanted:
            raise NotFound(f"An image does not exist locally with the tag: {parsed.repo}")
    for t in wanted:
        try:
            engine.images.resolve(t)
        except NotFound:
            raise NotFound(f"An image does not exist locally with the tag: "
                           f"{R.parse(t).repo}") from None
    return wanted


@router.route("POST", "/images/{name:path}/push")
async def push_image(req: Request, engine: Engine) -> Response:
    tags = _tags_to_push(engine, req.params["name"], req.arg("tag") or "")
    registry = parse_remote(tags[0]).registry
    creds, _server = C.decode_registry_auth(req.headers.get("x-registry-auth"))
    if creds is None:
        creds = await anyio.to_thread.run_sync(C.lookup, engine.paths, registry)

    async def stream() -> AsyncIterator[bytes]:
        for ref in tags:
            try:
                async for msg in push(engine.images, engine.paths, ref, credentials=creds):
                    yield _line(msg)
            except AiorunError as exc:
                yield _line({"error": exc.message, "errorDetail": {"message": exc.message}})
                return
            except Exception as exc:   # a bug: reported, and in the daemon log
                log.exception("push of %s failed", ref)
                text = f"{type(exc).__name__}: {exc}"
                yield _line({"error": text, "errorDetail": {"message": text}})
                return
            try:
                engine.events.emit("image", "push", ref, {"name": ref})
            except Unavailable as exc:
                log.warning("push event of %s not recorded: %s", ref, exc)

    return Response(200, stream=stream())


def _login_body(req: Request) -> tuple[Credentials, str]:
    try:
        body = json.loads(req.body or b"{}")
    except ValueError:
        raise InvalidArgument("the login request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the login request body must be a JSON object")
    user, secret = body.get("username") or "", body.get("password") or ""
    if not isinstance(user, str) or not isinstance(secret, str):
        raise InvalidArgument("username and password must be strings")
    if not user:
        raise InvalidArgument("Username is required (--username)")
    if not secret:
        raise InvalidArgument("Password is required (--password or --password-stdin)")
    server = body.get("serveraddress") or ""
    if not isinstance(server, str):
        raise InvalidArgument("serveraddress must be a string")
    return Credentials(user, secret), server


@router.route("POST", "/auth")
async def login(req: Request, engine: Engine) -> dict[str, str]:
    creds, server = _login_body(req)
    host = C.registry_host(server)
    async with RegistryClient(host, credentials=creds) as rc:
        try:
            await rc.ping()
        except RegistryUnauthorized:
            scheme = "http" if rc.insecure else "https"
            raise RegistryUnauthorized(f"login attempt to {scheme}://{host}/v2/ failed with "
                                       "status: 401 Unauthorized") from None
    key = await anyio.to_thread.run_sync(C.save, engine.paths, server, creds)
    log.info("login to %s as %s succeeded; credentials saved", key, creds.username)
    return {"Status": "Login Succeeded", "IdentityToken": ""}


@router.route("POST", "/aiorun/logout")
async def logout(req: Request, engine: Engine) -> dict[str, Any]:
    try:
        body = json.loads(req.body or b"{}")
    except ValueError:
        raise InvalidArgument("the logout request body is not JSON") from None
    server = body.get("serveraddress", "") if isinstance(body, dict) else ""
    if not isinstance(server, str):
        raise InvalidArgument("serveraddress must be a string")
    key = C.server_key(server)
    removed = await anyio.to_thread.run_sync(C.remove, engine.paths, server)
    status = (f"Removing login credentials for {key}" if removed
              else f"Not logged in to {key}")
    return {"Status": status, "Removed": removed}
