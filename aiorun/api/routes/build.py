"""``POST /commit`` and ``POST /build`` (Docker's classic builder API).

``POST /build?t=&dockerfile=&buildargs=&labels=&q=&rm=&nocache=&target=&pull=&networkmode=
&extrahosts=&cachefrom=&allow=`` (see :mod:`aiorun.images.build.options`; ``allow``:
:mod:`aiorun.images.build.entitlements`; a repeated parameter's first value counts, as in
Docker; headers ``X-Aiorun-Build-Secrets``, ``X-Aiorun-Build-Ssh``): the body is the context tar
(plain or compressed), spooled to ``<root>/tmp`` as it streams in (never held in memory).
Problems found before the build starts (bad tag, unreadable context, missing Dockerfile,
Dockerfile syntax errors naming the line) are HTTP 400 ``{"message"}``. Then the answer is a
stream of JSON lines: ``{"stream": "Step 1/7 : FROM busybox\\n"}``, ...,
``{"aux": {"ID": "sha256:..."}}``, ``{"stream": "Successfully built <12hex>\\n"}``,
``{"stream": "Successfully tagged x:latest\\n"}``; a failing step ends the stream with
``{"error": msg, "errorDetail": {"message": msg}}``.

``POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`` → 201 ``{"Id"}``;
``changes`` may repeat (one per ``--change``); the JSON body, if any, is a container config
whose non-empty fields override the committed config.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from typing import Any, AsyncIterator

import anyio
import anyio.to_thread

from aiorun.api.http import Request, Response, Router, json_response
from aiorun.errors import AiorunError, InvalidArgument

router = Router()
log = logging.getLogger(__name__)


@router.route("POST", "/commit")
async def commit_container(req: Request, engine: Any):
    from aiorun.engine.commit import commit
    container = req.arg("container")
    if not container:
        raise InvalidArgument("commit: the container query parameter is required")
    body = req.json() if req.body else {}
    changes: list[str] = []
    for c in req.args("changes"):
        changes += [ln for ln in c.splitlines() if ln.strip()]
    image_id = await commit(engine, container, repo=req.arg("repo") or None,
                            tag=req.arg("tag") or None, message=req.arg("comment") or "",
                            author=req.arg("author") or "", changes=changes,
                            pause=req.flag("pause", True),
                            config=body if isinstance(body, dict) else None)
    return json_response({"Id": image_id}, 201)


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


async def _spool(req: Request, dest) -> None:
    """Write the request body to ``dest`` chunk by chunk."""
    f = await anyio.to_thread.run_sync(open, dest, "wb")
    try:
        if req.stream is not None:
            async for chunk in req.stream:
                await anyio.to_thread.run_sync(f.write, chunk)
        else:
            await anyio.to_thread.run_sync(f.write, req.body)
    finally:
        await anyio.to_thread.run_sync(f.close)


def _prepare(work, dockerfile: str):
    """Unpack the context and parse the Dockerfile (worker thread)."""
    from aiorun.core.safepath import resolve_in_root
    from aiorun.images.build.ctxfs import unpack
    from aiorun.images.build.dockerfile import parse
    ctx = work / "context"
    unpack(work / "context.tar", ctx)       # in memory when small (see .ctxfs)
    (work / "context.tar").unlink()
    path = resolve_in_root(ctx, dockerfile)
    try:
        text = path.read_text()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InvalidArgument(f"Cannot locate specified Dockerfile: {dockerfile}") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"the Dockerfile {dockerfile} is not UTF-8 text") from None
    return ctx, parse(text, dockerfile)


@router.route("POST", "/build")
async def build(req: Request, engine: Any):
    from aiorun.engine.buildhost import EngineBuildHost
    from aiorun.images.build.builder import Builder
    from aiorun.images.reference import parse as parse_ref
    if engine.images is None or engine.storage is None:
        raise InvalidArgument("build needs the image store and a storage driver")
    # `t` may repeat (docker) or hold several tags separated by ',' (tags never contain one)
    tags = [parse_ref(t).name_tag for v in req.args("t") for t in v.split(",") if t]
    buildargs = req.json_arg("buildargs") or {}
    labels = req.json_arg("labels") or {}
    if not isinstance(buildargs, dict) or not isinstance(labels, dict):
        raise InvalidArgument("buildargs and labels must be JSON objects")
    buildargs = {str(k): "" if v is None else str(v) for k, v in buildargs.items()}
    from aiorun.images.build import buildsecrets
    header = req.headers.get(buildsecrets.HEADER.lower())
    build_secrets = buildsecrets.decode(header) if header else {}
    from aiorun.images.build import buildssh
    header = req.headers.get(buildssh.HEADER.lower())
    build_ssh = buildssh.decode(header) if header else {}
    quiet = req.flag("q")
    dockerfile = req.arg("dockerfile") or "Dockerfile"
    from aiorun.images.build import entitlements, options
    try:
        network = options.network_mode(req.arg("networkmode"))
        hosts = options.extra_hosts(req.args("extrahosts"))
        cache_from = options.cache_from(req.arg("cachefrom"))
        allow = entitlements.parse_allow(req.args("allow"))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    engine.paths.tmp.mkdir(parents=True, exist_ok=True)
    from aiorun.images.build.workdirs import ACTIVE, sweep_stale
    host = EngineBuildHost(engine)
    await sweep_stale(host)   # what a build interrupted by a daemon crash left behind
    work = engine.paths.tmp / f"buildctx-{secrets.token_hex(6)}"
    work.mkdir()
    ACTIVE.add(work.name)

    async def drop_work() -> None:
        from aiorun.images.build.ctxfs import release

        def drop() -> None:
            release(work / "context")
            shutil.rmtree(work, ignore_errors=True)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(drop)
        ACTIVE.discard(work.name)
    try:
        await _spool(req, work / "context.tar")
        ctx, instructions = await anyio.to_thread.run_sync(_prepare, work, dockerfile)
        entitlements.check(instructions, allow, dockerfile)
    except BaseException:
        await drop_work()
        raise
    builder = Builder(host, ctx, instructions, tags=tags, buildargs=buildargs,
                      labels={str(k): str(v) for k, v in labels.items()}, quiet=quiet,
                      no_cache=req.flag("nocache"), target=req.arg("target") or None,
                      pull=req.flag("pull"), build_secrets=build_secrets, build_ssh=build_ssh,
                      dockerfile=dockerfile, network=network, extra_hosts=hosts,
                      cache_from=cache_from, allow=allow)

    async def stream() -> AsyncIterator[bytes]:
        # A failure's message is sent only once the work directory (and the context's
        # tmpfs) is gone: a client that stops reading at it (docker-py) finds nothing left.
        error: bytes | None = None
        try:
            async for msg in builder.run():
                yield _line(msg)
        except AiorunError as exc:
            error = _line({"error": exc.message, "errorDetail": {"message": exc.message}})
        except Exception as exc:
            log.exception("build failed")
            text = f"{type(exc).__name__}: {exc}"
            error = _line({"error": text, "errorDetail": {"message": text}})
        finally:
            await drop_work()
        if error is not None:
            yield error

    return Response(200, stream=stream())


@router.route("POST", "/build/prune")
async def build_prune(req: Request, engine: Any) -> Any:
    from aiorun.engine.buildhost import CACHE_DIR
    from aiorun.engine.buildprune import prune_cache
    keep = req.int_arg("keep-storage", 0) or req.int_arg("reserved-space", 0) or 0
    return await anyio.to_thread.run_sync(prune_cache, engine.paths.root / CACHE_DIR,
                                          req.json_arg("filters"), None, keep)
