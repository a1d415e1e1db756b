"""Test images for the registry section, written as OCI image layouts (no engine needed).

Each layer is a tar holding one file of random bytes (incompressible: gzip cannot make the
transfer cheaper than the data), gzip-compressed at level 1 while the tar streams through
two hashes (the uncompressed diff_id and the compressed blob digest), so a 200 MB layer never
sits in memory. ``skopeo copy oci:DIR:latest docker://...`` pushes a layout to the bench's
registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 1 << 20
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x"}


@dataclass
class Layout:
    """An OCI layout on disk: ``oci:<path>:latest``."""
    path: Path
    layers: int
    compressed_bytes: int        # sum of the layer blobs: what a pull or push moves

    @property
    def mb(self) -> float:
        return self.compressed_bytes / 2**20


class _RandomFile(io.RawIOBase):
    """``size`` random bytes, read in chunks (the file inside a layer tar)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


class _LayerWriter(io.RawIOBase):
    """Receives the tar stream: hashes it (diff_id), gzips it to ``out``, hashes that."""

    def __init__(self, out: io.BufferedWriter) -> None:
        self.out = out
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0
        self.z = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip framing

    def writable(self) -> bool:
        return True

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob.update(data)
            self.out.write(data)
            self.size += len(data)

    def write(self, b) -> int:  # type: ignore[override]
        data = bytes(b)
        self.diff.update(data)
        self._emit(self.z.compress(data))
        return len(data)

    def finish(self) -> None:
        self._emit(self.z.flush())


def _put_blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _write_layer(blobs: Path, index: int, size: int) -> tuple[dict, str]:
    tmp = blobs / f".layer-{index}.tmp"
    with open(tmp, "wb") as f:
        w = _LayerWriter(f)
        with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"bench/layer-{index:03d}.bin")
            info.size = size
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, _RandomFile(size))
        w.finish()
    digest = w.blob.hexdigest()
    tmp.rename(blobs / digest)
    return ({"mediaType": MT_LAYER, "digest": f"sha256:{digest}", "size": w.size},
            f"sha256:{w.diff.hexdigest()}")


def write_layout(path: Path, layer_sizes: list[int]) -> Layout:
    """An image of ``len(layer_sizes)`` random layers at ``path`` (made afresh)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layers, diff_ids = [], []
    for i, size in enumerate(layer_sizes):
        desc, diff_id = _write_layer(blobs, i, size)
        layers.append(desc)
        diff_ids.append(diff_id)
    config = {"architecture": ARCH.get(platform.machine(), platform.machine()), "os": "linux",
              "config": {"Cmd": ["true"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created_by": f"bench layer {i}"} for i in range(len(layers))]}
    cfg = _put_blob(blobs, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": {"mediaType": MT_CONFIG, **cfg}, "layers": layers}
    man = _put_blob(blobs, json.dumps(manifest).encode())
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": MT_MANIFEST, **man,
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    return Layout(path, len(layers), sum(d["size"] for d in layers))
