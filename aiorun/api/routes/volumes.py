"""Docker-shaped volume endpoints.

``GET /volumes`` → ``{"Volumes": [...], "Warnings": []}``; ``POST /volumes/create`` (201);
``GET /volumes/{name}``; ``DELETE /volumes/{name}?force=`` (204; 409 when in use);
``POST /volumes/prune?filters=`` → ``{"VolumesDeleted", "SpaceReclaimed"}``.
"""

from __future__ import annotations

from typing import Any

from aiorun.api.http import Request, Router, json_response
from aiorun.errors import Unavailable

router = Router()


def _vm(engine: Any):
    vm = getattr(engine, "volumes", None)
    if vm is None:
        raise Unavailable("the volume manager is not running")
    return vm


@router.route("GET", "/volumes")
async def list_volumes(req: Request, engine: Any):
    vols = await _vm(engine).list(req.json_arg("filters") or {})
    return {"Volumes": vols, "Warnings": []}


@router.route("POST", "/volumes/create")
async def create_volume(req: Request, engine: Any):
    body = req.json() or {}
    vol = await _vm(engine).create(body.get("Name") or None, body.get("Driver"),
                                   body.get("Labels") or {}, body.get("DriverOpts") or {})
    return json_response(vol, 201)


@router.route("POST", "/volumes/prune")
async def prune_volumes(req: Request, engine: Any):
    return await _vm(engine).prune(req.json_arg("filters") or {})


@router.route("GET", "/volumes/{name}")
async def inspect_volume(req: Request, engine: Any):
    return await _vm(engine).inspect(req.params["name"])


@router.route("DELETE", "/volumes/{name}")
async def remove_volume(req: Request, engine: Any):
    await _vm(engine).remove(req.params["name"], force=req.flag("force"))
    return None
