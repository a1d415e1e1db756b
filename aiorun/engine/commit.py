"""``commit``: a container's read-write layer becomes a new image layer.

The new image = the container's image layers (shared, never copied) + one new layer made from
``storage.diff`` (OCI whiteouts for deleted files and opaque dirs), with the container's config
plus ``--change`` instructions, and one more history entry.

Decisions (documented here because they are visible to users):

* A commit always adds a layer, as Docker does: committing an unchanged container gives a layer
  holding an empty tar (its history entry has no ``empty_layer``) -- except when the image
  already lists that empty layer (a commit of an unchanged container of such an image): the
  same layer twice would stack one directory twice, so the entry is ``empty_layer: true``.
* The init files (/etc/hosts, /etc/hostname, /etc/resolv.conf) are bind mounts, so their writes
  never reach the rw layer; the diff is still filtered so a driver that lists them (e.g. the
  copy driver comparing against the image) can never leak them into an image. Volume contents
  are mounts inside the container's namespace and never appear in the rw layer; the empty
  mount-point directory the runtime created does, and is committed.
* ``pause``: a running container is frozen during the diff through the containers manager's
  ``pause``/``unpause`` (the runtime's cgroup freezer; the usual pause/unpause events); when
  it cannot be paused (no freezer, paused already) the commit proceeds unpaused (logged).
* The diff is streamed to a temporary file under ``<root>/tmp`` and from there into
  ``images.add_layer``: memory use does not grow with the layer's size.
"""

from __future__ import annotations

import logging
import os
import secrets
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

import anyio
import anyio.to_thread

from aiorun.core import state as st
from aiorun.core.faultpoint import fault_point
from aiorun.errors import InvalidArgument, Unavailable
from aiorun.images.build.dockerfile import apply_metadata, parse_changes
from aiorun.images.diff import filter_diff, has_excluded
from aiorun.images.oci import now_rfc3339 as now_rfc3339nano  # the same format

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.daemon import Engine

log = logging.getLogger(__name__)

#: ``<root>/tmp/commit-<hex>.tar`` (and ``.filtered.tar``): a commit's diff on its way into
#: the store; removed when the commit ends, and by :func:`sweep_spools` at daemon start
#: after a crash (no commit runs then).
SPOOL_PREFIX = "commit-"


def sweep_spools(tmpdir: Path) -> list[str]:
    """Remove the spool files commits cut short by a crash left; returns their names."""
    removed = []
    try:
        entries = list(os.scandir(tmpdir))
    except FileNotFoundError:
        return []
    for e in entries:
        if e.name.startswith(SPOOL_PREFIX) and e.name.endswith(".tar"):
            try:
                os.unlink(e.path)
            except FileNotFoundError:
                continue
            removed.append(e.name)
    return removed

#: The image-config keys an image keeps from a container's Config.
IMAGE_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
                     "Labels", "StopSignal", "Shell", "OnBuild", "Healthcheck", "ArgsEscaped")


def _layer_is_empty(engine: "Engine", diff_id: str) -> bool:
    try:
        with tarfile.open(engine.images.layer_tar(diff_id), "r:") as t:
            return t.next() is None
    except Exception:
        return False


def image_config_from_container(base_cfg: dict[str, Any], ccfg: dict[str, Any]) -> dict[str, Any]:
    """The new image's ``config``: the container's config, falling back to the image's."""
    out: dict[str, Any] = {}
    for k in IMAGE_CONFIG_KEYS:
        v = ccfg.get(k) if k in ccfg else None
        if v in (None, "", [], {}):
            v = base_cfg.get(k)
        if v not in (None, "", [], {}):
            out[k] = v
    return out


def merge_override(cfg: dict[str, Any], override: dict[str, Any] | None) -> None:
    """Apply the API body's config (Docker's ``POST /commit`` body) over ``cfg``."""
    for k, v in (override or {}).items():
        if k in IMAGE_CONFIG_KEYS and v not in (None, "", [], {}):
            cfg[k] = v


async def _pause(engine: "Engine", cid: str) -> Callable[[], Awaitable[None]] | None:
    """Pause the container for the diff; returns the undo (unpause), or None when it could
    not be paused (the commit then goes on unpaused)."""
    containers = engine.containers
    try:
        await containers.pause(cid, by_engine=True)
    except Exception as exc:  # paused already, or no freezer: commit anyway
        log.info("commit: could not pause %s (%s); committing unpaused", cid[:12], exc)
        return None
    return lambda: containers.unpause(cid)


async def commit(engine: "Engine", ref: str, *, repo: str | None = None, tag: str | None = None,
                 message: str = "", author: str = "", changes: Iterable[str] = (),
                 pause: bool = True, config: dict[str, Any] | None = None) -> str:
    """Commit container ``ref``; return the new image id (``sha256:<hex>``)."""
    if engine.containers is None or engine.images is None or engine.storage is None:
        raise InvalidArgument("commit needs the containers, images and storage managers")
    instructions = parse_changes(list(changes))    # bad --change: fail before any work
    tags: list[str] = []
    if repo:
        from aiorun.images.reference import join
        tags.append(join(repo, tag or None))    # docker.io/library/x -> x:latest
    elif tag:
        raise InvalidArgument("a tag needs a repository name (commit CONTAINER REPO[:TAG])")

    c = engine.containers.get(ref)
    cid = c.id
    ccfg = dict(c.config or {})
    image = engine.images.resolve(c.image_id)
    base = image.config
    base_cfg = dict(base.get("config") or {})

    new_cfg = image_config_from_container(base_cfg, ccfg)
    merge_override(new_cfg, config)
    for ins in instructions:
        apply_metadata(new_cfg, ins)

    tmpdir = engine.paths.tmp
    tmpdir.mkdir(parents=True, exist_ok=True)
    raw = tmpdir / f"{SPOOL_PREFIX}{secrets.token_hex(6)}.tar"
    filtered = raw.with_suffix(".filtered.tar")
    # Docker's Running (restarting counts): pausing one without a process fails and is logged
    undo = await _pause(engine, cid) if (pause and c.state.running
                                         and c.state.status != st.PAUSED) else None
    try:
        try:
            def _diff() -> None:
                with open(raw, "wb") as f:
                    engine.storage.diff(cid, f)
                    fault_point("commit.spooled")
            await anyio.to_thread.run_sync(_diff)
        finally:
            if undo is not None:
                with anyio.CancelScope(shield=True):
                    await undo()
        # rewrite the tar only when the driver listed init files (the usual case is no)
        if await anyio.to_thread.run_sync(has_excluded, raw):
            await anyio.to_thread.run_sync(filter_diff, raw, filtered)
            raw.unlink(missing_ok=True)
        else:
            os.replace(raw, filtered)
        # the store renames the spool into place (no copy of the layer's bytes)
        diff_id = await engine.images.add_layer(filtered, take=True)
    finally:
        raw.unlink(missing_ok=True)
        filtered.unlink(missing_ok=True)
    diff_id = diff_id if str(diff_id).startswith("sha256:") else f"sha256:{diff_id}"
    base_ids = list((base.get("rootfs") or {}).get("diff_ids") or [])
    # An unchanged container gives an empty layer (Docker's behaviour) -- unless the image
    # already has that very layer: a layer listed twice would be one lower dir twice in the
    # overlay stack, so then the entry is an empty_layer instead (same filesystem either way).
    empty_dup = diff_id in base_ids and await anyio.to_thread.run_sync(
        _layer_is_empty, engine, diff_id)
    if empty_dup:
        engine.images.release_layer(diff_id)

    created = now_rfc3339nano()
    argv = list(ccfg.get("Entrypoint") or base_cfg.get("Entrypoint") or []) + \
        list(ccfg.get("Cmd") or base_cfg.get("Cmd") or [])
    entry: dict[str, Any] = {"created": created, "created_by": " ".join(argv)}
    if empty_dup:
        entry["empty_layer"] = True
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    new_image: dict[str, Any] = {
        "architecture": base.get("architecture") or "amd64",
        "os": base.get("os") or "linux",
        "created": created,
        "config": new_cfg,
        "container": cid,
        # Docker's image config records the image the container ran ("parent"): inspect's
        # Parent and the list's ParentId
        "parent": image.id,
        "rootfs": {"type": "layers", "diff_ids": base_ids + ([] if empty_dup else [diff_id])},
        "history": list(base.get("history") or []) + [entry],
    }
    if author:
        new_image["author"] = author
    if message:
        new_image["comment"] = message
    try:
        img = await engine.images.create_image(new_image, tags)
    except BaseException:
        # unpin and free the new layer when no image got to reference it
        with anyio.CancelScope(shield=True):
            engine.images.release_layer(diff_id)
            await engine.images.gc_layers([diff_id])
        raise
    image_id = img.id
    try:
        engine.events.emit("container", "commit", cid, {
            "comment": message, "imageID": image_id, "imageRef": tags[0] if tags else "",
            "name": c.name.lstrip("/"), "image": c.image_id})
    except Unavailable as exc:   # the image exists: report it; the bus's health tells the loss
        log.error("commit of %s: event not recorded: %s", cid, exc)
    return image_id
