"""``pull``: an image from a registry into the image store, reporting Docker's progress.

    puller = Puller(store, tmp_dir, "127.0.0.1:5000/app:1", credentials=None, platform=None)
    async for msg in puller.run():      # Docker's JSON progress messages (dicts)
        ...
    puller.image                        # the stored Image

The steps: the manifest (by tag or digest; a list/index is resolved to the host's platform or
the one asked for) → the config blob → the layers. Every blob is verified against its digest
while it streams to a spool file under ``tmp_dir`` (named so that the store's start removes
leftovers of a crash); a dropped connection is resumed with an HTTP ``Range`` request; each
layer's uncompressed digest must equal the config's ``rootfs.diff_ids`` entry. Layers whose
diff_id the store already has are never fetched. Downloads run in parallel (at most
:data:`PARALLEL`), each layer is extracted as soon as it is verified, overlapping the
downloads of the others.

Nothing is half-stored: a failure discards the spool files, un-pins the layers this pull
added (they are freed unless another image uses them) and registers no image or tag.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncGenerator, BinaryIO

import anyio
import anyio.to_thread
import httpx
from anyio.streams.memory import MemoryObjectSendStream

from aiorun.core.progressbar import bar
from aiorun.errors import AiorunError, InvalidArgument, NotFound
from aiorun.images import oci
from aiorun.images import reference as R
from aiorun.images.layerfiles import SPOOL_PREFIX
from aiorun.registry import manifest as M
from aiorun.registry.auth import Credentials
from aiorun.registry.remote import DOCKER_HUB, MIRRORS_ENV, Remote, parse_mirrors, parse_remote
from aiorun.registry.transport import RegistryClient, RegistryUnauthorized, RegistryUnavailable

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.core.interfaces import Images
    from aiorun.images.store import Image

log = logging.getLogger(__name__)

#: Layers downloaded at once (Docker's default ``max-concurrent-downloads`` is 3).
PARALLEL = 3
#: Attempts per blob (the first try plus resumes after a dropped connection).
ATTEMPTS = 5
#: Largest manifest or config accepted (they are JSON documents).
MAX_DOCUMENT = 8 << 20
#: A progress message every this many bytes of a layer.
PROGRESS_STEP = 512 << 10


class DigestMismatch(InvalidArgument):
    """A blob or manifest whose bytes do not match its digest."""


@dataclass(frozen=True)
class PullTarget:
    remote: Remote
    ref: R.Reference          # normalised: repo for tags and RepoDigests

    @property
    def display(self) -> str:
        """``repo:tag`` or ``repo@digest``, as Docker's status lines name it."""
        if self.ref.digest:
            return f"{self.ref.repo}@{self.ref.digest}"
        return self.ref.name_tag


def target(ref: str) -> PullTarget:
    r = R.parse(ref)
    return PullTarget(parse_remote(ref), r)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _progress(status: str, ident: str, current: int | None = None,
              total: int | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"status": status, "id": ident}
    if current is not None:
        detail: dict[str, int] = {"current": current}
        if total:
            detail["total"] = total
        msg["progressDetail"] = detail
        msg["progress"] = bar(current, total)
    else:
        msg["progressDetail"] = {}
    return msg


class Puller:
    def __init__(self, store: Images, tmp_dir: Path, ref: str, *,
                 credentials: Credentials | None = None, platform: str | None = None,
                 insecure: bool | None = None) -> None:
        self.store = store
        self.tmp_dir = tmp_dir
        self.target = target(ref)
        self.credentials = credentials
        self.platform = M.parse_platform(platform) or M.host_platform()
        self.insecure = insecure
        self.image: Image | None = None
        self.manifest_digest = ""
        self._pinned: list[str] = []          # diff_id hex pinned by this pull

    # ------------------------------------------------------------------ the pull
    async def run(self) -> AsyncGenerator[dict[str, Any], None]:
        """Pull; yield Docker's progress messages. Errors are raised (AiorunError)."""
        t = self.target
        remote = t.remote
        rc, mdigest, man = await self._open()
        async with rc:
            try:
                # the first message comes once the image is known to exist: the API route
                # waits for it, so an unknown image is an HTTP error, as with Docker
                yield {"status": f"Pulling from {remote.repository}", "id": remote.reference}
                self.manifest_digest = mdigest
                config_raw = await self._fetch_small(rc, man.config.digest, "image config",
                                                     man.config.size)
                config = _parse_config(config_raw, man)
                iid = oci.digest(config_raw)
                previous = self._current_id()
                diff_ids = oci.diff_ids_hex(config)
                send, recv = anyio.create_memory_object_stream[Any](64)
                failed: BaseException | None = None
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._layers, rc, man, diff_ids, send)
                    async with recv:
                        async for item in recv:
                            if isinstance(item, BaseException):
                                failed = item
                                tg.cancel_scope.cancel()
                                break
                            yield item
                if failed is not None:
                    raise failed
                tags = [t.ref.name_tag] if t.ref.tag and not t.ref.digest else []
                img = await self.store.register_raw(config_raw, config, tags)
                self._pinned.clear()              # register_raw released them
                blobs = {d.digest: h for d, h in zip(man.layers, diff_ids)}
                await self.store.add_repo_digest(img.id, f"{t.ref.repo}@{mdigest}", blobs)
                self.image = self.store.resolve(img.id)
            finally:
                await self._unpin()
        yield {"status": f"Digest: {mdigest}"}
        if previous == iid:
            yield {"status": f"Status: Image is up to date for {t.display}"}
        else:
            yield {"status": f"Status: Downloaded newer image for {t.display}"}

    def _current_id(self) -> str | None:
        try:
            return self.store.resolve(self.target.display).id
        except (NotFound, InvalidArgument):
            return None

    async def _unpin(self) -> None:
        if not self._pinned:
            return
        pinned, self._pinned = self._pinned, []
        with anyio.CancelScope(shield=True):
            for h in pinned:
                self.store.release_layer(h)
            await self.store.gc_layers(pinned)

    # ------------------------------------------------------------------ manifests
    async def _open(self) -> tuple[RegistryClient, str, M.ImageManifest]:
        """A client on the registry that serves the image, and its manifest. Docker Hub
        images are asked of the daemon's mirrors first (``AIORUN_REGISTRY_MIRRORS``, as
        Docker's ``registry-mirrors``; no credentials are sent to a mirror); a mirror that
        fails or lacks the image is skipped, with a log line."""
        remote = self.target.remote
        hosts: list[tuple[str, bool | None, Credentials | None]] = []
        if remote.registry == DOCKER_HUB:
            hosts += [(m.host, m.insecure, None)
                      for m in parse_mirrors(os.environ.get(MIRRORS_ENV, ""))]
        hosts.append((remote.api_host, self.insecure, self.credentials))
        for i, (host, insecure, creds) in enumerate(hosts):
            last = i == len(hosts) - 1
            try:
                rc = RegistryClient(host, credentials=creds, insecure=insecure)
            except RegistryUnavailable:
                if last:
                    raise
                continue
            try:
                mdigest, man = await self._resolve_manifest(rc)
                return rc, mdigest, man
            except (RegistryUnavailable, RegistryUnauthorized, NotFound) as exc:
                await rc.aclose()
                if last:
                    raise
                log.warning("registry mirror %s: %s; trying the next", host, exc)
            except BaseException:
                await rc.aclose()
                raise
        raise AssertionError("unreachable: the last host raises")

    async def _resolve_manifest(self, rc: RegistryClient) -> tuple[str, M.ImageManifest]:
        """The image manifest to pull and the digest recorded in RepoDigests (the list's
        digest when the reference named a list, as Docker records it)."""
        remote = self.target.remote
        body, ctype = await self._get_manifest(rc, remote.reference)
        top_digest = oci.digest(body)
        if remote.digest and top_digest != remote.digest:
            raise DigestMismatch(f"manifest digest mismatch: asked for {remote.digest}, the "
                                 f"registry sent {top_digest}")
        doc = M.parse(body, ctype)
        if isinstance(doc, M.ManifestIndex):
            desc = doc.choose(self.platform)
            body, ctype = await self._get_manifest(rc, desc.digest)
            if oci.digest(body) != desc.digest:
                raise DigestMismatch(f"manifest digest mismatch for {self.platform}: expected "
                                     f"{desc.digest}, got {oci.digest(body)}")
            doc = M.parse(body, ctype)
            if not isinstance(doc, M.ImageManifest):
                raise InvalidArgument("malformed manifest list: an entry is itself a list")
        return top_digest, doc

    async def _get_manifest(self, rc: RegistryClient, reference: str) -> tuple[bytes, str]:
        remote = self.target.remote
        try:
            resp = await rc.request("GET", f"/v2/{remote.repository}/manifests/{reference}",
                                    scope=remote.scope("pull"), headers={"Accept": M.ACCEPT},
                                    stream=True)
        except RegistryUnauthorized:
            if self.credentials is not None:      # credentials given and refused: say so
                raise
            # anonymous and refused: Docker cannot tell a private repository from a
            # missing one either, and says so (a 404 docker-py maps to ImageNotFound)
            raise self._access_denied("unauthorized: authentication required") from None
        try:
            if resp.status_code in (404, 403):
                raise await self._not_found(resp)
            await RegistryClient.check(resp, f"manifest {remote.repository}:{reference}")
            body = await _read_limited(resp, MAX_DOCUMENT, "manifest")
            return body, resp.headers.get("content-type", "")
        finally:
            await resp.aclose()

    async def _not_found(self, resp: httpx.Response) -> AiorunError:
        """Docker's wording: an unknown or forbidden repository is "pull access denied", an
        unknown tag "manifest for X not found"."""
        await resp.aread()
        code = message = ""
        try:
            first = resp.json()["errors"][0]
            code, message = str(first["code"]), str(first.get("message") or "")
        except (ValueError, KeyError, IndexError, TypeError):
            pass
        t = self.target
        if code == "MANIFEST_UNKNOWN":
            return NotFound(f"manifest for {t.display} not found: manifest unknown: "
                            "manifest unknown")
        if resp.status_code == 403 or code in ("NAME_UNKNOWN", "DENIED", "UNAUTHORIZED"):
            detail = f"{code.lower()}: {message}" if code else "denied: requested access to " \
                "the resource is denied"
            return self._access_denied(detail)
        return NotFound(f"manifest for {t.display} not found")

    def _access_denied(self, detail: str) -> NotFound:
        t = self.target
        return NotFound(f"pull access denied for {t.ref.repo}, repository does not exist or "
                        f"may require 'docker login' (run `aiorun login {t.remote.registry}`)"
                        f": {detail}")

    async def _fetch_small(self, rc: RegistryClient, digest: str, what: str,
                           size: int) -> bytes:
        if size > MAX_DOCUMENT:
            raise InvalidArgument(f"{what} {digest} is too large ({size} bytes)")
        remote = self.target.remote
        resp = await rc.request("GET", f"/v2/{remote.repository}/blobs/{digest}",
                                scope=remote.scope("pull"), stream=True)
        try:
            await RegistryClient.check(resp, f"{what} {digest}")
            body = await _read_limited(resp, MAX_DOCUMENT, what)
        finally:
            await resp.aclose()
        if oci.digest(body) != digest:
            raise DigestMismatch(f"{what} digest mismatch: expected {digest}, got "
                                 f"{oci.digest(body)}")
        return body

    # ------------------------------------------------------------------ layers
    async def _layers(self, rc: RegistryClient, man: M.ImageManifest, diff_ids: list[str],
                      send: MemoryObjectSendStream[Any]) -> None:
        """Every layer, in parallel; progress and the first error go to ``send``."""
        limit = anyio.Semaphore(PARALLEL)
        async with send:
            try:
                async with anyio.create_task_group() as tg:
                    seen: set[str] = set()
                    for desc, h in zip(man.layers, diff_ids):
                        if h in seen:
                            continue
                        seen.add(h)
                        await send.send(_progress("Pulling fs layer", _short(desc.digest)))
                        tg.start_soon(self._layer, rc, desc, h, limit, send)
            except Exception as exc:      # the first failure ends the pull
                err: BaseException = exc
                while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
                    err = err.exceptions[0]
                await send.send(err)

    async def _layer(self, rc: RegistryClient, desc: M.Descriptor, diff_id: str,
                     limit: anyio.Semaphore, send: MemoryObjectSendStream[Any]) -> None:
        ident = _short(desc.digest)
        if self.store.pin_layer(diff_id):
            self._pinned.append(diff_id)
            await send.send(_progress("Already exists", ident))
            return
        spool = self.tmp_dir / f"{SPOOL_PREFIX}pull-{secrets.token_hex(8)}"
        try:
            async with limit:
                await self._download(rc, desc, spool, send)
            await send.send(_progress("Extracting", ident, 0, desc.size))
            got = await self.store.add_layer(spool)
            self._pinned.append(got)
            if got != diff_id:
                raise DigestMismatch(
                    f"layer {desc.digest}: its content has diff ID sha256:{got}, the image "
                    f"config says sha256:{diff_id}; the layer was discarded")
            await send.send(_progress("Extracting", ident, desc.size, desc.size))
            await send.send(_progress("Pull complete", ident))
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: spool.unlink(missing_ok=True))

    async def _download(self, rc: RegistryClient, desc: M.Descriptor, spool: Path,
                        send: MemoryObjectSendStream[Any]) -> None:
        """The blob into ``spool``, verified; resumed with ``Range`` after a dropped
        connection (up to :data:`ATTEMPTS` tries)."""
        remote = self.target.remote
        ident = _short(desc.digest)
        sha = hashlib.sha256()
        done = 0
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        f: BinaryIO = await anyio.to_thread.run_sync(open, spool, "wb")
        try:
            for attempt in range(1, ATTEMPTS + 1):
                headers = {"Range": f"bytes={done}-"} if done else {}
                try:
                    resp = await rc.request("GET", f"/v2/{remote.repository}/blobs/"
                                            f"{desc.digest}", scope=remote.scope("pull"),
                                            headers=headers, stream=True)
                except RegistryUnavailable:
                    if attempt == ATTEMPTS:
                        raise
                    log.info("blob %s: retrying (attempt %d)", desc.digest, attempt + 1)
                    await anyio.sleep(0.2 * attempt)
                    continue
                try:
                    await RegistryClient.check(resp, f"layer {desc.digest}")
                    if done and resp.status_code != 206:       # no resume: start over
                        sha, done = hashlib.sha256(), 0
                        await anyio.to_thread.run_sync(f.seek, 0)
                        await anyio.to_thread.run_sync(f.truncate)
                    reported = 0
                    # what arrived is kept even when the connection drops mid-way (the
                    # resume starts after it), written in batches of PROGRESS_STEP
                    pending: list[bytes] = []
                    try:
                        async for chunk in resp.aiter_raw():
                            done += len(chunk)
                            if done > desc.size:
                                raise DigestMismatch(
                                    f"layer {desc.digest}: the registry sent more than its "
                                    f"size ({desc.size} bytes); the partial layer was "
                                    "discarded")
                            sha.update(chunk)
                            pending.append(chunk)
                            if done - reported >= PROGRESS_STEP or done == desc.size:
                                reported = done
                                await anyio.to_thread.run_sync(f.write, b"".join(pending))
                                pending.clear()
                                await send.send(_progress("Downloading", ident, done,
                                                          desc.size))
                    finally:
                        if pending:
                            await anyio.to_thread.run_sync(f.write, b"".join(pending))
                    break
                except httpx.TransportError as exc:
                    if attempt == ATTEMPTS:
                        raise RegistryUnavailable(f"downloading layer {desc.digest} failed "
                                                  f"after {ATTEMPTS} attempts: {exc}") from None
                    log.info("blob %s: connection dropped at %d bytes (%s); resuming",
                             desc.digest, done, exc)
                finally:
                    await resp.aclose()
        finally:
            await anyio.to_thread.run_sync(f.close)
        await send.send(_progress("Verifying Checksum", ident))
        got = "sha256:" + sha.hexdigest()
        if got != desc.digest:
            raise DigestMismatch(f"digest mismatch for layer {desc.digest}: got {got}; the "
                                 "partial layer was discarded")
        await send.send(_progress("Download complete", ident))


def _parse_config(raw: bytes, man: M.ImageManifest) -> dict[str, Any]:
    import json
    try:
        config = oci.validate_config(json.loads(raw))
    except ValueError:
        raise InvalidArgument(f"image config {man.config.digest} is not JSON") from None
    n = len(oci.diff_ids_hex(config))
    if n != len(man.layers):
        raise InvalidArgument(f"image config {man.config.digest} lists {n} diff IDs but the "
                              f"manifest has {len(man.layers)} layers")
    return config


async def _read_limited(resp: httpx.Response, limit: int, what: str) -> bytes:
    buf = bytearray()
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) > limit:
            raise InvalidArgument(f"{what} is larger than {limit} bytes")
    return bytes(buf)


async def distribution_inspect(ref: str, *, credentials: Credentials | None = None,
                               insecure: bool | None = None) -> dict[str, Any]:
    """Docker's ``GET /distribution/{name}/json``: the descriptor of what ``ref`` names on
    its registry and the platforms it offers."""
    p = Puller.__new__(Puller)       # only the manifest helpers are used
    p.target, p.credentials = target(ref), credentials
    remote = p.target.remote
    async with RegistryClient(remote.api_host, credentials=credentials,
                              insecure=insecure) as rc:
        body, ctype = await p._get_manifest(rc, remote.reference)
        doc = M.parse(body, ctype)
        platforms: list[dict[str, str]] = []
        if isinstance(doc, M.ManifestIndex):
            for d in doc.manifests:
                if d.platform is not None:
                    plat = {"architecture": d.platform.architecture, "os": d.platform.os}
                    if d.platform.variant:
                        plat["variant"] = d.platform.variant
                    platforms.append(plat)
        else:
            import json
            config = json.loads(await p._fetch_small(rc, doc.config.digest, "image config",
                                                     doc.config.size))
            platforms.append({"architecture": str(config.get("architecture", "")),
                              "os": str(config.get("os", ""))})
    mt = doc.media_type
    return {"Descriptor": {"mediaType": mt, "digest": oci.digest(body), "size": len(body)},
            "Platforms": platforms}
