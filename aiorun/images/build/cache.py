"""The build cache: a layer-making step whose key matches an earlier build's reuses its layer.

``<cache root>/<key>`` holds ``{"diff_id", "created_by", "empty"}``: the layer a step made (or
that it made none). ``<cache root>/images/<content key>`` holds the id of the image a build
made, by its config without timestamps: a rebuild that changes nothing gets the same image. The key covers the parent layers, the Env/WorkingDir/User/Shell the step
sees, ARG values for RUN, the instruction text, and for COPY/ADD the content of its sources or
the source stage's layers. An entry whose layer was freed since is stale and dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from aiorun.core.safepath import resolve_in_root
from aiorun.errors import NotFound
from aiorun.images.build.context import DockerIgnore
from aiorun.images.build.copyfiles import heredoc_sources, match_sources
from aiorun.images.build.dockerfile import Instruction, command_form, expand_word
from aiorun.images.build.stage import Stage, history_entry

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.drivers.storage import StorageDriver
    from aiorun.core.interfaces import Images


def cache_key(st: Stage, ins: Instruction, copy: bool, extra: str) -> str:
    """The key of layer-making step ``ins`` on stage ``st``; ``extra`` is the content digest
    of a COPY/ADD's sources (or the layers of its ``--from`` source)."""
    c = st.config
    key = {"parent": st.layers, "env": c.get("Env"), "workdir": c.get("WorkingDir"),
           "user": c.get("User"), "shell": c.get("Shell"), "ins": ins.original,
           "args": sorted(st.args.items()) if not copy else None, "extra": extra}
    if ins.heredocs:   # their content is part of the step (not of ins.original)
        key["heredocs"] = [[h.name, h.content, h.expand, h.chomp] for h in ins.heredocs]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class BuildCache:
    """The cache entries under ``root``; the methods do file I/O (call them in a thread)."""

    def __init__(self, root: Path, images: Images, storage: StorageDriver,
                 context: Path, ignore: DockerIgnore) -> None:
        self.root = root
        self.images = images
        self.storage = storage
        self.context = context
        self.ignore = ignore

    def sources_digest(self, st: Stage, ins: Instruction) -> str:
        """The content of a COPY/ADD's context sources (paths, modes, link targets, bytes)."""
        h = hashlib.sha256()
        env = st.substitution_env()
        words = [expand_word(w, env, ins.escape) for w in ins.args]
        docs = heredoc_sources(ins)
        for raw, pat in zip(ins.args, words[:-1]):
            if "://" in pat or raw in docs:
                continue
            for rel in match_sources(pat, self.context, self.ignore):
                top = resolve_in_root(self.context, rel)
                for path in walk_sorted(top):
                    r = os.path.relpath(path, top)
                    if r != "." and self.ignore.excluded(posixpath.join(rel, r)):
                        continue
                    try:
                        st_ = os.lstat(path)
                    except FileNotFoundError:
                        continue
                    h.update(f"{rel}/{r}\0{st_.st_mode:o}\0{st_.st_size}\0".encode())
                    if stat.S_ISLNK(st_.st_mode):
                        h.update(os.readlink(path).encode())
                    elif stat.S_ISREG(st_.st_mode):
                        with open(path, "rb") as f:
                            for chunk in iter(lambda: f.read(1 << 20), b""):
                                h.update(chunk)
        return h.hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        f = self.root / key
        try:
            entry = json.loads(f.read_text())
            if entry.get("empty"):
                return entry
            self.images.layer_tar(entry["diff_id"])
            if not self.storage.has_layer(entry["diff_id"]):
                raise NotFound(entry["diff_id"])
            return entry
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, NotFound):
            f.unlink(missing_ok=True)   # its layer was freed: the entry is stale
            return None

    def image_get(self, config: dict[str, Any]) -> str | None:
        """The id of the image an earlier build made with this content (``config`` but its
        timestamps), or None."""
        try:
            return (self.root / "images" / image_content_key(config)).read_text().strip()
        except FileNotFoundError:
            return None

    def image_put(self, config: dict[str, Any], image_id: str) -> None:
        d = self.root / "images"
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{secrets.token_hex(4)}"
        tmp.write_text(image_id)
        os.replace(tmp, d / image_content_key(config))

    def put(self, key: str, diff_id: str, created_by: str, empty: bool = False) -> None:
        self.root.mkdir(exist_ok=True)
        tmp = self.root / f".{key}.{secrets.token_hex(4)}"
        tmp.write_text(json.dumps({"diff_id": diff_id, "created_by": created_by,
                                   "empty": empty}))
        os.replace(tmp, self.root / key)


def image_content_key(config: dict[str, Any]) -> str:
    """An image config's content without its timestamps: a build that only reused cached
    layers and changed nothing else gets the image (and id) the earlier build made, as
    Docker's builders do."""
    c = {k: v for k, v in config.items() if k != "created"}
    c["history"] = [{k: v for k, v in h.items() if k != "created"}
                    for h in config.get("history") or []]
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()


def walk_sorted(top: Path) -> Iterator[str]:
    """``top`` itself, then everything below it, in a stable order; links not followed."""
    yield str(top)
    if top.is_dir() and not top.is_symlink():
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for n in sorted(dirnames + filenames):
                yield os.path.join(dirpath, n)


def cache_from_layer(configs: list[dict[str, Any]], st: Stage, created_by: str) -> str | None:
    """``--cache-from``: the layer one of the images (their configs) made for the step
    ``created_by`` on top of stage ``st``, as Docker's classic builder finds it: the image's
    layers begin with the stage's, its history begins with the stage's history (every
    ``created_by``, metadata steps included), and its next history entry is a layer made by
    the same ``created_by``. None when no image has it."""
    ours = [h.get("created_by", "") for h in st.history]
    for cfg in configs:
        layers = [d.removeprefix("sha256:") for d in cfg.get("rootfs", {}).get("diff_ids", [])]
        history = cfg.get("history") or []
        n = len(st.layers)
        if len(layers) <= n or layers[:n] != st.layers or len(history) <= len(ours):
            continue
        if [h.get("created_by", "") for h in history[:len(ours)]] != ours:
            continue
        nxt = history[len(ours)]
        if nxt.get("empty_layer") or nxt.get("created_by", "") != created_by:
            continue
        return layers[n]
    return None


def apply_hit(st: Stage, hit: dict[str, Any]) -> str:
    """Add a cache ``hit`` (the step's layer, or its empty history entry) to stage ``st``;
    the stream's text for it."""
    if hit.get("empty"):
        st.history.append(history_entry(hit["created_by"], empty=True))
        return " ---> Using cache\n"
    st.layers.append(hit["diff_id"])
    st.history.append(history_entry(hit["created_by"], empty=False))
    return f" ---> Using cache\n ---> {hit['diff_id'][:12]}\n"


def cache_from_hit(configs: list[dict[str, Any]], st: Stage, ins: Instruction,
                   buildargs: dict[str, str], storage: StorageDriver) -> dict[str, Any] | None:
    """A RUN step's layer from a ``--cache-from`` image (``configs``), as a cache hit. COPY/ADD
    are never taken from one (their history does not say what was copied), nor a RUN that
    sees a ``--build-arg`` value (its history does not say which)."""
    if ins.cmd != "RUN" or not configs or set(st.args) & set(buildargs):
        return None
    created_by = " ".join(command_form(ins, st.config.get("Shell")))
    diff_id = cache_from_layer(configs, st, created_by)
    if diff_id is None or not storage.has_layer(diff_id):
        return None
    return {"diff_id": diff_id, "created_by": created_by}
