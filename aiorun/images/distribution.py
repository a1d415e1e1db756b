"""What the image store remembers about registries: ``<root>/images/distribution.json``.

* ``repo_digests``: image id → ``["repo@sha256:<manifest digest>", ...]`` (Docker's
  ``RepoDigests``: set by a pull, and by a push);
* ``blobs``: compressed blob digest (``sha256:...``) → layer diff_id hex. A pull whose layer
  blob is known here (or whose config's diff_id is already stored) never fetches it again; a
  push finds the compressed digest of a layer it compressed before.

Written atomically after each change (small: one entry per image and layer). Entries of images
or layers that are gone are dropped when the store starts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from aiorun.core.atomicfile import write_atomic

log = logging.getLogger(__name__)


class DistributionMeta:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.repo_digests: dict[str, list[str]] = {}
        self.blobs: dict[str, str] = {}

    # ------------------------------------------------------------------ persistence (threads)
    def load(self, images: set[str], layers: set[str]) -> None:
        """Read the file, keeping only entries of existing images and layers."""
        try:
            doc = json.loads(self.path.read_bytes())
            rd = {str(k): [str(x) for x in v] for k, v in dict(doc["repo_digests"]).items()}
            blobs = {str(k): str(v) for k, v in dict(doc["blobs"]).items()}
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("%s is corrupt (%s); starting without repo digests", self.path, exc)
            return
        self.repo_digests = {k: v for k, v in rd.items() if k in images}
        self.blobs = {k: v for k, v in blobs.items() if v in layers}

    def save(self) -> None:
        doc = {"repo_digests": self.repo_digests, "blobs": self.blobs}
        write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())

    # ------------------------------------------------------------------ in memory
    def of(self, image_id: str) -> list[str]:
        return list(self.repo_digests.get(image_id, ()))

    def find(self, repo_digest: str) -> str | None:
        """The image id a ``repo@sha256:...`` names, if known."""
        for iid, rds in self.repo_digests.items():
            if repo_digest in rds:
                return iid
        return None

    def add_repo_digest(self, image_id: str, repo_digest: str) -> None:
        """Record ``repo@digest`` for ``image_id`` (one digest per repository per image, as
        Docker keeps it; another image that had it loses it)."""
        repo = repo_digest.partition("@")[0]
        for iid in list(self.repo_digests):
            kept = [r for r in self.repo_digests[iid] if r != repo_digest and
                    not (iid == image_id and r.partition("@")[0] == repo)]
            if kept:
                self.repo_digests[iid] = kept
            else:
                del self.repo_digests[iid]
        self.repo_digests.setdefault(image_id, []).append(repo_digest)
        self.repo_digests[image_id].sort()

    def forget_image(self, image_id: str) -> None:
        self.repo_digests.pop(image_id, None)

    def forget_layer(self, diff_id_hex: str) -> None:
        for k in [k for k, v in self.blobs.items() if v == diff_id_hex]:
            del self.blobs[k]
