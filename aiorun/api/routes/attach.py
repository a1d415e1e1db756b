"""``POST /containers/{id}/attach``: a hijacked connection to a container's stdio.

Query parameters as in Docker:

* ``stdin``/``stdout``/``stderr``: which streams; bytes the client sends go to the
  container's stdin (when it has ``OpenStdin``); its half-close closes stdin when the
  container has ``StdinOnce`` and no TTY (Docker's rule).
* ``logs=1``: first the container's log history (the json-file log), then
* ``stream=1``: the live output until the process exits (attaching to a container that is not
  running waits for its next start, which is how ``docker start -a`` works). With
  ``stream=0`` the connection closes after the logs (at once without ``logs``).
* ``detachKeys``: the detach sequence of a TTY session (default ctrl-p ctrl-q); typing it ends
  the session, the container keeps running with its stdin open (a ``detach`` event).

Framing and media type: :mod:`aiorun.api.streams`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.abc

from aiorun.api.http import Request, Response, Router
from aiorun.api.streams import detach_keys, frame, media_type_for, pump_stdin, settle_delay
from aiorun.core import state as st
from aiorun.errors import Conflict

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()

_STREAMS = {"stdin": 0, "stdout": 1, "stderr": 2}


@router.route("POST", "/containers/{id}/attach")
async def attach(req: Request, engine: Engine) -> Response:
    mgr = engine.containers
    c = mgr.get(req.params["id"])
    if c.state.status in (st.REMOVING, st.DEAD):
        raise Conflict(f"cannot attach to container {c.id}: it is {c.state.status}")
    want_in, want_out, want_err = req.flag("stdin"), req.flag("stdout"), req.flag("stderr")
    logs, live = req.flag("logs"), req.flag("stream")
    tty = bool(c.config.get("Tty"))
    keys = detach_keys(req.arg("detachKeys")) if tty else b""   # 400 before the hijack
    # Subscribe before the logs are read: output in between is not lost (it may show twice).
    recv = c.hub.subscribe() if live and (want_out or want_err) else None
    history = (await mgr.logs(c.id, follow=False, stdout=want_out, stderr=want_err)
               if logs and (want_out or want_err) else None)
    hub = c.hub
    mgr._emit("attach", c)
    delay = settle_delay(req)

    async def send(stream: anyio.abc.ByteStream, s: int, data: bytes) -> None:
        await stream.send(data if tty else frame(s, data))

    async def pump_then_detach(stream: anyio.abc.ByteStream, scope: anyio.CancelScope) -> None:
        once = bool(c.config.get("StdinOnce")) and not tty
        if await pump_stdin(stream, mgr, c.id, hub.running, keys, close_on_eof=once):
            mgr._emit("detach", c)
            scope.cancel()

    async def session(stream: anyio.abc.ByteStream) -> None:
        if delay:
            await anyio.sleep(delay)
        if history is not None:
            async for name, text, _when in history:
                await send(stream, _STREAMS.get(name, 1), text.encode())
        if not live:
            return
        async with anyio.create_task_group() as tg:
            if want_in and c.config.get("OpenStdin"):
                tg.start_soon(pump_then_detach, stream, tg.cancel_scope)
            if recv is not None:
                async with recv:
                    async for item in recv:
                        if item is None:
                            break
                        s, data = item
                        if (s == 1 and not want_out) or (s == 2 and not want_err):
                            continue
                        await send(stream, s, data)
            else:
                await c.waiter.event.wait()
            tg.cancel_scope.cancel()
    return Response(200, hijack=session, content_type=media_type_for(req, tty))
