"""Exec routes: ``POST /containers/{id}/exec``, ``POST /exec/{id}/start`` (hijacked like
attach; the server closes the stream once the process exited and all its output was sent),
``POST /exec/{id}/resize``, ``GET /exec/{id}/json``.

Exec into a container that is not running → 409 ``container X is not running``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from aiorun.api.http import Request, Response, Router, json_response
from aiorun.api.routes.containers import MULTIPLEXED, RAW, frame, pump_stdin, settle_delay
from aiorun.core.validate import validate_exec
from aiorun.errors import InvalidArgument

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()


@router.route("POST", "/containers/{id}/exec")
async def exec_create(req: Request, engine: Engine) -> Response:
    body = req.json()
    validate_exec(body)                 # types, NUL bytes, Cmd, Env, WorkingDir: 400 first
    eid = engine.containers.exec_create(req.params["id"], body)
    return json_response({"Id": eid}, 201)


@router.route("GET", "/exec/{id}/json")
async def exec_inspect(req: Request, engine: Engine) -> Any:
    return engine.containers.exec_inspect(req.params["id"])


@router.route("POST", "/exec/{id}/resize")
async def exec_resize(req: Request, engine: Engine) -> None:
    await engine.containers.exec_resize(req.params["id"], req.int_arg("h", 24) or 24,
                                        req.int_arg("w", 80) or 80)


@router.route("POST", "/exec/{id}/start")
async def exec_start(req: Request, engine: Engine) -> Response | None:
    mgr = engine.containers
    body = req.json() or {}
    if not isinstance(body, dict):
        raise InvalidArgument("the exec start body must be a JSON object")
    rec = mgr.get_exec(req.params["id"])
    tty = body.get("Tty")
    if body.get("Detach"):
        await mgr.exec_start(rec.id, tty)
        return None
    recv = rec.hub.subscribe()
    try:
        await mgr.exec_start(rec.id, tty)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await recv.aclose()
        raise
    raw = rec.tty
    delay = settle_delay(req)

    async def session(stream: anyio.abc.ByteStream) -> None:
        if delay:
            await anyio.sleep(delay)
        async with anyio.create_task_group() as tg:
            if rec.attach_stdin:
                tg.start_soon(pump_stdin, stream, mgr, rec.id, rec.hub.running)
            async with recv:
                async for item in recv:
                    if item is None:
                        break
                    s, data = item
                    if (s == 1 and not rec.attach_stdout) or (s == 2 and not rec.attach_stderr):
                        continue
                    await stream.send(data if raw else frame(s, data))
            # the CLI reads the exit code right after the stream ends: be done by then
            await rec.done.wait()
            tg.cancel_scope.cancel()
    return Response(200, hijack=session, content_type=RAW if raw else MULTIPLEXED)
