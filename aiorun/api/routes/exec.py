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
from aiorun.api.streams import detach_keys, frame, media_type_for, pump_stdin, settle_delay
from aiorun.core.validate import validate_exec
from aiorun.errors import InvalidArgument
from aiorun.runtime.exits import ExecFailed

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
    """Framing follows the ``Tty`` of this request (Docker's rule; the process has a
    terminal when the exec was *created* with ``Tty``). A command that cannot run is not an
    HTTP error once attached: Docker's message is written to the stream, the exec's
    ``ExitCode`` is 126/127."""
    mgr = engine.containers
    body = req.json() or {}
    if not isinstance(body, dict):
        raise InvalidArgument("the exec start body must be a JSON object")
    rec = mgr.get_exec(req.params["id"])
    if body.get("Detach"):
        await mgr.exec_start(rec.id)
        return None
    framed = not body.get("Tty")
    keys = detach_keys(rec.detach_keys) if rec.tty else b""
    recv = rec.hub.subscribe()
    failure = ""
    try:
        await mgr.exec_start(rec.id)
    except ExecFailed as exc:
        failure = exc.message
    except BaseException:
        with anyio.CancelScope(shield=True):
            await recv.aclose()
        raise
    delay = settle_delay(req)

    async def send(stream: anyio.abc.ByteStream, s: int, data: bytes) -> None:
        await stream.send(frame(s, data) if framed else data)

    async def pump_then_detach(stream: anyio.abc.ByteStream, scope: anyio.CancelScope) -> None:
        if await pump_stdin(stream, mgr, rec.id, rec.hub.running, keys,
                            close_on_eof=not rec.tty):
            scope.cancel()     # the exec goes on, its stdin stays open

    async def session(stream: anyio.abc.ByteStream) -> None:
        if delay:
            await anyio.sleep(delay)
        if failure:
            await recv.aclose()
            await send(stream, 1, f"{failure}\r\n".encode())
            return
        async with anyio.create_task_group() as tg:
            if rec.attach_stdin:
                tg.start_soon(pump_then_detach, stream, tg.cancel_scope)
            async with recv:
                async for item in recv:
                    if item is None:
                        break
                    s, data = item
                    if (s == 1 and not rec.attach_stdout) or (s == 2 and not rec.attach_stderr):
                        continue
                    await send(stream, s, data)
            # the CLI reads the exit code right after the stream ends: be done by then
            await rec.done.wait()
            tg.cancel_scope.cancel()
    return Response(200, hijack=session, content_type=media_type_for(req, not framed))
