"""Docker-shaped volume endpoints.

``GET /volumes`` → ``{"Volumes": [...], "Warnings": []}``; ``POST /volumes/create`` (201);
``GET /volumes/{name}``; ``DELETE /volumes/{name}?force=`` (204; 409 when in use);
``POST /volumes/prune?filters=`` → ``{"VolumesDeleted", "SpaceReclaimed"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiorun.api.http import Request, Router, json_response

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()


@router.route("GET", "/volumes")
async def list_volumes(req: Request, engine: Engine):
    vols = await engine.volumes.list(req.json_arg("filters") or {})
    return {"Volumes": vols, "Warnings": []}


@router.route("POST", "/volumes/create")
async def create_volume(req: Request, engine: Engine):
    body = req.json() or {}
    vol = await engine.volumes.create(body.get("Name") or None, body.get("Driver"),
                                   body.get("Labels") or {}, body.get("DriverOpts") or {})
    return json_response(vol, 201)


@router.route("POST", "/volumes/prune")
async def prune_volumes(req: Request, engine: Engine):
    return await engine.volumes.prune(req.json_arg("filters") or {})


@router.route("GET", "/volumes/{name}")
async def inspect_volume(req: Request, engine: Engine):
    return await engine.volumes.inspect(req.params["name"])


@router.route("DELETE", "/volumes/{name}")
async def remove_volume(req: Request, engine: Engine):
    await engine.volumes.remove(req.params["name"], force=req.flag("force"))
    return None
