"""``push``: one local image to a registry, as Docker schema 2, with Docker's progress messages.

For each layer (at most :data:`PARALLEL` at once, as Docker's ``max-concurrent-uploads``;
the messages list them top first, as docker does, and the manifest keeps their order):

1. its compressed digest, if this daemon compressed it before, comes from the push cache
   (``<state root>/push-cache.json``: diff_id → gzip digest and size, plus the repositories
   of each registry known to hold it);
2. ``HEAD /v2/<repo>/blobs/<digest>``: 200 → "Layer already exists" — nothing compressed;
3. else, when another repository of the same registry holds it, a cross-repository mount
   (``POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>``): 201 → "Mounted from
   <other>" (a 202 means the registry declined and opened an ordinary upload instead);
4. else the layer is gzip-compressed (deterministically: the same tar always gives the same
   digest) to a spool file under ``<root>/tmp`` and uploaded: ``POST`` an upload session,
   ``PATCH`` it in chunks ("Pushing" with ``progressDetail``), ``PUT ?digest=``.

Then the config blob and the manifest (``PUT /v2/<repo>/manifests/<tag>``); the last message is
``<tag>: digest: sha256:… size: N`` plus Docker's ``aux`` push result. Errors are
:class:`aiorun.errors.AiorunError`\\ s naming the fix (unauthorized → ``aiorun login``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import zlib
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream

from aiorun.config import Paths
from aiorun.core.atomicfile import write_json_atomic
from aiorun.core.interfaces import Images
from aiorun.core.progressbar import bar
from aiorun.errors import NotFound
from aiorun.images import reference as R
from aiorun.images.layerfiles import SPOOL_PREFIX
from aiorun.registry.auth import Credentials
from aiorun.registry.remote import Remote, parse_remote
from aiorun.registry.transport import RegistryClient, RegistryUnavailable

log = logging.getLogger("aiorun.registry")

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: Layers uploaded at once (Docker's default ``max-concurrent-uploads`` is 5).
PARALLEL = 5
#: Size of one PATCH of a chunked upload.
UPLOAD_CHUNK = 8 << 20
#: gzip level: Go's DefaultCompression (what docker pushes with).
GZIP_LEVEL = 6
_READ = 1 << 20

Message = dict[str, Any]


# ------------------------------------------------------------------ the push cache

class PushCache:
    """diff_id → the gzip blob it was pushed as, and where it is known to live. A small JSON
    file, rewritten atomically (not fsynced: losing it costs one compression, no more)."""

    def __init__(self, paths: Paths) -> None:
        self.path = paths.root / "push-cache.json"
        try:
            data = json.loads(self.path.read_bytes())
            self.layers: dict[str, Any] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.layers = {}

    def blob(self, diff_id: str) -> tuple[str, int] | None:
        e = self.layers.get(diff_id)
        if isinstance(e, dict) and isinstance(e.get("digest"), str):
            return e["digest"], int(e.get("size") or 0)
        return None

    def holders(self, diff_id: str, registry: str) -> list[str]:
        e = self.layers.get(diff_id) or {}
        return list((e.get("repos") or {}).get(registry) or [])

    def record(self, diff_id: str, digest: str, size: int, registry: str = "",
               repo: str = "") -> None:
        """Remember ``diff_id``'s blob, and (when given) that ``registry``'s ``repo`` has it."""
        e = self.layers.get(diff_id)
        if not isinstance(e, dict) or e.get("digest") != digest:
            e = {"digest": digest, "size": size, "repos": {}}
        if registry:
            repos = e.setdefault("repos", {}).setdefault(registry, [])
            if repo not in repos:
                repos.append(repo)
        self.layers[diff_id] = e
        try:
            write_json_atomic(self.path, self.layers, durable=False)
        except OSError as exc:
            log.warning("cannot save the push cache %s: %s", self.path, exc.strerror)


# ------------------------------------------------------------------ compression

def compress_layer(tar: Path, spool_dir: Path) -> tuple[Path, str, int]:
    """gzip ``tar`` into a spool file: (file, "sha256:<hex>", size). Deterministic: no name
    and mtime 0 in the header, fixed level. The caller removes the file."""
    out = spool_dir / f"{SPOOL_PREFIX}push-{secrets.token_hex(8)}"
    h = hashlib.sha256()
    size = 0
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)   # 31: gzip wrapper, zeroed header
    try:
        with open(tar, "rb") as src, open(out, "wb") as dst:
            while True:
                chunk = src.read(_READ)
                data = z.compress(chunk) if chunk else z.flush()
                if data:
                    h.update(data)
                    size += len(data)
                    dst.write(data)
                if not chunk:
                    break
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out, "sha256:" + h.hexdigest(), size


# ------------------------------------------------------------------ the push

class Pusher:
    """One push of ``name:tag`` to its registry (use :func:`push`)."""

    def __init__(self, images: Images, paths: Paths, rc: RegistryClient, remote: Remote) -> None:
        self.images = images
        self.paths = paths
        self.rc = rc
        self.remote = remote
        self.repo = remote.repository
        self.cache = PushCache(paths)

    def _blob_path(self, digest: str) -> str:
        return f"/v2/{self.repo}/blobs/{digest}"

    async def check_access(self) -> None:
        """Fail before any work when the registry refuses to let us push here (unauthorized
        names ``aiorun login``); a repository that does not exist yet is fine."""
        resp = await self.rc.request("GET", f"/v2/{self.repo}/tags/list",
                                     scope=self.remote.scope("pull,push"))
        await resp.aclose()
        if resp.status_code == 403:     # 401 was raised by the client; other answers vary
            await RegistryClient.check(resp, f"push access to {self.repo}")

    async def blob_exists(self, digest: str) -> bool:
        resp = await self.rc.request("HEAD", self._blob_path(digest),
                                     scope=self.remote.scope("pull,push"))
        await resp.aclose()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        await RegistryClient.check(resp, f"checking blob {digest}")
        return False

    async def try_mount(self, digest: str, source: str) -> str | None:
        """Mount ``digest`` from ``source``: None when mounted, else the upload URL the
        registry opened instead."""
        scope = f"{self.remote.scope('pull,push')} repository:{source}:pull"
        path = (f"/v2/{self.repo}/blobs/uploads/?mount={quote(digest)}"
                f"&from={quote(source, safe='')}")
        resp = await self.rc.request("POST", path, scope=scope)
        await resp.aclose()
        if resp.status_code == 201:
            return None
        await RegistryClient.check(resp, f"mounting blob {digest} from {source}")
        return resp.headers.get("location") or ""

    async def start_upload(self) -> str:
        resp = await self.rc.request("POST", f"/v2/{self.repo}/blobs/uploads/",
                                     scope=self.remote.scope("pull,push"))
        await RegistryClient.check(resp, f"starting an upload to {self.repo}")
        await resp.aclose()
        return self._location(resp.headers.get("location"))

    def _location(self, loc: str | None) -> str:
        if not loc:
            raise RegistryUnavailable(f"the registry {self.rc.registry} opened an upload "
                                      "without a Location")
        return loc

    async def upload_file(self, file: Path, digest: str, size: int, location: str,
                          short: str) -> AsyncIterator[Message]:
        """PATCH the file in chunks (progress messages), then PUT ``?digest=``."""
        scope = self.remote.scope("pull,push")
        loc = self._location(location)
        f = await anyio.to_thread.run_sync(open, file, "rb")
        try:
            offset = 0
            while offset < size:
                chunk = await anyio.to_thread.run_sync(f.read, UPLOAD_CHUNK)
                if not chunk:
                    break
                end = offset + len(chunk) - 1
                resp = await self.rc.request(
                    "PATCH", loc, scope=scope, content=chunk,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{end}",
                             "Content-Length": str(len(chunk))})
                await RegistryClient.check(resp, f"uploading layer {short}")
                await resp.aclose()
                loc = self._location(resp.headers.get("location") or loc)
                offset = end + 1
                yield {"status": "Pushing", "id": short,
                       "progressDetail": {"current": offset, "total": size},
                       "progress": bar(offset, size)}
        finally:
            await anyio.to_thread.run_sync(f.close)
        await self.finish_upload(loc, digest, b"", f"layer {short}")

    async def finish_upload(self, loc: str, digest: str, body: bytes, what: str) -> None:
        sep = "&" if "?" in loc else "?"
        resp = await self.rc.request(
            "PUT", f"{loc}{sep}digest={quote(digest)}", scope=self.remote.scope("pull,push"),
            content=body, headers={"Content-Type": "application/octet-stream",
                                   "Content-Length": str(len(body))})
        await RegistryClient.check(resp, f"completing the upload of {what}")
        await resp.aclose()

    async def push_layer(self, diff_id: str) -> AsyncIterator[Message]:
        short = diff_id[:12]
        registry = self.remote.registry
        known = self.cache.blob(diff_id)
        if known is not None:
            digest, size = known
            if await self.blob_exists(digest):
                self.cache.record(diff_id, digest, size, registry, self.repo)
                yield {"status": "Layer already exists", "id": short, "progressDetail": {}}
                return
            for source in self.cache.holders(diff_id, registry):
                if source == self.repo:
                    continue
                opened = await self.try_mount(digest, source)
                if opened is None:
                    self.cache.record(diff_id, digest, size, registry, self.repo)
                    yield {"status": f"Mounted from {source}", "id": short,
                           "progressDetail": {}}
                    return
                break     # the registry declined the mount: upload (a fresh session below)
        yield {"status": "Pushing", "id": short, "progressDetail": {}}
        tar = self.images.layer_tar(diff_id)
        log.info("compressing layer %s for push", short)
        spool, digest, size = await anyio.to_thread.run_sync(compress_layer, tar, self.paths.tmp)
        self.cache.record(diff_id, digest, size)     # even if the upload fails below
        try:
            if known is None and await self.blob_exists(digest):
                self.cache.record(diff_id, digest, size, registry, self.repo)
                yield {"status": "Layer already exists", "id": short, "progressDetail": {}}
                return
            loc = await self.start_upload()
            async for msg in self.upload_file(spool, digest, size, loc, short):
                yield msg
        finally:
            spool.unlink(missing_ok=True)
        self.cache.record(diff_id, digest, size, registry, self.repo)
        yield {"status": "Pushed", "id": short, "progressDetail": {}}

    async def push_layers(self, layers: list[str],
                          send: MemoryObjectSendStream[Message | BaseException]) -> None:
        """Every layer, at most :data:`PARALLEL` at once (each compressed and uploaded as
        soon as a slot is free); their messages, then the first error if any, go to
        ``send``. Layers already in the registry cost a HEAD each."""
        limit = anyio.Semaphore(PARALLEL)

        async def one(diff_id: str) -> None:
            async with limit:
                async for msg in self.push_layer(diff_id):
                    await send.send(msg)

        async with send:
            try:
                async with anyio.create_task_group() as tg:
                    for d in layers:
                        tg.start_soon(one, d)
            except Exception as exc:      # the first failure ends the push
                err: BaseException = exc
                while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
                    err = err.exceptions[0]
                await send.send(err)

    async def push_config(self, raw: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if not await self.blob_exists(digest):
            loc = await self.start_upload()
            await self.finish_upload(loc, digest, raw, "the image config")
        return digest

    async def put_manifest(self, tag: str, manifest: bytes) -> str:
        resp = await self.rc.request(
            "PUT", f"/v2/{self.repo}/manifests/{tag}", scope=self.remote.scope("pull,push"),
            content=manifest, headers={"Content-Type": MT_MANIFEST})
        await RegistryClient.check(resp, f"putting the manifest of {self.repo}:{tag}")
        await resp.aclose()
        return "sha256:" + hashlib.sha256(manifest).hexdigest()


def display_repository(remote: Remote) -> str:
    """What ``The push refers to repository [...]`` names (``docker.io/library/x``)."""
    return f"{remote.registry}/{remote.repository}"


async def push(images: Images, paths: Paths, ref: str, *, credentials: Credentials | None,
               insecure: bool | None = None) -> AsyncIterator[Message]:
    """Push the local image ``ref`` (``name[:tag]``) to its registry; yields Docker's push
    messages. The image's RepoDigests gain ``name@<manifest digest>``. The caller emits the
    ``image push`` event once this ends without an error."""
    parsed = R.parse(ref)
    if parsed.digest:
        raise NotFound(f"cannot push a digest reference: {ref} (push a tag)")
    local = parsed.name_tag
    try:
        img = images.resolve(local)
    except NotFound:
        raise NotFound(f"An image does not exist locally with the tag: {parsed.repo}") from None
    remote = parse_remote(local)
    tag = parsed.tag or R.DEFAULT_TAG
    yield {"status": f"The push refers to repository [{display_repository(remote)}]"}
    layers = list(dict.fromkeys(img.layers))
    for d in reversed(layers):
        yield {"status": "Preparing", "id": d[:12], "progressDetail": {}}
    for d in reversed(layers[1:]):
        yield {"status": "Waiting", "id": d[:12], "progressDetail": {}}
    async with RegistryClient(remote.api_host, credentials=credentials,
                              insecure=insecure) as rc:
        p = Pusher(images, paths, rc, remote)
        await p.check_access()
        send, recv = anyio.create_memory_object_stream[Message | BaseException](64)
        failed: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(p.push_layers, layers, send)
            async with recv:
                async for item in recv:
                    if isinstance(item, BaseException):
                        failed = item
                        tg.cancel_scope.cancel()
                        break
                    yield item
        if failed is not None:
            raise failed
        descriptors = []
        for d in layers:
            blob = p.cache.blob(d)
            assert blob is not None    # push_layer recorded it
            descriptors.append({"mediaType": MT_LAYER_GZIP, "size": blob[1],
                                "digest": blob[0]})
        raw = images.config_bytes(img.id)
        config_digest = await p.push_config(raw)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "size": len(raw), "digest": config_digest},
            "layers": descriptors}, indent=3).encode()
        digest = await p.put_manifest(tag, manifest)
    # Recorded by the store (persisted with the image, as a pull's are).
    await images.add_repo_digest(img.id, f"{parsed.repo}@{digest}")
    yield {"status": f"{tag}: digest: {digest} size: {len(manifest)}"}
    yield {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(manifest)}}


__all__ = ["MT_MANIFEST", "PushCache", "compress_layer", "push"]
