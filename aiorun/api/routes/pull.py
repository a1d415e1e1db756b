"""Registry pulls over the API (Docker's routes).

``POST /images/create?fromImage=&tag=&platform=`` (reached through the images router's
``create``) streams Docker's pull progress as JSON lines; ``X-Registry-Auth`` (base64url JSON
``{username, password, serveraddress}`` or ``{identitytoken}``, as the docker CLI sends it)
carries credentials. An image that does not exist (or may not be read) is an HTTP error before
anything streams, as with Docker; failures later are ``{"error", "errorDetail"}`` lines.
``GET /distribution/{name}/json`` answers what a reference names on its registry.

Emits Docker's ``image pull`` event (actor: the reference pulled).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from aiorun.api.http import Request, Response, Router
from aiorun.errors import AiorunError

log = logging.getLogger(__name__)

router = Router()


async def registry_credentials(req: Request, engine: Any, ref: str) -> Any:
    """The credentials for pulling ``ref``: those of the ``X-Registry-Auth`` header, else
    those saved by ``aiorun login`` (or in Docker's config.json), else None (anonymous)."""
    from aiorun.registry import credentials as C
    from aiorun.registry.remote import parse_remote
    creds, _server = C.decode_registry_auth(req.headers.get("x-registry-auth"))
    if creds is None:
        creds = await anyio.to_thread.run_sync(C.lookup, engine.paths,
                                               parse_remote(ref).registry)
    return creds


def pull_reference(image: str, tag: str) -> str:
    """Docker's ``fromImage`` + ``tag`` (a tag, or a digest) → one reference."""
    if not tag:
        return image
    if tag.startswith("sha256:"):
        return f"{image}@{tag}"
    return f"{image}:{tag}"


async def pull_response(req: Request, engine: Any) -> Response:
    from aiorun.api.jsonstream import respond
    from aiorun.registry.pull import Puller
    ref = pull_reference(req.arg("fromImage") or "", req.arg("tag") or "")
    puller = Puller(engine.images, engine.paths.tmp, ref,
                    credentials=await registry_credentials(req, engine, ref),
                    platform=req.arg("platform") or None)

    def pulled() -> None:
        try:
            engine.events.emit("image", "pull", puller.target.display,
                               {"name": puller.target.ref.repo})
        except AiorunError as exc:
            log.warning("image pull event not recorded: %s", exc)

    # the first message comes once the image is known to exist: an unknown one is an HTTP
    # error, as with Docker
    return await respond(puller.run(), f"pull of {ref}", on_success=pulled)


@router.route("GET", "/distribution/{name:path}/json")
async def distribution(req: Request, engine: Any):
    from aiorun.registry.pull import distribution_inspect
    name = req.params["name"]
    return await distribution_inspect(name,
                                      credentials=await registry_credentials(req, engine, name))
