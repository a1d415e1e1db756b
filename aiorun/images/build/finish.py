"""The images a build ends with: the target stage's (tagged), and an untagged image for each
other stage that made layers (as Docker's classic builder leaves them: their layers stay, so
the build cache reuses their steps; ``image prune`` removes them, and that cache with them).

A fully cached rebuild that changes nothing gets the image the earlier build made (same id,
no new dangling image), as Docker's builders do (:func:`final_image`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from aiorun.errors import NotFound
from aiorun.images.build.cache import BuildCache
from aiorun.images.build.host import BuildHost
from aiorun.images.build.stage import Stage
from aiorun.images.oci import now_rfc3339 as now_rfc3339nano

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.core.interfaces import Images
    from aiorun.images.store import Image


def image_config(st: Stage, labels: dict[str, str]) -> dict[str, Any]:
    """The image config of stage ``st`` (``labels`` added to its own)."""
    cfg = dict(st.config)
    if labels:
        cfg["Labels"] = dict(cfg.get("Labels") or {}, **labels)
    image_cfg: dict[str, Any] = {
        "architecture": st.arch, "os": st.os, "created": now_rfc3339nano(), "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{h}" for h in st.layers]},
        "history": st.history,
    }
    if st.author:
        image_cfg["author"] = st.author
    return image_cfg


async def keep_stage_images(images: Images, results: dict[int, Stage], target: int,
                            added: list[str]) -> set[str]:
    """Create an untagged image for every stage but ``target`` holding layers this build
    ``added`` that no image so far lists; the layers now listed by an image (the target's
    included, which the caller turns into one)."""
    covered = set(results[target].layers)
    new = set(added)
    for i, other in sorted(results.items()):
        if i != target and new & (set(other.layers) - covered):
            await images.create_image(image_config(other, {}), [])
            covered |= set(other.layers)
    return covered


async def final_image(images: Images, cache: BuildCache, st: Stage, labels: dict[str, str],
                      tags: list[str], no_cache: bool, added: list[str]) -> Image:
    """The target stage's image, tagged ``tags``: the earlier build's when it has this very
    content (unless ``no_cache``), else a new one. Either way the layers it lists that this
    build ``added`` are unpinned (``create_image`` does it for a new image)."""
    image_cfg = image_config(st, labels)
    img = None if no_cache else await _same_image(images, cache, image_cfg, tags)
    if img is None:
        img = await images.create_image(image_cfg, tags)
        await anyio.to_thread.run_sync(cache.image_put, image_cfg, img.id)
    else:
        for h in st.layers:
            if h in added:
                images.release_layer(h)
    return img


async def _same_image(images: Images, cache: BuildCache, image_cfg: dict[str, Any],
                      tags: list[str]) -> Image | None:
    iid = await anyio.to_thread.run_sync(cache.image_get, image_cfg)
    if iid is None:
        return None
    try:
        images.resolve(iid)
        for t in tags:
            await images.tag(iid, t, emit=False)
        return images.resolve(iid)
    except NotFound:
        return None


def announce(host: BuildHost, img: Image, tags: list[str], quiet: bool
             ) -> list[dict[str, Any]]:
    """Emit the build's ``build`` and ``tag`` events; the stream's closing messages (only
    this build's tags: a reused image may carry older ones too)."""
    short = img.id.removeprefix("sha256:")[:12]
    host.emit_image_event("build", img.id, {"name": tags[0] if tags else short})
    tagged = [t for t in img.repo_tags or [] if t in tags]
    for t in tagged:
        host.emit_image_event("tag", img.id, {"name": t})
    out: list[dict[str, Any]] = [{"aux": {"ID": img.id}}]
    if quiet:
        return out + [{"stream": f"{img.id}\n"}]
    out.append({"stream": f"Successfully built {short}\n"})
    return out + [{"stream": f"Successfully tagged {t}\n"} for t in tagged]
