"""The image store: content-addressed configs, shared layers, tags.

Layout under ``<root>/images``::

    configs/sha256/<hex>     image configs, exact bytes (the image id is their sha256)
    layers/<diffid>.tar      each layer's uncompressed tar, exactly as added (``save`` needs
                             the bytes whose digest is the diff_id); the storage driver holds
                             the unpacked copy under the same id
    layers/<diffid>.json     {"size": content bytes}
    repositories.json        {"Repositories": {repo: {"repo:tag": "sha256:<id>"}}}
    pending/<hex>            an image being created: removed at start() if it got no tag

Invariants
    * A layer is referenced iff some image config lists its diff_id; there is no separate
      refcount to drift. Layers nobody references are removed by ``remove`` and by ``start``
      (orphans of a crash). Layers added by ``add_layer`` are pinned in memory until
      ``create_image`` uses them (or the daemon restarts), so a concurrent ``rmi`` cannot
      free a layer a commit/build is about to use.
    * Every file is written to a temporary name, fsynced and renamed: a crash leaves either the
      old or the new state, plus temp files that ``start`` removes.

Rooms: the layer files, their sizes and pins are :class:`~aiorun.images.layerfiles.LayerFiles`;
this module keeps the images and tags and decides which layers are referenced.

Concurrency: mutations hold one ``anyio.Lock``; blocking work runs in worker threads.
``resolve`` and ``list`` are in-memory and synchronous: call them without ``await``.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import anyio
import anyio.to_thread

from aiorun.config import Paths
from aiorun.drivers.storage import StorageDriver
from aiorun.errors import Conflict, InvalidArgument, NotFound, Unavailable
from aiorun.images import oci
from aiorun.images.limits import LimitSettings
# the layer files (and the store's file helpers) live in .layerfiles; importable from here
from aiorun.images.layerfiles import (SPOOL_PREFIX, TMP_MARK, LayerFiles,  # noqa: F401
                                      LayerSource, remove_path, write_atomic)
from aiorun.images import reference as R
from aiorun.images.distribution import DistributionMeta

log = logging.getLogger(__name__)

@dataclass
class Image:
    """An image as the engine sees it (see docs/contracts.md)."""

    id: str                         # "sha256:<hex>"
    config: dict[str, Any]
    repo_tags: list[str]
    created: str
    size: int
    layers: list[str]               # diff_id hex, bottom first
    repo_digests: list[str] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def hex(self) -> str:
        return self.id.removeprefix("sha256:")


class ImageStore:
    def __init__(self, paths: Paths, storage: StorageDriver, events: Any) -> None:
        self.paths = paths
        self.storage = storage
        self.events = events
        self.root = paths.images
        self.configs_dir = self.root / "configs" / "sha256"
        self.layers_dir = self.root / "layers"
        self._layers = LayerFiles(self.layers_dir, paths.tmp, storage)
        #: how big a layer may expand (``serve --max-layer-size``; see aiorun.images.limits)
        self.layer_limits = LimitSettings.from_env()
        self.pending_dir = self.root / "pending"
        self.repos_file = self.root / "repositories.json"
        #: set by the engine: True when a container uses the image id ("sha256:<hex>")
        self.in_use: Callable[[str], bool] = lambda image_id: False
        self._images: dict[str, Image] = {}
        self._raw: dict[str, bytes] = {}
        self._tags: dict[str, str] = {}            # "repo:tag" -> image id
        #: RepoDigests and blob digest -> diff_id (registry pulls and pushes)
        self.dist = DistributionMeta(self.root / "distribution.json")
        self._lock = anyio.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await anyio.to_thread.run_sync(self._start_sync)

    async def stop(self) -> None:
        return None

    def _start_sync(self) -> None:
        for d in (self.configs_dir, self.layers_dir, self.pending_dir, self.paths.tmp):
            d.mkdir(parents=True, exist_ok=True)
        try:
            self.storage.cleanup()
        except Exception:
            log.exception("storage cleanup failed")
        # temp files from a crash mid-write / mid-import
        for d in (self.root, self.configs_dir, self.layers_dir):
            for e in os.scandir(d):
                if TMP_MARK in e.name:
                    remove_path(Path(e.path))
        for e in os.scandir(self.paths.tmp):
            if e.name.startswith(SPOOL_PREFIX):
                remove_path(Path(e.path))
        # configs
        for e in os.scandir(self.configs_dir):
            raw = Path(e.path).read_bytes()
            if oci.sha256_hex(raw) != e.name:
                log.warning("image config %s is corrupt; removing it", e.name)
                os.unlink(e.path)
                continue
            try:
                cfg = oci.validate_config(json.loads(raw))
            except (ValueError, InvalidArgument) as exc:
                log.warning("image config %s is invalid (%s); removing it", e.name, exc)
                os.unlink(e.path)
                continue
            self._raw["sha256:" + e.name] = raw
            self._images["sha256:" + e.name] = self._make_image("sha256:" + e.name, cfg)
        # tags
        for name, iid in self._read_repos().items():
            if iid in self._images:
                self._tags[name] = iid
        # an image whose creation did not finish (no tag written): remove it
        for e in os.scandir(self.pending_dir):
            iid = "sha256:" + e.name
            if iid in self._images and not self._tags_of(iid):
                self._forget_image(iid)
            os.unlink(e.path)
        self._refresh_tags()
        try:
            self._save_repos(self._tags)
        except OSError as exc:   # the file on disk is still valid; the next change retries
            log.error("cannot rewrite %s at start: %s", self.repos_file, exc)
        # layers: remove orphans, re-apply referenced layers the driver lacks
        referenced = self._referenced()
        on_disk = self._layers.on_disk()
        in_driver = set(self._layers.in_driver())
        for hex_ in (on_disk | in_driver) - referenced:
            log.info("removing orphan layer %s", hex_)
            self._layers.drop(hex_)
        for hex_ in referenced:
            self._layers.reapply(hex_)
        for iid, img in self._images.items():
            img.size = self._image_size(img.layers)
        self.dist.load(set(self._images), referenced)
        self._refresh_tags()

    # ------------------------------------------------------------------ queries
    def resolve(self, ref_or_id: str) -> Image:
        """An image by ``name[:tag]``, full id, or unique id prefix (NotFound otherwise)."""
        ref = (ref_or_id or "").strip()
        if not ref:
            raise NotFound("no such image: ''")
        if ref in self._images:
            return self._images[ref]
        try:
            r = R.parse(ref)
        except InvalidArgument:
            r = None
        if r is not None and r.digest is not None:
            iid = self.dist.find(f"{r.repo}@{r.digest}")
            if iid is not None and iid in self._images:
                return self._images[iid]
        elif r is not None and r.tag is not None:
            iid = self._tags.get(r.name_tag)
            if iid is not None:
                return self._images[iid]
        prefix = ref.removeprefix("sha256:")
        if prefix and all(c in "0123456789abcdef" for c in prefix):
            hits = [i for i in self._images if i[7:].startswith(prefix)]
            if len(hits) == 1:
                return self._images[hits[0]]
            if len(hits) > 1:
                raise InvalidArgument(f"image id prefix {prefix!r} is ambiguous "
                                      f"({len(hits)} images match)")
        raise NotFound(f"No such image: {ref}")

    def list(self) -> builtins.list[Image]:
        """All images, newest first (Docker's order)."""
        imgs = sorted(self._images.values(), key=lambda i: oci.parse_time(i.created), reverse=True)
        return imgs

    def config_bytes(self, image_id: str) -> bytes:
        return self._raw[image_id]

    def layer_tar(self, diff_id: str) -> Path:
        """The stored uncompressed tar of a layer (its sha256 is the diff_id)."""
        return self._layers.tar(diff_id)

    def layer_size(self, diff_id: str) -> int:
        return self._layers.size(diff_id)

    # ------------------------------------------------------------------ layers
    async def add_layer(self, tar_stream: LayerSource, take: bool = False) -> str:
        """Store an uncompressed (or compressed: it is sniffed) layer tar; return its diff_id
        hex. Atomic and deduplicated by digest. The layer stays pinned until
        ``create_image`` lists it. ``take``: ``tar_stream`` is a path the store may move
        into place (it is gone afterwards; see :meth:`LayerFiles.add`)."""
        def add() -> tuple[str, int]:
            return self._layers.add(tar_stream, self.layer_limits.resolve(self.paths.root),
                                    take=take)
        hex_, size = await anyio.to_thread.run_sync(add)
        self._layers.sizes[hex_] = size
        self._layers.pin(hex_)
        return hex_

    def pin_layer(self, diff_id: str) -> bool:
        """Pin a stored layer as ``add_layer`` would (a pull that needs it does not fetch it
        again); False when the store does not have it."""
        h = diff_id.removeprefix("sha256:")
        if not self._layers.has_tar(h):
            return False
        self._layers.pin(h)
        self._layers.remember_size(h)
        return True

    async def add_repo_digest(self, image_id: str, repo_digest: str,
                              blobs: dict[str, str] | None = None) -> None:
        """Record ``repo@sha256:<manifest digest>`` for an image (a pull or push), and
        ``blobs`` (compressed digest -> diff_id hex) of its layers."""
        async with self._lock:
            if image_id not in self._images:
                raise NotFound(f"No such image: {image_id}")
            self.dist.add_repo_digest(image_id, repo_digest)
            self.dist.blobs.update(blobs or {})
            await anyio.to_thread.run_sync(self.dist.save)
            self._refresh_tags()

    def release_layer(self, diff_id: str) -> None:
        """Unpin a layer added with ``add_layer`` that will not be used after all."""
        self._layers.unpin(diff_id)

    # ------------------------------------------------------------------ images
    async def create_image(self, config: dict[str, Any], tags: Iterable[str] = ()) -> Image:
        """Store ``config`` (rootfs.diff_ids + history set by the caller) and tag it.

        Every layer must have been added. Atomic; emits no event (the caller does)."""
        oci.validate_config(config)
        raw = oci.canonical_json(config)
        return await self._register(raw, config, list(tags))

    async def register_raw(self, raw: bytes, config: dict[str, Any], tags: Iterable[str] = ()) -> Image:
        """Like ``create_image`` but keeps the config's exact bytes (``load``: ids must match
        what other tools computed)."""
        oci.validate_config(config)
        return await self._register(raw, config, list(tags))

    async def _register(self, raw: bytes, config: dict[str, Any], tags: builtins.list[str]) -> Image:
        names = [R.parse(t).name_tag for t in tags]
        iid = oci.digest(raw)
        hexes = oci.diff_ids_hex(config)
        async with self._lock:
            missing = [h for h in hexes if not self._layers.has_tar(h)]
            if missing:
                raise NotFound(f"image config lists layer sha256:{missing[0]} that is not in "
                               "the store (add it with add_layer first)")
            await anyio.to_thread.run_sync(self._write_image_sync, iid, raw, bool(names))
            if names:
                # tags on disk first: if that fails the image stays pending (start() drops
                # it) and the store in memory is unchanged
                await self._commit_tags({**self._tags, **{n: iid for n in names}})
            self._raw[iid] = raw
            self._images[iid] = self._make_image(iid, config)
            self._refresh_tags()
            (self.pending_dir / iid[7:]).unlink(missing_ok=True)
            for h in hexes:
                self.release_layer(h)
            return self._images[iid]

    def _write_image_sync(self, iid: str, raw: bytes, will_tag: bool) -> None:
        path = self.configs_dir / iid[7:]
        if will_tag and not path.exists():
            # until the tags are written this image is "being created": start() drops it
            write_atomic(self.pending_dir / iid[7:], b"")
        if not path.exists():
            write_atomic(path, raw)

    async def tag(self, ref: str, new_ref: str, *, emit: bool = True) -> str:
        """Tag the image ``ref`` resolves to as ``new_ref``; return the normalised tag."""
        name = R.parse(new_ref).name_tag
        async with self._lock:
            img = self.resolve(ref)
            await self._commit_tags({**self._tags, name: img.id})
            self._refresh_tags()
        if emit:
            self._emit("tag", img.id, name=name)
        return name

    async def remove(self, ref: str, force: bool = False, prune: bool = True
                     ) -> builtins.list[dict[str, str]]:
        """Docker's ``rmi``: untag, and delete the image when no tag is left.

        Refuses (Conflict) an image a container uses unless ``force``; with ``force`` such
        an image is only untagged (its layers stay for the container). Layers no image
        references any more are freed. Returns Docker's ``[{"Untagged"|"Deleted": ...}]``.
        """
        async with self._lock:
            img = self.resolve(ref)
            out: builtins.list[dict[str, str]] = []
            by_name = False
            try:
                r = R.parse(ref)
                by_name = r.tag is not None and self._tags.get(r.name_tag) == img.id
                name = r.name_tag
            except InvalidArgument:
                name = ""
            tags = self._tags_of(img.id)
            used = self.in_use(img.id)
            delete = False
            if by_name and len(tags) > 1:
                untag = [name]
            elif by_name:
                if used and not force:
                    raise Conflict(f'conflict: unable to remove repository reference "{ref}" '
                                   f"(must force) - container is using its referenced image "
                                   f"{img.short_id}")
                untag, delete = [name], not used
            else:
                if len(tags) > 1 and not force:
                    raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) "
                                   "- image is referenced in multiple repositories")
                if used and not force:
                    raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) "
                                   "- image is being used by a container")
                untag, delete = tags, not used
            # the tags on disk change first; a failure there leaves everything as it was
            if untag:
                await self._commit_tags({n: i for n, i in self._tags.items() if n not in untag})
            out += [{"Untagged": t} for t in untag]
            if delete:
                out += await self._delete(img)
            self._refresh_tags()
        for entry in out:
            if "Untagged" in entry:
                self._emit("untag", img.id, name=entry["Untagged"])
            elif entry["Deleted"] == img.id:
                self._emit("delete", img.id, name=ref)
        return out

    async def _delete(self, img: Image) -> builtins.list[dict[str, str]]:
        self._forget_image(img.id, unlink=False)
        await anyio.to_thread.run_sync(lambda: (self.configs_dir / img.hex).unlink(missing_ok=True))
        out = [{"Deleted": img.id}]
        referenced = self._referenced()
        self.dist.forget_image(img.id)
        for h in dict.fromkeys(img.layers):
            if h not in referenced:
                await anyio.to_thread.run_sync(self._layers.drop, h)
                self.dist.forget_layer(h)
                out.append({"Deleted": f"sha256:{h}"})
        try:
            await anyio.to_thread.run_sync(self.dist.save)
        except OSError as exc:   # stale entries are dropped at the next start
            log.warning("cannot save %s: %s", self.dist.path, exc)
        return out

    async def prune(self, all_images: bool = False,
                    filters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Remove dangling images (or, with ``all_images``, every unused image). ``filters``
        (the API's; :mod:`aiorun.images.prune_filters`) decide both when given."""
        from aiorun.images.prune_filters import image_prune_plan
        import time
        matches = None
        if filters is not None:
            all_images, matches = image_prune_plan(filters, time.time())
        deleted: builtins.list[dict[str, str]] = []
        reclaimed = 0
        for img in list(self._images.values()):
            if self.in_use(img.id) or (not all_images and img.repo_tags):
                continue
            labels = (img.config.get("config") or {}).get("Labels") or {}
            if matches is not None and not matches(oci.parse_time(img.created), labels):
                continue
            reclaimed += img.size
            try:
                deleted += await self.remove(img.id, force=True)
            except (NotFound, Conflict):
                continue
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    async def import_tar(self, stream: LayerSource,
                         tags: Iterable[str] = (), changes: Iterable[str] = (),
                         message: str = "", source: str = "-", take: bool = False) -> Image:
        """``docker import``: a rootfs tarball (any supported compression) as a one-layer image.
        ``take``: as for :meth:`add_layer`."""
        tags = [R.parse(t).name_tag for t in tags]   # bad names fail before any work
        hex_ = await self.add_layer(stream, take=take)
        try:
            hist = {"created": oci.now_rfc3339(), "created_by": "",
                    "comment": message or f"Imported from {source}"}
            cfg = oci.new_config([hex_], [hist], oci.apply_changes({}, list(changes)),
                                 created=hist["created"])
            if message:
                cfg["comment"] = message
            img = await self.create_image(cfg, tags)
        except BaseException:
            self.release_layer(hex_)
            await self.gc_layers([hex_])
            raise
        self._emit("import", img.id, name=tags[0] if tags else img.id)
        return img

    async def gc_layers(self, candidates: Iterable[str]) -> None:
        """Free the given layers if no image references them and nobody pinned them."""
        async with self._lock:
            referenced = self._referenced()
            for h in candidates:
                h = h.removeprefix("sha256:")
                if h not in referenced:
                    await anyio.to_thread.run_sync(self._layers.drop, h)

    # ------------------------------------------------------------------ history/inspect
    def history(self, ref: str) -> builtins.list[dict[str, Any]]:
        """Docker's ``GET /images/{name}/history`` (newest first)."""
        img = self.resolve(ref)
        hist = img.config.get("history") or []
        layers = list(img.layers)
        rows = []
        li = 0
        for h in hist:
            empty = bool(h.get("empty_layer"))
            size = 0
            if not empty and li < len(layers):
                size = self.layer_size(layers[li])
                li += 1
            rows.append({"Id": "<missing>", "Created": int(oci.parse_time(h.get("created"))),
                         "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                         "Comment": h.get("comment", "")})
        if not rows:  # no history at all: one row per layer
            for lh in layers:
                rows.append({"Id": "<missing>", "Created": int(oci.parse_time(img.created)),
                             "CreatedBy": "", "Tags": None, "Size": self.layer_size(lh),
                             "Comment": ""})
        rows.reverse()
        if rows:
            rows[0]["Id"] = img.id
            rows[0]["Tags"] = list(img.repo_tags) or None
        return rows

    # ------------------------------------------------------------------ internals
    def _emit(self, action: str, iid: str, **attrs: Any) -> None:
        if self.events is not None:
            try:
                self.events.emit("image", action, iid, attrs)
            except Exception:
                log.exception("event emit failed")

    def _make_image(self, iid: str, cfg: dict[str, Any]) -> Image:
        hexes = oci.diff_ids_hex(cfg)
        for h in hexes:
            self._layers.remember_size(h)
        return Image(id=iid, config=cfg, repo_tags=self._tags_of(iid),
                     created=cfg.get("created") or "", size=self._image_size(hexes),
                     layers=hexes)

    def skipped_devices(self, diff_id: str) -> int:
        """How many device nodes the layer's extraction skipped (see
        :mod:`aiorun.images.layers`: the runtime provides ``/dev``)."""
        return self._layers.skipped_devices(diff_id)

    def _image_size(self, hexes: builtins.list[str]) -> int:
        return sum(self._layers.sizes.get(h, 0) for h in dict.fromkeys(hexes))

    def _tags_of(self, iid: str) -> builtins.list[str]:
        return sorted(n for n, i in self._tags.items() if i == iid)

    def _refresh_tags(self) -> None:
        for iid, img in self._images.items():
            img.repo_tags = self._tags_of(iid)
            img.repo_digests = self.dist.of(iid)

    def _forget_image(self, iid: str, unlink: bool = True) -> None:
        self._images.pop(iid, None)
        self._raw.pop(iid, None)
        for n in [n for n, i in self._tags.items() if i == iid]:
            del self._tags[n]
        if unlink:
            (self.configs_dir / iid[7:]).unlink(missing_ok=True)

    def _referenced(self) -> set[str]:
        refs = set(self._layers.pins)
        for img in self._images.values():
            refs.update(img.layers)
        return refs

    async def _commit_tags(self, tags: dict[str, str]) -> None:
        """Make ``tags`` the store's tags: written atomically first, then adopted in memory.
        If the write fails nothing changes and the caller gets a clear error."""
        try:
            await anyio.to_thread.run_sync(self._save_repos, tags)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise Unavailable(f"{reason}: cannot save the image tags "
                              f"({self.repos_file}); nothing was changed") from exc
        self._tags = tags

    def _save_repos(self, tags: dict[str, str]) -> None:
        repos: dict[str, dict[str, str]] = {}
        for name, iid in sorted(tags.items()):
            repo = name.rpartition(":")[0]
            repos.setdefault(repo, {})[name] = iid
        write_atomic(self.repos_file, json.dumps({"Repositories": repos}, indent=1).encode())

    def _read_repos(self) -> dict[str, str]:
        """``repositories.json`` as {"repo:tag": id}. A corrupt file does not stop the
        daemon: it is moved aside (``.corrupt-<time>``), logged, and the tags start empty."""
        try:
            raw = self.repos_file.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            repos = json.loads(raw)["Repositories"]
            return {str(name): str(iid) for tags in repos.values()
                    for name, iid in tags.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.repos_file.with_name(
                f"{self.repos_file.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
            os.replace(self.repos_file, aside)
            log.error("image tags file %s is corrupt (%s: %s); moved it to %s and started "
                      "with no tags (the images are kept: tag them again)",
                      self.repos_file, type(exc).__name__, exc, aside)
            return {}
