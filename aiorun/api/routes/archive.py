"""Container filesystem routes: ``docker cp`` (``/containers/{id}/archive``), ``docker diff``
(``/containers/{id}/changes``), ``docker export`` (``/containers/{id}/export``) and
``docker stats`` (``/containers/{id}/stats``). The work is in
:mod:`aiorun.engine.containers.archive`, ``.changes`` and ``.stats``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator

from aiorun.api.http import Request, Response
from aiorun.api.http import Router
from aiorun.engine.containers import archive, changes, stats
from aiorun.errors import InvalidArgument

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()
TAR = "application/x-tar"


def _path(req: Request) -> str:
    path = req.arg("path")
    if not path:
        raise InvalidArgument("Path cannot be empty")
    return path


# HEAD is declared before GET: the router would otherwise answer HEAD with the GET handler.
@router.route("HEAD", "/containers/{id}/archive")
async def stat_path(req: Request, engine: Engine) -> Response:
    header = await archive.stat_path(engine.containers, req.params["id"], _path(req))
    return Response(200, headers=[(archive.STAT_HEADER, header)], content_type="")


@router.route("GET", "/containers/{id}/archive")
async def get_archive(req: Request, engine: Engine) -> Response:
    header, body = await archive.get_archive(engine.containers, req.params["id"], _path(req))
    return Response(200, headers=[(archive.STAT_HEADER, header)], stream=body,
                    content_type=TAR)


@router.route("PUT", "/containers/{id}/archive")
async def put_archive(req: Request, engine: Engine) -> Response:
    body = req.stream if req.stream is not None else _once(req.body)
    await archive.put_archive(engine.containers, req.params["id"], _path(req), body,
                              no_overwrite_dir_non_dir=req.flag("noOverwriteDirNonDir"),
                              copy_uid_gid=req.flag("copyUIDGID"))
    return Response(200, content_type="")      # Docker answers 200 (docker-py checks it)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@router.route("GET", "/containers/{id}/changes")
async def container_changes(req: Request, engine: Engine) -> Any:
    return await changes.changes(engine.containers, req.params["id"])


@router.route("GET", "/containers/{id}/export")
async def export(req: Request, engine: Engine) -> Response:
    body = await changes.export(engine.containers, req.params["id"])
    return Response(200, stream=body, content_type=TAR)


@router.route("GET", "/containers/{id}/stats")
async def container_stats(req: Request, engine: Engine) -> Response:
    stream = req.flag("stream", True)
    one_shot = req.flag("one-shot")
    if one_shot and stream:
        raise InvalidArgument("cannot have stream=true and one-shot=true")
    body = await stats.stats_stream(engine.containers, req.params["id"], stream=stream,
                                    one_shot=one_shot)
    return Response(200, stream=body)
