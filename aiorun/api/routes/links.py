"""``DELETE /containers/{parent}/{alias}?link=1`` (``docker rm --link /web/db``): remove a
legacy link (:mod:`aiorun.engine.containers.links`). One-segment ids are the container
removal of :mod:`.containers` (registered first); a longer path without ``link=1`` names no
container."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiorun.api.http import Request, Router
from aiorun.engine.containers import links
from aiorun.errors import NotFound

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()


@router.route("DELETE", "/containers/{id:path}")
async def remove_link(req: Request, engine: Engine) -> None:
    if not req.flag("link"):
        raise NotFound(f"No such container: {req.params['id']}")
    await links.remove_link(engine.containers, req.params["id"])
