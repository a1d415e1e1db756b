"""Manifests as a registry serves them (pure: no I/O).

Four media types are understood — Docker schema 2 manifests and manifest lists, OCI image
manifests and indexes — and Docker's schema 1 is refused with a message that says so. A list
or index is resolved to one manifest by platform: the host's (``linux/amd64`` here) unless a
``--platform`` is given, Docker's rule (``os/arch[/variant]``; an entry without a variant
matches any variant).

    m = parse(body, content_type)          # -> ImageManifest | ManifestIndex
    if isinstance(m, ManifestIndex):
        desc = m.choose(parse_platform(platform) or host_platform())
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiorun.errors import InvalidArgument, NotFound
from aiorun.images import oci

MT_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MT_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MT_DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MT_OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

MANIFEST_TYPES = (oci.MT_DOCKER_MANIFEST, oci.MT_OCI_MANIFEST)
INDEX_TYPES = (oci.MT_DOCKER_LIST, oci.MT_OCI_INDEX)
#: What a manifest GET accepts (schema 1 is not asked for: a registry then converts or 404s).
ACCEPT = ", ".join(MANIFEST_TYPES + INDEX_TYPES)

LAYER_TYPES = {
    oci.MT_DOCKER_LAYER_GZIP: "gzip", oci.MT_OCI_LAYER_GZIP: "gzip",
    oci.MT_OCI_LAYER_ZSTD: "zstd", oci.MT_OCI_LAYER: "tar", oci.MT_DOCKER_LAYER: "tar",
    MT_DOCKER_LAYER_FOREIGN: "gzip", MT_OCI_LAYER_NONDIST: "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "tar",
}
CONFIG_TYPES = (oci.MT_DOCKER_CONFIG, oci.MT_OCI_CONFIG)

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ManifestIndex:
    media_type: str
    manifests: tuple[Descriptor, ...] = field(default=())

    def choose(self, want: Platform) -> Descriptor:
        """The entry for ``want`` (NotFound naming the platforms on offer)."""
        matches = [d for d in self.manifests if d.platform is not None
                   and d.media_type in MANIFEST_TYPES and _matches(d.platform, want)]
        if not matches:
            offered = ", ".join(str(d.platform) for d in self.manifests
                                if d.platform is not None) or "none"
            raise NotFound(f"no matching manifest for {want} in the manifest list entries "
                           f"(the image offers: {offered})")
        # an exact variant beats an entry without one
        matches.sort(key=lambda d: d.platform is not None and d.platform.variant != want.variant)
        return matches[0]


def _matches(have: Platform, want: Platform) -> bool:
    if have.os != want.os or have.architecture != want.architecture:
        return False
    return not want.variant or not have.variant or have.variant == want.variant


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm", "i386": "386", "i686": "386"}


def host_platform() -> Platform:
    return Platform("linux", oci.go_arch())


def parse_platform(spec: str | None) -> Platform | None:
    """``os[/arch[/variant]]`` (Docker's ``--platform``); None for an empty spec.

    >>> parse_platform("linux/arm64/v8")
    Platform(os='linux', architecture='arm64', variant='v8')
    """
    if not spec:
        return None
    parts = spec.strip().lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise InvalidArgument(f'invalid platform "{spec}": expected os[/arch[/variant]]')
    os_ = parts[0]
    arch = _ARCH_ALIASES.get(parts[1], parts[1]) if len(parts) > 1 else oci.go_arch()
    variant = parts[2] if len(parts) > 2 else ""
    if os_ != "linux":
        raise InvalidArgument(f'invalid platform "{spec}": aiorun runs only linux images')
    return Platform(os_, arch, variant)


def _descriptor(d: Any, what: str) -> Descriptor:
    if not isinstance(d, dict):
        raise InvalidArgument(f"malformed manifest: {what} is not an object")
    digest = d.get("digest")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidArgument(f"malformed manifest: {what} has an invalid or unsupported "
                              f"digest {digest!r} (only sha256 is supported)")
    size = d.get("size")
    if not isinstance(size, int) or size < 0:
        raise InvalidArgument(f"malformed manifest: {what} has no valid size")
    plat = None
    p = d.get("platform")
    if isinstance(p, dict):
        plat = Platform(str(p.get("os", "")), str(p.get("architecture", "")),
                        str(p.get("variant", "") or ""))
    urls = tuple(str(u) for u in d.get("urls") or ())
    return Descriptor(str(d.get("mediaType", "")), digest, size, plat, urls)


def parse(body: bytes, content_type: str = "") -> ImageManifest | ManifestIndex:
    """A manifest or index from its bytes (the media type from the body or the header)."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in (MT_DOCKER_SCHEMA1, MT_DOCKER_SCHEMA1_SIGNED):
        raise InvalidArgument(_SCHEMA1)
    try:
        doc = json.loads(body)
    except ValueError:
        raise InvalidArgument("malformed manifest: not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("malformed manifest: not a JSON object")
    if doc.get("schemaVersion") == 1:
        raise InvalidArgument(_SCHEMA1)
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument(f"malformed manifest: unsupported schemaVersion "
                              f"{doc.get('schemaVersion')!r}")
    mt = doc.get("mediaType") or ""
    if not mt:
        # OCI allows mediaType to be absent: the header says, else the shape does
        if ctype in MANIFEST_TYPES + INDEX_TYPES:
            mt = ctype
        else:
            mt = oci.MT_OCI_INDEX if "manifests" in doc else oci.MT_OCI_MANIFEST
    if mt in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise InvalidArgument("malformed manifest list: no manifests")
        return ManifestIndex(mt, tuple(_descriptor(e, f"manifests[{i}]")
                                       for i, e in enumerate(entries)))
    if mt not in MANIFEST_TYPES:
        raise InvalidArgument(f"unsupported manifest media type {mt!r} (aiorun pulls Docker "
                              "schema 2 and OCI images)")
    config = _descriptor(doc.get("config"), "config")
    if config.media_type and config.media_type not in CONFIG_TYPES:
        raise InvalidArgument(f"unsupported config media type {config.media_type!r}: this is "
                              "not a container image (an artifact?)")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise InvalidArgument("malformed manifest: no layers")
    layers = tuple(_descriptor(e, f"layers[{i}]") for i, e in enumerate(raw_layers))
    for lay in layers:
        if lay.media_type not in LAYER_TYPES:
            raise InvalidArgument(f"unsupported layer media type {lay.media_type!r}")
    return ImageManifest(mt, config, layers)


def compression(layer: Descriptor) -> str:
    """``gzip``, ``zstd`` or ``tar`` for a layer descriptor."""
    return LAYER_TYPES.get(layer.media_type, "tar")


_SCHEMA1 = ("unsupported manifest: Docker image manifest schema 1 is deprecated and not "
            "supported by aiorun; push the image again with a current docker or convert it "
            "(skopeo copy --format v2s2)")
