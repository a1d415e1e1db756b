"""Docker-shaped container routes (``/containers/...``).

Streams:

* ``POST /containers/{id}/wait`` answers its headers at once (``docker run`` waits for them
  before it starts the container), then ``{"StatusCode": n, "Error": null}`` when the
  condition is met.
* ``GET /containers/{id}/logs``: non-TTY containers get docker's multiplexed frames
  (``[stream, 0, 0, 0, uint32 BE length] + payload``), TTY containers the raw bytes.
* ``POST /containers/{id}/attach`` is in :mod:`aiorun.api.routes.attach`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator

from aiorun.api.http import Request, Response, Router, json_response
from aiorun.api.streams import frame, media_type_for
from aiorun.core import state as st
from aiorun.core.validate import validate_create, validate_update
from aiorun.engine.containers import runopts
from aiorun.errors import Conflict, InvalidArgument, NotModified

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()

_STREAMS = {"stdin": 0, "stdout": 1, "stderr": 2}


def _time_arg(req: Request, name: str) -> float:
    v = req.arg(name)
    if not v:
        return 0.0
    try:
        return float(v)
    except ValueError:
        pass
    try:
        return st.parse_rfc3339(v) / 1e9
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v!r}") from None


@router.route("POST", "/containers/create")
async def create(req: Request, engine: Engine) -> Response:
    body = req.json()
    name = req.arg("name") or None
    validate_create(body, name)         # the whole body, before anything is created
    runopts.check_platform(engine.images, body.get("Image") or "", req.arg("platform"))
    cid = await engine.containers.create(body, name)
    return json_response({"Id": cid, "Warnings": []}, 201)


@router.route("GET", "/containers/json")
async def list_(req: Request, engine: Engine) -> Any:
    filters = req.json_arg("filters") or {}
    if not isinstance(filters, dict):
        raise InvalidArgument("filters must be a JSON object")
    limit = req.int_arg("limit")
    all_ = req.flag("all") or (limit is not None and limit > 0)
    return engine.containers.list(all=all_, filters=filters, limit=limit if limit and limit > 0
                                  else None)


@router.route("GET", "/containers/{id}/json")
async def inspect(req: Request, engine: Engine) -> Any:
    return engine.containers.inspect(req.params["id"])


@router.route("POST", "/containers/{id}/start")
async def start(req: Request, engine: Engine) -> Response | None:
    try:
        await engine.containers.start_container(req.params["id"])
    except NotModified:
        return Response(304)
    return None


@router.route("POST", "/containers/{id}/stop")
async def stop(req: Request, engine: Engine) -> Response | None:
    t = req.int_arg("t", req.int_arg("timeout"))
    try:
        await engine.containers.stop_container(req.params["id"], t, req.arg("signal") or None)
    except NotModified:
        return Response(304)
    return None


@router.route("POST", "/containers/{id}/kill")
async def kill(req: Request, engine: Engine) -> None:
    await engine.containers.kill(req.params["id"], req.arg("signal") or "SIGKILL")


@router.route("POST", "/containers/{id}/restart")
async def restart(req: Request, engine: Engine) -> None:
    await engine.containers.restart(req.params["id"], req.int_arg("t", req.int_arg("timeout")))


@router.route("POST", "/containers/{id}/wait")
async def wait(req: Request, engine: Engine) -> Response:
    mgr = engine.containers
    c = mgr.get(req.params["id"])
    condition = req.arg("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}: expected not-running, "
                              "next-exit or removed")

    async def body() -> AsyncIterator[bytes]:
        import json
        yield b""       # headers go out now
        code, _err = await mgr.wait_container(c, condition)
        # Docker sets Error only when waiting itself failed; a start error was already
        # reported by the start request (the docker CLI exits 125 on a non-null Error)
        yield json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n"
    return Response(200, stream=body())


@router.route("GET", "/containers/{id}/logs")
async def logs(req: Request, engine: Engine) -> Response:
    mgr = engine.containers
    c = mgr.get(req.params["id"])
    stdout, stderr = req.flag("stdout"), req.flag("stderr")
    if not stdout and not stderr:
        raise InvalidArgument("you must choose at least one stream")
    tail_s = req.arg("tail", "all")
    if tail_s in ("all", "", None):
        tail = None
    else:
        try:
            tail = int(tail_s)
        except ValueError:
            raise InvalidArgument(f"invalid value for tail: {tail_s!r}") from None
    ts = req.flag("timestamps")
    tty = bool(c.config.get("Tty"))
    it = await mgr.logs(c.id, follow=req.flag("follow"), stdout=stdout, stderr=stderr,
                        tail=tail, since=_time_arg(req, "since"), until=_time_arg(req, "until"))

    async def body() -> AsyncIterator[bytes]:
        yield b""
        async for stream, text, when in it:
            data = (f"{when} {text}" if ts else text).encode()
            yield data if tty else frame(_STREAMS.get(stream, 1), data)
    return Response(200, stream=body(), content_type=media_type_for(req, tty))


@router.route("POST", "/containers/{id}/resize")
async def resize(req: Request, engine: Engine) -> None:
    h, w = req.int_arg("h", 0), req.int_arg("w", 0)
    await engine.containers.resize(req.params["id"], h or 24, w or 80)


@router.route("POST", "/containers/{id}/rename")
async def rename(req: Request, engine: Engine) -> None:
    await engine.containers.rename(req.params["id"], req.arg("name") or "")


@router.route("GET", "/containers/{id}/top")
async def top(req: Request, engine: Engine) -> Any:
    return await engine.containers.top(req.params["id"], req.arg("ps_args") or "")


@router.route("DELETE", "/containers/{id}")
async def remove(req: Request, engine: Engine) -> None:
    if req.flag("link"):        # docker rm --link: a link, never the container (routes/links)
        from aiorun.engine.containers.links import remove_link
        return await remove_link(engine.containers, req.params["id"])
    await engine.containers.remove(req.params["id"], force=req.flag("force"), volumes=req.flag("v"))


@router.route("POST", "/containers/prune")
async def prune(req: Request, engine: Engine) -> Any:
    filters = req.json_arg("filters") or {}
    return await engine.containers.prune(filters)


@router.route("POST", "/containers/{id}/update")
async def update(req: Request, engine: Engine) -> Any:
    body = req.json()
    validate_update(body)               # types, NUL bytes, fields update cannot change
    return await engine.containers.update(req.params["id"], body)


@router.route("POST", "/containers/{id}/pause")
async def pause(req: Request, engine: Engine) -> None:
    await engine.containers.pause(req.params["id"])


@router.route("POST", "/containers/{id}/unpause")
async def unpause(req: Request, engine: Engine) -> None:
    await engine.containers.unpause(req.params["id"])


