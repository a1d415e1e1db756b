"""Put test images into a registry through its v2 API (blob uploads, manifest PUTs).

    layer = tar_of({"hello.txt": b"hi\\n"})
    digest = push_image(reg.url, "app", "1", [busybox_tar, layer], compressions=["gzip", "zstd"])
    push_index(reg.url, "multi", "1", {"linux/amd64": amd_digest, "linux/arm64": arm_digest})

Synchronous (httpx's sync client): tests call it before talking to the daemon.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any

import httpx

from aiorun.images import oci

def _layer_type(kind: str, oci_manifest: bool) -> str:
    if kind == "zstd":
        return oci.MT_OCI_LAYER_ZSTD
    if oci_manifest:
        return oci.MT_OCI_LAYER_GZIP if kind == "gzip" else oci.MT_OCI_LAYER
    return oci.MT_DOCKER_LAYER_GZIP if kind == "gzip" else oci.MT_DOCKER_LAYER


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar holding ``files`` (mode 0644, root-owned, mtime 0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    return data


def _client(auth: tuple[str, str] | None) -> httpx.Client:
    return httpx.Client(auth=auth, timeout=30)


def push_blob(url: str, repo: str, data: bytes, auth: tuple[str, str] | None = None) -> str:
    d = digest(data)
    with _client(auth) as c:
        if c.head(f"{url}/v2/{repo}/blobs/{d}").status_code == 200:
            return d
        r = c.post(f"{url}/v2/{repo}/blobs/uploads/")
        r.raise_for_status()
        loc = r.headers["location"]
        if loc.startswith("/"):
            loc = url + loc
        sep = "&" if "?" in loc else "?"          # keep the upload's _state parameter
        r = c.put(f"{loc}{sep}digest={d}", content=data,
                  headers={"Content-Type": "application/octet-stream"})
        r.raise_for_status()
    return d


def put_manifest(url: str, repo: str, reference: str, body: bytes, media_type: str,
                 auth: tuple[str, str] | None = None) -> str:
    with _client(auth) as c:
        r = c.put(f"{url}/v2/{repo}/manifests/{reference}", content=body,
                  headers={"Content-Type": media_type})
        r.raise_for_status()
    return digest(body)


def push_image(url: str, repo: str, tag: str, layers: list[bytes], *,
               compressions: list[str] | None = None, architecture: str = "amd64",
               cmd: list[str] | None = None, auth: tuple[str, str] | None = None,
               oci_manifest: bool = False, config_extra: dict[str, Any] | None = None
               ) -> tuple[str, dict[str, Any]]:
    """Push an image of uncompressed ``layers`` (each compressed as ``compressions`` says:
    gzip by default); return ``(manifest digest, manifest)``."""
    kinds = compressions or ["gzip"] * len(layers)
    blobs = [compress(lay, k) for lay, k in zip(layers, kinds)]
    config = {
        "architecture": architecture, "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/bin:/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(lay) for lay in layers]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": f"layer {i}"}
                    for i in range(len(layers))],
        **(config_extra or {}),
    }
    config_raw = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.MT_OCI_MANIFEST if oci_manifest else oci.MT_DOCKER_MANIFEST,
        "config": {"mediaType": oci.MT_OCI_CONFIG if oci_manifest else oci.MT_DOCKER_CONFIG,
                   "digest": push_blob(url, repo, config_raw, auth), "size": len(config_raw)},
        "layers": [{"mediaType": _layer_type(k, oci_manifest),
                    "digest": push_blob(url, repo, b, auth), "size": len(b)}
                   for b, k in zip(blobs, kinds)],
    }
    body = json.dumps(manifest).encode()
    return put_manifest(url, repo, tag, body, str(manifest["mediaType"]), auth), manifest


def push_index(url: str, repo: str, tag: str, entries: dict[str, tuple[str, int]], *,
               auth: tuple[str, str] | None = None) -> str:
    """An OCI index of ``{"linux/arm64": (manifest digest, size), ...}``; its digest."""
    manifests = []
    for plat, (d, size) in entries.items():
        os_, arch, *variant = plat.split("/")
        p = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        manifests.append({"mediaType": oci.MT_DOCKER_MANIFEST, "digest": d, "size": size,
                          "platform": p})
    body = json.dumps({"schemaVersion": 2, "mediaType": oci.MT_OCI_INDEX,
                       "manifests": manifests}).encode()
    return put_manifest(url, repo, tag, body, oci.MT_OCI_INDEX, auth)


def manifest_size(url: str, repo: str, reference: str) -> int:
    with _client(None) as c:
        r = c.get(f"{url}/v2/{repo}/manifests/{reference}",
                  headers={"Accept": f"{oci.MT_DOCKER_MANIFEST}, {oci.MT_OCI_MANIFEST}"})
        r.raise_for_status()
        return len(r.content)
