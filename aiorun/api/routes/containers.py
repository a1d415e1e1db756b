"""Docker-shaped container routes (``/containers/...``).

Streams:

* ``POST /containers/{id}/wait`` answers its headers at once (``docker run`` waits for them
  before it starts the container), then ``{"StatusCode": n, "Error": null}`` when the
  condition is met.
* ``GET /containers/{id}/logs``: non-TTY containers get docker's multiplexed frames
  (``[stream, 0, 0, 0, uint32 BE length] + payload``), TTY containers the raw bytes.
* ``POST /containers/{id}/attach``: hijacked connection, same framing as logs; bytes the client
  sends go to the container's stdin, its half-close closes stdin; the server closes the
  connection when the container's output ends (the process exited).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, AsyncIterator

import anyio
import anyio.abc

from aiorun.api.http import Request, Response, Router, json_response
from aiorun.core import state as st
from aiorun.core.validate import validate_create, validate_update
from aiorun.engine.containers import runopts
from aiorun.errors import Conflict, InvalidArgument, NotModified

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
_STREAMS = {"stdin": 0, "stdout": 1, "stderr": 2}


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def settle_delay(req: Request) -> float:
    """Seconds to wait between the 101 head and the first stream bytes.

    docker-py reads the upgrade response through a buffered reader and then takes the raw
    socket: bytes that arrived together with the head are lost to it. Output that is already
    waiting (a fast ``exec_run``) must not be sent in the same breath, for that client only.
    """
    return 0.05 if req.headers.get("user-agent", "").startswith("docker-sdk-python") else 0.0


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
    return Response(200, stream=body(), content_type=RAW if tty else MULTIPLEXED)


@router.route("POST", "/containers/{id}/attach")
async def attach(req: Request, engine: Engine) -> Response:
    mgr = engine.containers
    c = mgr.get(req.params["id"])
    if c.state.status in (st.REMOVING, st.DEAD):
        raise Conflict(f"cannot attach to container {c.id}: it is {c.state.status}")
    want_in, want_out, want_err = req.flag("stdin"), req.flag("stdout"), req.flag("stderr")
    tty = bool(c.config.get("Tty"))
    if want_out or want_err:
        recv = c.hub.subscribe()
    else:
        recv = None
    hub = c.hub
    mgr._emit("attach", c)

    delay = settle_delay(req)

    async def session(stream: anyio.abc.ByteStream) -> None:
        if delay:
            await anyio.sleep(delay)
        async with anyio.create_task_group() as tg:
            if want_in and c.config.get("OpenStdin"):
                tg.start_soon(pump_stdin, stream, mgr, c.id, hub.running)
            if recv is not None:
                async with recv:
                    async for item in recv:
                        if item is None:
                            break
                        s, data = item
                        if (s == 1 and not want_out) or (s == 2 and not want_err):
                            continue
                        await stream.send(data if tty else frame(s, data))
            else:
                await c.waiter.event.wait()
            tg.cancel_scope.cancel()
    return Response(200, hijack=session, content_type=RAW if tty else MULTIPLEXED)


async def pump_stdin(stream: anyio.abc.ByteStream, mgr: Any, pid_id: str,
                     running: anyio.Event) -> None:
    """Client bytes → the process's stdin once it runs (until then they wait in the socket
    buffer); the client's half-close → close stdin. Ends quietly when the process is gone."""
    from aiorun.errors import AiorunError
    await running.wait()
    while True:
        try:
            data = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError,
                OSError):
            data = b""
        try:
            if not data:
                await mgr.close_stdin(pid_id)
                return
            await mgr.write_stdin(pid_id, data)
        except AiorunError:
            return


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


