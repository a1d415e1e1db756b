"""Docker-shaped image endpoints.

``GET /images/json`` · ``GET /images/{name}/json`` · ``GET /images/{name}/history`` ·
``POST /images/{name}/tag?repo=&tag=`` (201) · ``DELETE /images/{name}?force=`` ·
``POST /images/create?fromSrc=-&repo=&tag=&message=&changes=`` (import; tar body; JSON lines) ·
``POST /images/create?fromImage=&tag=&platform=`` (pull: :mod:`aiorun.api.routes.pull`) ·
``GET /images/get?names=`` and ``GET /images/{name}/get`` (save: a tar stream) ·
``POST /images/load`` (tar body; JSON lines ``{"stream": "Loaded image: x\\n"}``, after
``Loading layer`` progress unless ``quiet``) ·
``POST /images/prune?filters=``.

Upload bodies are spooled to ``<root>/tmp`` (named so that a crash leaves nothing that the
next start does not remove) and then handed to the store: nothing is visible until complete.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

import anyio
import anyio.to_thread

from aiorun.api.http import Request, Response, Router
from aiorun.errors import AiorunError, InvalidArgument, NotFound
from aiorun.images import oci
from aiorun.images import reference as R

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.daemon import Engine
    from aiorun.core.interfaces import Images
    from aiorun.images.store import Image

router = Router()

_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None,
}


def _store(engine: Engine) -> Images:
    return engine.images


def summary(img: Image) -> dict[str, Any]:
    """One entry of ``GET /images/json``."""
    return {
        "Id": img.id, "ParentId": img.config.get("parent") or "",
        "RepoTags": list(img.repo_tags), "RepoDigests": list(img.repo_digests),
        "Created": int(oci.parse_time(img.created)), "Size": img.size, "SharedSize": -1,
        "VirtualSize": img.size,
        "Labels": (img.config.get("config") or {}).get("Labels") or {}, "Containers": -1,
    }


def inspect(img: Image, engine: Engine) -> dict[str, Any]:
    cfg = img.config
    ccfg = dict(_CONFIG_DEFAULTS)
    ccfg.update(cfg.get("config") or {})
    storage = engine.storage
    return {
        "Id": img.id, "RepoTags": list(img.repo_tags),
        "RepoDigests": list(img.repo_digests), "Parent": cfg.get("parent") or "",
        "Comment": cfg.get("comment", ""), "Created": cfg.get("created", ""),
        "DockerVersion": cfg.get("docker_version", ""), "Author": cfg.get("author", ""),
        "Config": ccfg, "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant", ""), "Os": cfg.get("os", ""),
        "Size": img.size, "VirtualSize": img.size,
        "GraphDriver": {"Name": storage.name if storage is not None else "", "Data": None},
        "RootFS": {"Type": "layers", "Layers": [f"sha256:{h}" for h in img.layers]},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def _path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` never match '/'."""
    rx = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name) is not None


def _values(filters: dict[str, Any], key: str) -> list[str]:
    v = filters.get(key)
    if isinstance(v, dict):     # docker's older {"key": {"value": true}} form
        return [k for k, on in v.items() if on]
    return list(v or [])


def _filtered_tags(img: Any, filters: dict[str, Any]) -> list[str] | None:
    """The image's tags that pass the filters (docker shows only the matching ones), or None
    when the image is filtered out."""
    tags = list(img.repo_tags)
    for d in _values(filters, "dangling"):
        if (d.lower() in ("true", "1")) != (not tags):
            return None
    refs = _values(filters, "reference")
    if refs:
        tags = [t for t in tags if any(_path_match(p, t) or _path_match(p, t.rpartition(":")[0])
                                       for p in refs)]
        if not tags:
            return None
    labels = (img.config.get("config") or {}).get("Labels") or {}
    for lab in _values(filters, "label"):
        k, eq, v = lab.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return None
    return tags


@router.route("GET", "/images/json")
async def list_images(req: Request, engine: Any):
    filters = req.json_arg("filters") or {}
    out = []
    for img in _store(engine).list():
        tags = _filtered_tags(img, filters)
        if tags is not None:
            s = summary(img)
            s["RepoTags"] = tags
            out.append(s)
    return out


@router.route("POST", "/images/prune")
async def prune(req: Request, engine: Any):
    # dangling, until, label, label! (aiorun.images.prune_filters): never an ignored filter
    return await _store(engine).prune(filters=req.json_arg("filters") or {})


async def _spool_body(req: Request, engine: Any, kind: str) -> Path:
    from aiorun.images.store import SPOOL_PREFIX
    path = engine.paths.tmp / f"{SPOOL_PREFIX}{kind}-{secrets.token_hex(6)}"
    f = await anyio.to_thread.run_sync(open, path, "wb")
    try:
        if req.stream is not None:
            # one thread hop per MiB, not per network chunk (a 200 MB import: thousands)
            buf = bytearray()
            async for chunk in req.stream:
                buf += chunk
                if len(buf) >= 1 << 20:
                    await anyio.to_thread.run_sync(f.write, bytes(buf))
                    buf.clear()
            if buf:
                await anyio.to_thread.run_sync(f.write, bytes(buf))
        else:
            await anyio.to_thread.run_sync(f.write, req.body)
    except BaseException:
        await anyio.to_thread.run_sync(f.close)
        path.unlink(missing_ok=True)
        raise
    await anyio.to_thread.run_sync(f.close)
    return path


def _list_arg(req: Request, name: str) -> list[str]:
    """Docker repeats list parameters; our client may send one JSON list."""
    out: list[str] = []
    for v in req.args(name):
        if v.startswith("["):
            try:
                out += [str(x) for x in json.loads(v)]
                continue
            except ValueError:
                pass
        if v:
            out.append(v)
    return out


@router.route("POST", "/images/create")
async def create(req: Request, engine: Any):
    src = req.arg("fromSrc")
    if req.arg("fromImage"):
        from aiorun.api.routes.pull import pull_response
        return await pull_response(req, engine)
    if src != "-":
        raise InvalidArgument("only fromSrc=- (the request body) is supported for import")
    repo, tag = req.arg("repo") or "", req.arg("tag") or ""
    tags = []
    if repo:
        tags.append(R.join(repo, tag) if tag else R.parse(repo).name_tag)
    changes = _list_arg(req, "changes")
    store = _store(engine)
    body = await _spool_body(req, engine, "import")
    try:
        img = await store.import_tar(body, tags, changes, message=req.arg("message") or "",
                                     take=True)   # an uncompressed body is renamed into place
    finally:
        body.unlink(missing_ok=True)
    out = b""
    skipped = store.skipped_devices(img.layers[0]) if img.layers else 0
    if skipped:
        # aux: docker's CLI ignores it (its output stays just the id); ours reports it
        out = json.dumps({"aux": {"SkippedDeviceNodes": skipped}}).encode() + b"\r\n"
    return Response(200, out + json.dumps({"status": img.id}).encode() + b"\r\n")


@router.route("POST", "/images/load")
async def load(req: Request, engine: Any):
    from aiorun.images import archive
    store = _store(engine)
    body = await _spool_body(req, engine, "loadbody")
    if req.flag("quiet"):
        try:
            lines = await archive.load(store, body)
        except AiorunError as exc:
            # Docker answers 200 and reports a failed load in the JSON stream (the CLI prints
            # the message and exits 1; docker-py raises APIError)
            msg = exc.message
            return Response(200, json.dumps({"errorDetail": {"message": msg},
                                             "error": msg}).encode() + b"\r\n")
        finally:
            body.unlink(missing_ok=True)
        out = b"".join(json.dumps({"stream": line + "\n"}).encode() + b"\r\n" for line in lines)
        return Response(200, out)
    # not quiet: Docker's "Loading layer" progress per layer, streamed as it happens
    from aiorun.api.jsonstream import reported, respond

    async def work(report: Any) -> list[dict[str, Any]]:
        try:
            lines = await archive.load(store, body, progress=report)
        finally:
            body.unlink(missing_ok=True)
        return [{"stream": line + "\n"} for line in lines]
    # answered at once (Docker's too): a bad archive is the stream's last, error, line
    return await respond(reported(work), "load", wait_first=False)


async def _save_response(engine: Any, names: list[str]) -> Response:
    from aiorun.images import archive
    if not names:
        raise InvalidArgument("no image names given")
    path = await archive.save_to_tempfile(_store(engine), names)

    async def stream() -> AsyncIterator[bytes]:
        try:
            f = await anyio.to_thread.run_sync(open, path, "rb")
            try:
                while True:
                    chunk = await anyio.to_thread.run_sync(f.read, 1 << 20)
                    if not chunk:
                        break
                    yield chunk
            finally:
                await anyio.to_thread.run_sync(f.close)
        finally:
            path.unlink(missing_ok=True)

    return Response(200, stream=stream(), content_type="application/x-tar")


@router.route("GET", "/images/get")
async def save_many(req: Request, engine: Any):
    return await _save_response(engine, _list_arg(req, "names"))


@router.route("GET", "/images/{name:path}/get")
async def save_one(req: Request, engine: Any):
    return await _save_response(engine, [req.params["name"]])


@router.route("GET", "/images/{name:path}/json")
async def inspect_image(req: Request, engine: Any):
    return inspect(_store(engine).resolve(req.params["name"]), engine)


@router.route("GET", "/images/{name:path}/history")
async def history(req: Request, engine: Any):
    return _store(engine).history(req.params["name"])


@router.route("POST", "/images/{name:path}/tag")
async def tag(req: Request, engine: Any):
    repo = req.arg("repo") or ""
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    new = R.join(repo, req.arg("tag") or None) if req.arg("tag") else R.parse(repo).name_tag
    await _store(engine).tag(req.params["name"], new)
    return Response(201, b"")


@router.route("DELETE", "/images/{name:path}")
async def remove(req: Request, engine: Any):
    return await _store(engine).remove(req.params["name"], force=req.flag("force"))
