"""``save`` / ``load``: the docker-archive format, and OCI image layouts.

``save`` writes what ``docker save`` writes since Docker 25: an OCI image layout
(``oci-layout``, ``index.json``, ``blobs/sha256/...`` with uncompressed layer blobs whose
digest is the diff_id) plus Docker's ``manifest.json`` and ``repositories``, so both
docker-archive readers (``docker load``, ``podman load``, ``skopeo ...docker-archive:``)
and OCI readers understand it.

``load`` reads (plain or compressed):
  * docker-archive with ``manifest.json`` — layers as ``<hex>/layer.tar`` (Docker < 25,
    skopeo, podman) or ``blobs/sha256/<hex>`` (Docker >= 25);
  * a bare OCI layout (``index.json``, nested indexes followed, the platform matching this
    host chosen), layers plain, gzip or zstd.
Every layer's digest is checked against the config's ``rootfs.diff_ids``. All layers of all
images are added before any image becomes visible: an error mid-load leaves no image and
frees the layers it added.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
from pathlib import Path
from typing import Any, Awaitable, BinaryIO, Callable, Iterable

import anyio
import anyio.to_thread

from aiorun.core.progressbar import bar
from aiorun.errors import InvalidArgument
from aiorun.images import layers as L
from aiorun.images import oci
from aiorun.images import reference as R

# ----------------------------------------------------------------------------- save


def _ref_tags(store: Any, ref: str) -> tuple[Any, list[str]]:
    img = store.resolve(ref)
    try:
        r = R.parse(ref)
        if r.tag and store._tags.get(r.name_tag) == img.id:
            return img, [r.name_tag]
    except InvalidArgument:
        pass
    return img, []


def save_sync(store: Any, refs: Iterable[str], out: BinaryIO) -> list[str]:
    """Write a docker-archive (OCI layout + manifest.json) of ``refs`` to ``out``.

    Blocking; returns the image ids saved."""
    wanted: dict[str, list[str]] = {}
    images: dict[str, Any] = {}
    for ref in refs:
        img, tags = _ref_tags(store, ref)
        images[img.id] = img
        lst = wanted.setdefault(img.id, [])
        lst += [t for t in tags if t not in lst]
    if not images:
        raise InvalidArgument("no images to save")
    tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
    written: set[str] = set()

    def add_bytes(name: str, data: bytes) -> None:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = 0o644
        tar.addfile(ti, io.BytesIO(data))

    def add_dir(name: str) -> None:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        tar.addfile(ti)

    add_dir("blobs")
    add_dir("blobs/sha256")
    manifest_json: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for iid, img in images.items():
        layer_descs = []
        for h in img.layers:
            path = store.layer_tar(h)
            size = path.stat().st_size
            if h not in written:
                ti = tarfile.TarInfo(f"blobs/sha256/{h}")
                ti.size = size
                ti.mode = 0o644
                with open(path, "rb") as f:
                    tar.addfile(ti, f)
                written.add(h)
            layer_descs.append((f"sha256:{h}", size))
        raw = store.config_bytes(iid)
        if iid[7:] not in written:
            add_bytes(f"blobs/sha256/{iid[7:]}", raw)
            written.add(iid[7:])
        man = oci.canonical_json(oci.manifest(iid, len(raw), layer_descs))
        mdig = oci.digest(man)
        if mdig[7:] not in written:
            add_bytes(f"blobs/sha256/{mdig[7:]}", man)
            written.add(mdig[7:])
        tags = wanted[iid]
        entries: list[str | None] = list(tags) or [None]   # None: one untagged entry
        for t in entries:
            desc: dict[str, Any] = {"mediaType": oci.MT_OCI_MANIFEST, "digest": mdig,
                                    "size": len(man)}
            if t:
                r = R.parse(t)
                desc["annotations"] = {oci.ANNOT_CONTAINERD_NAME: f"{r.full_repo}:{r.tag}",
                                       oci.ANNOT_REF_NAME: r.tag}
                if img.layers:
                    repositories.setdefault(r.repo, {})[r.tag or "latest"] = img.layers[-1]
            index.append(desc)
        manifest_json.append({"Config": f"blobs/sha256/{iid[7:]}", "RepoTags": tags or None,
                              "Layers": [f"blobs/sha256/{h}" for h in img.layers]})
    add_bytes("index.json", json.dumps({"schemaVersion": 2, "mediaType": oci.MT_OCI_INDEX,
                                        "manifests": index}).encode())
    add_bytes("manifest.json", json.dumps(manifest_json).encode())
    add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    if repositories:
        add_bytes("repositories", json.dumps(repositories).encode())
    tar.close()
    return list(images)


async def save(store: Any, refs: list[str], out: BinaryIO) -> list[str]:
    ids = await anyio.to_thread.run_sync(save_sync, store, refs, out)
    for iid in ids:
        store._emit("save", iid, name=iid)
    return ids


async def save_to_tempfile(store: Any, refs: list[str]) -> Path:
    """Save into a temp file under ``<root>/tmp`` (caller streams and deletes it)."""
    for r in refs:
        store.resolve(r)   # NotFound before any work
    path = store.paths.tmp / f"aiorun-layer-save-{secrets.token_hex(6)}.tar"
    try:
        with open(path, "wb") as f:
            await save(store, refs, f)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------- load


class _Archive:
    """Random access to a spooled (decompressed) archive, by cleaned member name."""

    def __init__(self, path: Path) -> None:
        try:
            self.tar = tarfile.open(path, "r:")
        except tarfile.TarError as exc:
            raise InvalidArgument(f"invalid image archive: {exc}") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for m in self.tar.getmembers():
                try:
                    self.members[L.clean_name(m.name)] = m
                except InvalidArgument:
                    continue  # never addressed: names come from manifests, cleaned the same way
        except tarfile.TarError as exc:
            raise InvalidArgument(f"corrupt or truncated image archive: {exc}") from None

    def has(self, name: str) -> bool:
        return L.clean_name(name) in self.members

    def open(self, name: str) -> BinaryIO:
        key = L.clean_name(name)
        m = self.members.get(key)
        if m is None:
            raise InvalidArgument(f"invalid image archive: {name!r} is missing")
        if not (m.isreg() or m.islnk()):
            raise InvalidArgument(f"invalid image archive: {name!r} is not a regular file")
        f = self.tar.extractfile(m)
        if f is None:
            raise InvalidArgument(f"invalid image archive: cannot read {name!r}")
        return f  # type: ignore[return-value]

    def size(self, name: str) -> int | None:
        """The member's size in bytes (None for a hard link: its target holds the bytes)."""
        m = self.members.get(L.clean_name(name))
        return m.size if m is not None and m.isreg() else None

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        f = self.open(name)
        data = f.read(limit + 1)
        if len(data) > limit:
            raise InvalidArgument(f"invalid image archive: {name!r} is too large")
        return data

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as exc:
            raise InvalidArgument(f"invalid image archive: {name!r} is not JSON: {exc}") from None

    def close(self) -> None:
        self.tar.close()


def _blob(digest: str) -> str:
    algo, _, hex_ = digest.partition(":")
    if algo != "sha256" or len(hex_) != 64 or any(c not in "0123456789abcdef" for c in hex_):
        raise InvalidArgument(f"invalid image archive: unsupported digest {digest!r}")
    return f"blobs/sha256/{hex_}"


def _plan_docker(ar: _Archive) -> list[tuple[bytes, list[str], list[str]]]:
    """[(raw config, layer member names, tags)] from manifest.json."""
    man = ar.json("manifest.json")
    if not isinstance(man, list):
        raise InvalidArgument("invalid image archive: manifest.json is not a list")
    plan = []
    for entry in man:
        if not isinstance(entry, dict) or "Config" not in entry:
            raise InvalidArgument("invalid image archive: manifest.json entry without Config")
        raw = ar.read(entry["Config"])
        layers = list(entry.get("Layers") or [])
        tags = list(entry.get("RepoTags") or [])
        plan.append((raw, layers, tags))
    return plan


def _pick_platform(descs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    arch = oci.go_arch()
    plat = [d for d in descs if isinstance(d.get("platform"), dict)]
    if not plat:
        return descs
    same = [d for d in plat if d["platform"].get("os") == "linux"
            and d["platform"].get("architecture") == arch]
    return same[:1] or plat[:1]


def _plan_oci(ar: _Archive) -> list[tuple[bytes, list[str], list[str]]]:
    index = ar.json("index.json")
    plan = []

    def walk(idx: dict[str, Any], inherited_tags: list[str], depth: int) -> None:
        if depth > 4:
            raise InvalidArgument("invalid image archive: index nesting too deep")
        for desc in _pick_platform(list(idx.get("manifests") or [])):
            ann = desc.get("annotations") or {}
            tags = list(inherited_tags)
            name = ann.get(oci.ANNOT_CONTAINERD_NAME) or ann.get(oci.ANNOT_REF_NAME)
            if name and (":" in name or "/" in name):
                try:
                    tags.append(R.parse(name).name_tag)
                except InvalidArgument:
                    pass
            mt = desc.get("mediaType", "")
            body = ar.json(_blob(desc["digest"]))
            if mt in (oci.MT_OCI_INDEX, oci.MT_DOCKER_LIST) or "manifests" in body:
                walk(body, tags, depth + 1)
                continue
            raw = ar.read(_blob(body["config"]["digest"]))
            layers = [_blob(ld["digest"]) for ld in body.get("layers") or []]
            plan.append((raw, layers, tags))

    walk(index, [], 0)
    return plan


def _loading(diff_id: str, current: int, total: int | None) -> dict[str, Any]:
    """Docker's ``Loading layer`` progress message (the id: the diff_id's first 12)."""
    detail = {"current": current, **({"total": total} if total else {})}
    return {"status": "Loading layer", "id": diff_id[:12], "progressDetail": detail,
            "progress": bar(current, total)}


async def load(store: Any, stream: bytes | BinaryIO | os.PathLike[str] | str,
               progress: Callable[[dict[str, Any]], Awaitable[None]] | None = None
               ) -> list[str]:
    """Load an archive; return Docker's lines ("Loaded image: x:latest" / "Loaded image ID: ...").

    ``progress`` (optional) is awaited with Docker's ``Loading layer`` message before and
    after each layer is stored."""
    tmp = store.paths.tmp / f"aiorun-layer-load-{secrets.token_hex(6)}.tar"
    added: list[str] = []
    try:
        def spool() -> None:
            src: BinaryIO
            if isinstance(stream, (bytes, bytearray)):
                src = io.BytesIO(bytes(stream))
            elif isinstance(stream, (str, os.PathLike)):
                src = open(stream, "rb")
            else:
                src = stream
            with open(tmp, "wb") as f:   # a gzip bomb stops at the free-space bound
                L.spool(src, f, store.layer_limits.archive_limits(store.paths.root))
        await anyio.to_thread.run_sync(spool)
        ar = await anyio.to_thread.run_sync(_Archive, tmp)
        try:
            if ar.has("manifest.json"):
                plan = await anyio.to_thread.run_sync(_plan_docker, ar)
            elif ar.has("index.json"):
                plan = await anyio.to_thread.run_sync(_plan_oci, ar)
            else:
                raise InvalidArgument("invalid image archive: it has neither manifest.json "
                                      "(docker-archive) nor index.json (OCI layout)")
            if not plan:
                raise InvalidArgument("invalid image archive: it lists no images")
            ready = []
            for raw, layer_names, tags in plan:
                try:
                    cfg = oci.validate_config(json.loads(raw))
                except ValueError as exc:
                    raise InvalidArgument(f"invalid image archive: config is not JSON: {exc}") \
                        from None
                want = oci.diff_ids_hex(cfg)
                if len(want) != len(layer_names):
                    raise InvalidArgument(f"invalid image archive: the config lists {len(want)} "
                                          f"layers, the manifest {len(layer_names)}")
                for i, (name, expect) in enumerate(zip(layer_names, want)):
                    f = await anyio.to_thread.run_sync(ar.open, name)
                    total = ar.size(name)
                    if progress is not None:
                        await progress(_loading(expect, 0, total))
                    got = await store.add_layer(f)
                    added.append(got)
                    if got != expect:
                        raise InvalidArgument(
                            f"invalid image archive: layer {i} ({name}) has diff_id sha256:{got}, "
                            f"the config says sha256:{expect}")
                    if progress is not None:
                        await progress(_loading(expect, total or 0, total))
                norm = []
                for t in tags:
                    try:
                        norm.append(R.parse(t).name_tag)
                    except InvalidArgument:
                        raise InvalidArgument(f"invalid image archive: bad tag {t!r}") from None
                ready.append((raw, cfg, norm))
        finally:
            ar.close()
        lines = []
        for raw, cfg, tags in ready:
            img = await store.register_raw(raw, cfg, tags)
            for t in tags:
                lines.append(f"Loaded image: {t}")
            if not tags:
                lines.append(f"Loaded image ID: {img.id}")
            store._emit("load", img.id, name=tags[0] if tags else img.id)
        return lines
    except BaseException:
        for h in added:
            store.release_layer(h)
        with anyio.CancelScope(shield=True):
            await store.gc_layers(added)
        raise
    finally:
        tmp.unlink(missing_ok=True)
