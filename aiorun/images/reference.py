"""Image references: ``[registry/][namespace/]name[:tag][@sha256:hex]``.

Normalised the way the docker CLI shows them: ``docker.io/library/busybox`` and
``index.docker.io/library/busybox`` become ``busybox``; ``docker.io/foo/bar`` becomes
``foo/bar``; other registries stay as written. The tag defaults to ``latest`` unless the
reference carries a digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiorun.errors import InvalidArgument

DEFAULT_TAG = "latest"
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    repo: str                 # normalised repository ("busybox", "foo/bar", "host:5000/x")
    tag: str | None           # None only when a digest is given without a tag
    digest: str | None = None

    def __str__(self) -> str:
        s = self.repo
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def name_tag(self) -> str:
        """``repo:tag`` (the tag key of the image store)."""
        return f"{self.repo}:{self.tag or DEFAULT_TAG}"

    @property
    def familiar(self) -> str:
        return self.repo

    @property
    def full_repo(self) -> str:
        """Fully qualified (``docker.io/library/busybox``), as OCI annotations want it."""
        first = self.repo.split("/")[0]
        if "/" in self.repo and ("." in first or ":" in first or first == "localhost"):
            return self.repo
        if "/" not in self.repo:
            return f"docker.io/library/{self.repo}"
        return f"docker.io/{self.repo}"


def looks_like_id(s: str) -> bool:
    return bool(_HEX64.match(s.removeprefix("sha256:"))) and \
        (s.startswith("sha256:") or len(s) == 64)


def parse(ref: str) -> Reference:
    """Parse and normalise ``ref``; raise InvalidArgument naming what is wrong."""
    if not ref or ref != ref.strip():
        raise InvalidArgument(f"invalid reference format: {ref!r}")
    name, digest = ref, None
    if "@" in ref:
        name, _, digest = ref.partition("@")
        if not _DIGEST.match(digest):
            raise InvalidArgument(f"invalid reference format: bad digest in {ref!r}")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid reference format: bad tag {tag!r} in {ref!r}")
    if not name:
        raise InvalidArgument(f"invalid reference format: {ref!r}")
    if name != name.lower():
        raise InvalidArgument(f"invalid reference format: repository name must be lowercase: {ref!r}")
    parts = name.split("/")
    domain = None
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        domain, parts = parts[0], parts[1:]
    for p in parts:
        if not _COMPONENT.match(p):
            raise InvalidArgument(f"invalid reference format: bad name component {p!r} in {ref!r}")
    if domain in _DOCKER_HUB or domain is None:
        if len(parts) == 2 and parts[0] == "library":
            parts = parts[1:]
        repo = "/".join(parts)
    else:
        repo = "/".join([domain] + parts)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(repo, tag, digest)


def normalize(name: str) -> tuple[str, str]:
    """``(repo, tag)``: ``docker.io/library/x`` -> ``("x", "latest")``."""
    r = parse(name)
    return r.repo, r.tag or DEFAULT_TAG


def join(repo: str, tag: str | None) -> str:
    """Normalise a ``repo`` + ``tag`` pair given separately (``POST /images/{x}/tag``)."""
    return parse(f"{repo}:{tag}" if tag else repo).name_tag
