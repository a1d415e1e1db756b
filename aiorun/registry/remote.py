"""Where an image reference lives on the wire (pure).

``busybox`` → registry ``docker.io`` (API host ``registry-1.docker.io``), repository
``library/busybox``; ``127.0.0.1:5000/app:1`` → registry ``127.0.0.1:5000``, repository
``app``. The first path component is a registry host when it contains a ``.`` or a ``:`` or
is ``localhost`` — Docker's rule.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aiorun.errors import InvalidArgument
from aiorun.images import reference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Remote:
    registry: str        # as users write it: "docker.io", "127.0.0.1:5000", "ghcr.io"
    repository: str      # path on that registry: "library/busybox", "app"
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        """The host[:port] the v2 API is served on."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What a manifest is fetched by: the digest when given, else the tag."""
        return self.digest or self.tag or reference.DEFAULT_TAG

    def scope(self, actions: str = "pull") -> str:
        """The token scope for this repository (``repository:library/busybox:pull``)."""
        return f"repository:{self.repository}:{actions}"


def split_registry(repo: str) -> tuple[str, str]:
    """A normalised repository name (``busybox``, ``foo/bar``, ``host:5000/x``) →
    ``(registry, repository path)``."""
    first, sep, rest = repo.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    if not sep:
        return DOCKER_HUB, f"library/{repo}"
    return DOCKER_HUB, repo


def parse_remote(ref: str) -> Remote:
    """Parse a user's reference (InvalidArgument on a malformed one)."""
    r = reference.parse(ref)
    registry, path = split_registry(r.repo)
    return Remote(registry, path, r.tag, r.digest)


#: Docker's ``registry-mirrors`` for the daemon: a comma-separated list of URLs
#: (``https://mirror.example``, ``http://127.0.0.1:5000``) tried in order for Docker Hub
#: images before Docker Hub itself.
MIRRORS_ENV = "AIORUN_REGISTRY_MIRRORS"


@dataclass(frozen=True)
class Mirror:
    host: str            # host[:port]
    insecure: bool       # an http:// mirror


def parse_mirrors(value: str) -> list[Mirror]:
    """``AIORUN_REGISTRY_MIRRORS`` → mirrors; InvalidArgument names a malformed entry."""
    out = []
    for raw in (v.strip() for v in value.split(",")):
        if not raw:
            continue
        scheme, sep, rest = raw.partition("://")
        host = rest.split("/", 1)[0] if sep else ""
        if scheme not in ("http", "https") or not host:
            raise InvalidArgument(f"invalid registry mirror {raw!r}: expected "
                                  "http(s)://host[:port]")
        out.append(Mirror(host, scheme == "http"))
    return out


def registry_hostname(registry: str) -> str:
    """``host[:port]`` → host (``[v6]:port`` → ``v6``)."""
    if registry.startswith("["):
        return registry[1:registry.find("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    """Loopback registries are insecure (plain HTTP allowed) by default, as in Docker.

    By name alone, never resolved: ``localhost`` or a loopback IP literal (``127.0.0.0/8``,
    ``::1``). A DNS name that merely starts like one (``127.0.0.1.nip.io``) is not."""
    host = registry_hostname(registry)
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
