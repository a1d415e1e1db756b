"""Docker-shaped network endpoints (handled by :class:`aiorun.engine.networks.NetworkManager`).

``GET /networks?filters=`` → list; ``GET /networks/{id}`` → inspect (404 when unknown);
``POST /networks/create`` → 201 ``{"Id", "Warning"}``; ``DELETE /networks/{id}`` → 204
(403 for the predefined networks or with active endpoints);
``POST /networks/{id}/connect`` ``{"Container", "EndpointConfig": {"Aliases",
"IPAMConfig": {"IPv4Address", "IPv6Address"}, "MacAddress"}}``;
``POST /networks/{id}/disconnect`` ``{"Container",
"Force"}``; ``POST /networks/prune?filters=`` → ``{"NetworksDeleted": [...]}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiorun.api.http import Request, Router, json_response
from aiorun.engine.networks.ipv6 import split_ipam_configs
from aiorun.errors import InvalidArgument

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()


@router.route("GET", "/networks")
async def list_networks(req: Request, engine: Engine):
    return engine.networks.list(req.json_arg("filters") or {})


@router.route("POST", "/networks/create")
async def create_network(req: Request, engine: Engine):
    body = req.json() or {}
    if not isinstance(body, dict):
        raise InvalidArgument("network create body must be a JSON object")
    ipam = body.get("IPAM") or {}
    enable_ipv6 = bool(body.get("EnableIPv6"))
    nets = split_ipam_configs(list(ipam.get("Config") or []), enable_ipv6)
    res = await engine.networks.create(
        str(body.get("Name") or ""), str(body.get("Driver") or "bridge"),
        enable_ipv6=enable_ipv6, **nets,
        options={str(k): str(v) for k, v in (body.get("Options") or {}).items()},
        labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
        internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")))
    return json_response(res, 201)


@router.route("POST", "/networks/prune")
async def prune_networks(req: Request, engine: Engine):
    return await engine.networks.prune(req.json_arg("filters") or {})


@router.route("GET", "/networks/{id}")
async def inspect_network(req: Request, engine: Engine):
    return engine.networks.inspect(req.params["id"])


@router.route("DELETE", "/networks/{id}")
async def remove_network(req: Request, engine: Engine):
    await engine.networks.remove(req.params["id"])
    return None


@router.route("POST", "/networks/{id}/connect")
async def connect_network(req: Request, engine: Engine):
    body = req.json() or {}
    container = str(body.get("Container") or "")
    if not container:
        raise InvalidArgument("connect: no Container given")
    ep = body.get("EndpointConfig") or {}
    ipam = ep.get("IPAMConfig") or {}
    await engine.networks.connect(req.params["id"], container, aliases=ep.get("Aliases") or [],
                                  ip_address=str(ipam.get("IPv4Address") or ""),
                                  ipv6_address=str(ipam.get("IPv6Address") or ""),
                                  mac_address=str(ep.get("MacAddress") or ""))
    return json_response("OK")


@router.route("POST", "/networks/{id}/disconnect")
async def disconnect_network(req: Request, engine: Engine):
    body = req.json() or {}
    container = str(body.get("Container") or "")
    if not container:
        raise InvalidArgument("disconnect: no Container given")
    await engine.networks.disconnect(req.params["id"], container, force=bool(body.get("Force")))
    return json_response("OK")
