"""The Dockerfile builder (Docker's classic builder semantics).

``Builder(host, context_dir, instructions, ...).run()`` is an async generator of Docker's
build JSON messages (``{"stream": ...}``, ``{"aux": {"ID": ...}}``); on failure it raises
(the route turns that into ``{"error", "errorDetail"}``). The final image id is
``builder.image_id``.

* Each instruction is one history entry. Metadata instructions (CMD ENV EXPOSE LABEL USER
  WORKDIR VOLUME STOPSIGNAL ENTRYPOINT SHELL ARG MAINTAINER) change the config only:
  ``empty_layer: true``. A COPY/ADD/RUN that changed nothing is ``empty_layer: true`` too and
  adds no layer (as BuildKit does).
* COPY/ADD and RUN make a layer. They work on a *snapshot*: a storage-driver container over the
  current layers (no intermediate images). COPY/ADD write into the mounted snapshot rootfs
  (every destination resolved inside it, never following a link out of it; sources resolved
  inside the context); RUN runs the command there through the runtime (own namespaces,
  network "none": loopback only) and streams its output. The snapshot's diff becomes the
  layer (``images.add_layer``), then the snapshot is removed.
* WORKDIR is created (in the next layer-making step) when it does not exist, like the classic
  builder does.
* Build cache: a layer-making step whose key (parent layers, the Env/WorkingDir/User/Shell it
  sees, ARG values for RUN, the instruction text, and for COPY/ADD the content of its sources
  or the source stage's layers) matches an earlier build's reuses that layer ("Using cache")
  while the layer still exists; ``nocache`` skips lookups.
* Nothing is left behind on failure: snapshots are unmounted and removed, layers added by a
  failed build are unpinned and freed, no image is created.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import secrets
import shutil
import stat
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import anyio
import anyio.to_thread

from aiorun.core.safepath import resolve_in_root
from aiorun.errors import AiorunError, InvalidArgument, NotFound
from aiorun.images.build.context import DockerIgnore
from aiorun.images.build.host import BuildError, BuildHost, CommandDidNotRun, RunStep
from aiorun.images.build.dockerfile import (METADATA, DockerfileError, Instruction, parse,
                                            apply_metadata, command_form, env_dict,
                                            expand_word, expand_words)
from aiorun.images.diff import filter_diff, has_excluded, tar_is_empty
from aiorun.images.oci import now_rfc3339 as now_rfc3339nano

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.images.store import Image

#: Build args Docker predefines (usable without an ARG line, never in the image).
PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                   "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


#: Work directories (``<root>/tmp/build-*``, ``buildctx-*``) of builds running in this
#: process; any other such directory was left by a daemon that died mid-build.
_ACTIVE: set[str] = set()
SNAPSHOTS = "snapshots"


async def sweep_stale(host: BuildHost) -> list[str]:
    """Remove what builds interrupted by a daemon crash left: their snapshot containers (in
    the runtime and the storage driver, unmounted first) and work directories. Returns the
    work directories removed. Safe to call while other builds run (they are skipped)."""
    tmp = host.work_root
    if not tmp.exists():
        return []
    stale = [d for d in tmp.iterdir()
             if d.name.startswith(("build-", "buildctx-")) and d.name not in _ACTIVE
             and d.is_dir()]
    removed = []
    for d in stale:
        try:
            ids = (d / SNAPSHOTS).read_text().split()
        except OSError:
            ids = []
        for sid in ids:
            await host.discard_process(sid)

            def _drop(sid: str = sid) -> None:
                try:
                    host.storage.unmount(sid)
                except Exception:
                    pass
                try:
                    host.storage.remove_container(sid)
                except Exception:
                    pass
            await anyio.to_thread.run_sync(_drop)
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(d, ignore_errors=True))
        removed.append(d.name)
    return removed


class _Stage:
    def __init__(self) -> None:
        self.layers: list[str] = []                # diff_id hex, bottom first
        self.config: dict[str, Any] = {}           # the image config's "config"
        self.history: list[dict[str, Any]] = []
        self.arch = "amd64"
        self.os = "linux"
        self.args: dict[str, str] = {}             # declared ARGs with their values
        self.cmd_set = False
        self.author = ""
        self.name = ""

    def fork(self) -> "_Stage":
        """A new stage starting from this one (``FROM <stage>``)."""
        st = _Stage()
        st.layers, st.config, st.history = list(self.layers), dict(self.config), \
            list(self.history)
        st.arch, st.os, st.author = self.arch, self.os, self.author
        return st


class Builder:
    def __init__(self, host: BuildHost, context_dir: Path, instructions: list[Instruction],
                 *, tags: list[str] | None = None, buildargs: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None, quiet: bool = False,
                 no_cache: bool = False, target: str | None = None) -> None:
        self.host = host
        self.target = (target or "").lower() or None
        self.context = Path(context_dir)
        self.instructions = instructions
        self.tags = list(tags or [])
        self.buildargs = dict(buildargs or {})
        self.labels = dict(labels or {})
        self.quiet = quiet
        self.no_cache = no_cache
        self.cache_dir = host.cache_root
        self.ignore = DockerIgnore.from_dir(self.context)
        self.image_id: str | None = None
        self._added: list[str] = []                # layers this build added (pinned)
        self._stages: list[_Stage] = []            # every stage so far (multi-stage builds)
        self._used_args: set[str] = set()
        self.work = host.work_root / f"build-{secrets.token_hex(6)}"

    # --- helpers ---------------------------------------------------------------------------
    def _msg(self, text: str) -> dict[str, Any]:
        return {"stream": text}

    def _expand_env(self, st: _Stage) -> dict[str, str]:
        """Variables for substitution: ARG values, overridden by ENV (Docker's precedence)."""
        env = dict(st.args)
        env.update(env_dict(st.config.get("Env")))
        return env

    def _run_env(self, st: _Stage) -> list[str]:
        env = env_dict(st.config.get("Env"))
        for k, v in st.args.items():
            env.setdefault(k, v)
        return [f"{k}={v}" for k, v in env.items()]

    # --- the run -------------------------------------------------------------------------
    def _note_snapshot(self, sid: str) -> None:
        """Record a snapshot id before it exists, so a build interrupted by a daemon crash can
        be cleaned up by :func:`sweep_stale` (it tolerates ids that were never created)."""
        with open(self.work / SNAPSHOTS, "a") as f:
            f.write(sid + "\n")

    async def run(self) -> AsyncIterator[dict[str, Any]]:
        self.work.mkdir(parents=True, exist_ok=True)
        _ACTIVE.add(self.work.name)
        ok = False
        try:
            async for m in self._run():
                yield m
            ok = True
        finally:
            with anyio.CancelScope(shield=True):
                if not ok:
                    await self._free_layers()
                await anyio.to_thread.run_sync(
                    lambda: shutil.rmtree(self.work, ignore_errors=True))
                _ACTIVE.discard(self.work.name)

    async def _free_layers(self) -> None:
        images = self.host.images
        for h in self._added:
            images.release_layer(h)
        if self._added:
            try:
                await images.gc_layers(list(self._added))
            except Exception:  # freeing is best effort; start() collects orphans anyway
                pass
        self._added.clear()

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        ins_list = self.instructions
        first_from = next(i for i, x in enumerate(ins_list) if x.cmd == "FROM")
        meta_args: dict[str, str] = {}
        for ins in ins_list[:first_from]:                       # ARG before FROM
            name, eq, default = ins.rest.partition("=")
            self._used_args.add(name)
            meta_args[name] = self.buildargs.get(name, expand_word(default, meta_args)
                                                 if eq else "")
        steps = ins_list[first_from:]
        if self.target is not None:   # --target: stop at the end of that stage
            names = [i for i, x in enumerate(steps) if x.cmd == "FROM"
                     and len(x.rest.split()) == 3 and x.rest.split()[2].lower() == self.target]
            if not names:
                raise DockerfileError(f"target stage {self.target!r} could not be found")
            nxt = [i for i, x in enumerate(steps) if x.cmd == "FROM" and i > names[0]]
            steps = steps[:nxt[0]] if nxt else steps
        total = len(steps)
        self._st = _Stage()
        for n, ins in enumerate(steps, 1):
            if not self.quiet:
                yield self._msg(f"Step {n}/{total} : {ins.original}\n")
            async for m in self._exec(ins, meta_args):
                yield m
        unused = sorted(set(self.buildargs) - self._used_args - set(PREDEFINED_ARGS))
        if unused and not self.quiet:
            yield self._msg(f"[Warning] One or more build-args {unused} were not consumed\n")
        async for m in self._finish(self._st):
            yield m

    async def _exec(self, ins: Instruction, meta_args: dict[str, str]
                    ) -> AsyncIterator[dict[str, Any]]:
        """Run one instruction on the current stage (``self._st``)."""
        st = self._st
        try:
            if ins.cmd == "FROM":
                st = self._st = await self._from(ins, meta_args)
                if not self.quiet:
                    yield self._msg(f" ---> {self._from_id}\n")
                triggers = list(st.config.get("OnBuild") or [])
                if triggers:
                    st.config["OnBuild"] = None     # triggers run once, in the child build
                    if not self.quiet:
                        yield self._msg(f"# Executing {len(triggers)} build trigger"
                                        f"{'s' if len(triggers) > 1 else ''}\n")
                    for t in triggers:
                        trig = parse("FROM scratch\n" + t)[1]
                        trig.line = ins.line
                        async for m in self._exec(trig, meta_args):
                            yield m
            elif ins.cmd == "ARG":
                self._arg(st, ins, meta_args)
            elif ins.cmd in ("COPY", "ADD"):
                async for m in self._layer_step(st, ins, copy=True):
                    yield m
            elif ins.cmd == "RUN":
                async for m in self._layer_step(st, ins, copy=False):
                    yield m
            elif ins.cmd in METADATA:
                self._metadata(st, ins)
            else:  # pragma: no cover - parse() rejects these
                raise DockerfileError(f"{ins.cmd} is not supported", ins.line)
        except DockerfileError:
            raise
        except InvalidArgument as exc:
            raise BuildError(f"{ins.cmd} failed (Dockerfile line {ins.line}): "
                             f"{exc.message}") from None

    async def _finish(self, st: _Stage) -> AsyncIterator[dict[str, Any]]:
        images = self.host.images
        cfg = dict(st.config)
        if self.labels:
            cfg["Labels"] = dict(cfg.get("Labels") or {}, **self.labels)
        image_cfg: dict[str, Any] = {
            "architecture": st.arch, "os": st.os, "created": now_rfc3339nano(), "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{h}" for h in st.layers]},
            "history": st.history,
        }
        if st.author:
            image_cfg["author"] = st.author
        img = await images.create_image(image_cfg, self.tags)
        # create_image unpinned the final stage's layers (once per listing); the layers only
        # earlier stages made are unpinned and freed here
        left = list(self._added)
        for h in st.layers:
            if h in left:
                left.remove(h)
        self._added = left
        await self._free_layers()
        self.image_id = img.id
        short = img.id.removeprefix("sha256:")[:12]
        self.host.emit_image_event("build", img.id,
                                   {"name": self.tags[0] if self.tags else short})
        for t in img.repo_tags or []:
            self.host.emit_image_event("tag", img.id, {"name": t})
        yield {"aux": {"ID": img.id}}
        if self.quiet:
            yield {"stream": f"{img.id}\n"}
            return
        yield {"stream": f"Successfully built {short}\n"}
        for t in img.repo_tags or []:
            yield {"stream": f"Successfully tagged {t}\n"}

    # --- instructions ----------------------------------------------------------------------
    _from_id = ""

    async def _from(self, ins: Instruction, meta_args: dict[str, str]) -> _Stage:
        words = expand_words(ins.rest, meta_args)
        name = words[0]
        prev = self._stage_by_name(name)
        if prev is not None:
            st = prev.fork()
            self._from_id = f"stage {prev.name or self._stages.index(prev)}"
        elif name == "scratch":
            st = _Stage()
            self._from_id = "scratch"
        else:
            img = await self._resolve_image(name, ins)
            st = _Stage()
            cfg = img.config
            st.layers = list(img.layers)
            st.config = dict(cfg.get("config") or {})
            st.history = list(cfg.get("history") or [])
            st.arch = cfg.get("architecture") or "amd64"
            st.os = cfg.get("os") or "linux"
            self._from_id = img.id.removeprefix("sha256:")[:12]
        if len(words) == 3:
            st.name = words[2].lower()
            if self._stage_by_name(st.name) is not None:
                raise DockerfileError(f"duplicate stage name {words[2]!r}", ins.line)
        self._stages.append(st)
        return st

    def _stage_by_name(self, ref: str) -> "_Stage | None":
        ref = ref.lower()
        for i, st in enumerate(self._stages):
            if (st.name and st.name == ref) or str(i) == ref:
                return st
        return None

    async def _resolve_image(self, name: str, ins: Instruction) -> Image:
        try:
            return self.host.images.resolve(name)
        except NotFound:
            raise BuildError(f"{ins.cmd} {name} (Dockerfile line {ins.line}): no such image "
                             "(aiorun build does not pull: import or load it first)") from None

    def _arg(self, st: _Stage, ins: Instruction, meta_args: dict[str, str]) -> None:
        name, eq, default = ins.rest.partition("=")
        self._used_args.add(name)
        if name in self.buildargs:
            val = self.buildargs[name]
        elif eq:
            val = expand_word(default, self._expand_env(st))
        else:
            val = meta_args.get(name, "")  # re-declared meta ARG inherits its value
        st.args[name] = val
        st.history.append(self._hist(f"ARG {ins.rest}", empty=True))

    def _metadata(self, st: _Stage, ins: Instruction) -> None:
        if ins.cmd == "MAINTAINER":
            st.author = expand_word(ins.rest, self._expand_env(st))
        else:
            apply_metadata(st.config, ins, self._expand_env(st))
        if ins.cmd == "CMD":
            st.cmd_set = True
        elif ins.cmd == "ENTRYPOINT" and not st.cmd_set:
            st.config.pop("Cmd", None)  # Docker: ENTRYPOINT resets an inherited CMD
        st.history.append(self._hist(f"/bin/sh -c #(nop) {ins.original}", empty=True))

    def _hist(self, created_by: str, empty: bool) -> dict[str, Any]:
        h: dict[str, Any] = {"created": now_rfc3339nano(), "created_by": created_by}
        if empty:
            h["empty_layer"] = True
        return h

    # --- layer-making steps ----------------------------------------------------------------
    # --- the build cache ---------------------------------------------------------------------
    def _sources_digest(self, st: _Stage, ins: Instruction) -> str:
        """The content of a COPY/ADD's context sources (paths, modes, link targets, bytes)."""
        h = hashlib.sha256()
        env = self._expand_env(st)
        words = [expand_word(w, env) for w in ins.json] if ins.json is not None \
            else expand_words(ins.rest, env)
        for pat in words[:-1]:
            if "://" in pat:
                continue
            for rel in self._match_sources(pat, self.context, self.ignore):
                top = resolve_in_root(self.context, rel)
                for path in _walk_sorted(top):
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

    async def _cache_key(self, st: _Stage, ins: Instruction, copy: bool) -> str:
        extra = ""
        if copy and "from" in ins.flags:
            ref = expand_word(ins.flags["from"], self._expand_env(st))
            src = self._stage_by_name(ref)
            extra = ",".join(src.layers) if src is not None else \
                ",".join((await self._resolve_image(ref, ins)).layers)
        elif copy:
            extra = await anyio.to_thread.run_sync(self._sources_digest, st, ins)
        c = st.config
        key = {"parent": st.layers, "env": c.get("Env"), "workdir": c.get("WorkingDir"),
               "user": c.get("User"), "shell": c.get("Shell"), "ins": ins.original,
               "args": sorted(st.args.items()) if not copy else None, "extra": extra}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        f = self.cache_dir / key
        try:
            entry = json.loads(f.read_text())
            if entry.get("empty"):
                return entry
            self.host.images.layer_tar(entry["diff_id"])
            if not self.host.storage.has_layer(entry["diff_id"]):
                raise NotFound(entry["diff_id"])
            return entry
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, NotFound):
            f.unlink(missing_ok=True)   # its layer was freed: the entry is stale
            return None

    def _cache_put(self, key: str, diff_id: str, created_by: str, empty: bool = False) -> None:
        self.cache_dir.mkdir(exist_ok=True)
        tmp = self.cache_dir / f".{key}.{secrets.token_hex(4)}"
        tmp.write_text(json.dumps({"diff_id": diff_id, "created_by": created_by,
                                   "empty": empty}))
        os.replace(tmp, self.cache_dir / key)

    async def _layer_step(self, st: _Stage, ins: Instruction, copy: bool
                          ) -> AsyncIterator[dict[str, Any]]:
        key = await self._cache_key(st, ins, copy)
        if not self.no_cache:
            hit = await anyio.to_thread.run_sync(self._cache_get, key)
            if hit is not None:
                if hit.get("empty"):
                    st.history.append(self._hist(hit["created_by"], empty=True))
                else:
                    st.layers.append(hit["diff_id"])
                    st.history.append(self._hist(hit["created_by"], empty=False))
                if not self.quiet:
                    yield self._msg(" ---> Using cache\n" + ("" if hit.get("empty") else
                                                            f" ---> {hit['diff_id'][:12]}\n"))
                return
        storage = self.host.storage
        cid = secrets.token_hex(32)
        hostname = cid[:12]
        init_files = {"/etc/hosts": b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
                                    b"ip6-loopback\n" + f"127.0.0.1\t{hostname}\n".encode(),
                      "/etc/hostname": f"{hostname}\n".encode(),
                      "/etc/resolv.conf": b""}
        await anyio.to_thread.run_sync(self._note_snapshot, cid)
        await anyio.to_thread.run_sync(storage.create_container, cid, list(st.layers),
                                       init_files)
        raw = self.work / f"{cid[:12]}.diff.tar"
        filtered = self.work / f"{cid[:12]}.layer.tar"
        mounted = False
        try:
            rootfs = Path(await anyio.to_thread.run_sync(storage.mount, cid))
            mounted = True
            wd = st.config.get("WorkingDir")
            if wd:
                await anyio.to_thread.run_sync(_mkdir_in_root, rootfs, wd)
            if copy and "from" in ins.flags:
                await self._copy_from(st, ins, rootfs)
                created_by = f"/bin/sh -c #(nop) {ins.original}"
            elif copy:
                await anyio.to_thread.run_sync(self._copy, st, ins, rootfs, self.context,
                                               self.ignore)
                created_by = f"/bin/sh -c #(nop) {ins.original}"
            else:
                argv = command_form(ins, st.config.get("Shell"))
                if not self.quiet:
                    yield self._msg(f" ---> Running in {hostname}\n")
                async for m in self._run_cmd(st, cid, rootfs, argv, hostname):
                    yield m
                created_by = " ".join(argv)
                if not self.quiet:
                    yield self._msg(f"Removing intermediate container {hostname}\n")
            await anyio.to_thread.run_sync(storage.unmount, cid)
            mounted = False

            def _diff() -> None:
                with open(raw, "wb") as f:
                    storage.diff(cid, f)
                if has_excluded(raw):
                    filter_diff(raw, filtered)
                    raw.unlink()
                else:
                    os.replace(raw, filtered)
            await anyio.to_thread.run_sync(_diff)
            if await anyio.to_thread.run_sync(tar_is_empty, filtered):
                # Nothing changed: no layer, an empty_layer history entry (as BuildKit does).
                # Identical empty layers stacked twice would also be one lower dir twice.
                st.history.append(self._hist(created_by, empty=True))
                await anyio.to_thread.run_sync(self._cache_put, key, "", created_by, True)
                return
            diff_id = await self.host.images.add_layer(filtered)
            self._added.append(diff_id)
            st.layers.append(diff_id)
            st.history.append(self._hist(created_by, empty=False))
            await anyio.to_thread.run_sync(self._cache_put, key, diff_id, created_by)
            if not self.quiet:
                yield self._msg(f" ---> {diff_id[:12]}\n")
        finally:
            with anyio.CancelScope(shield=True):
                def _cleanup() -> None:
                    if mounted:
                        storage.unmount(cid)
                    storage.remove_container(cid)
                    raw.unlink(missing_ok=True)
                    filtered.unlink(missing_ok=True)
                await anyio.to_thread.run_sync(_cleanup)

    async def _run_cmd(self, st: _Stage, cid: str, rootfs: Path, argv: list[str],
                       hostname: str) -> AsyncIterator[dict[str, Any]]:
        step = RunStep(id=cid, rootfs=rootfs, argv=argv, env=self._run_env(st),
                       cwd=st.config.get("WorkingDir") or "/",
                       user=st.config.get("User") or "", hostname=hostname,
                       state_dir=self.work / cid[:12])
        try:
            async with self.host.run_command(step) as proc:
                async for data in proc.output():
                    if not self.quiet:
                        yield self._msg(data.decode(errors="replace"))
                exit_code = await proc.wait()
        except BuildError:
            raise
        except AiorunError as exc:
            code = exc.exit_code if isinstance(exc, CommandDidNotRun) else None
            raise BuildError(f"The command '{' '.join(argv)}' could not run: {exc.message}"
                             + (f" (exit code {code})" if code else "")) from None
        if exit_code != 0:
            raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: "
                             f"{exit_code}")

    # --- COPY / ADD (runs in a worker thread) ------------------------------------------------
    async def _copy_from(self, st: _Stage, ins: Instruction, rootfs: Path) -> None:
        """``COPY --from=<stage|image>``: the source is a read-only snapshot of that stage's
        (or image's) layers, mounted for the copy and removed afterwards."""
        ref = expand_word(ins.flags["from"], self._expand_env(st))
        src_stage = self._stage_by_name(ref)
        if src_stage is st:
            raise DockerfileError(f"COPY --from={ref}: a stage cannot copy from itself",
                                  ins.line)
        layers = list(src_stage.layers) if src_stage is not None else \
            list((await self._resolve_image(ref, ins)).layers)
        storage = self.host.storage
        sid = secrets.token_hex(32)
        await anyio.to_thread.run_sync(self._note_snapshot, sid)
        await anyio.to_thread.run_sync(storage.create_container, sid, layers, {})
        mounted = False
        try:
            src_root = Path(await anyio.to_thread.run_sync(storage.mount, sid))
            mounted = True
            await anyio.to_thread.run_sync(self._copy, st, ins, rootfs, src_root, None)
        finally:
            with anyio.CancelScope(shield=True):
                def _cleanup() -> None:
                    if mounted:
                        storage.unmount(sid)
                    storage.remove_container(sid)
                await anyio.to_thread.run_sync(_cleanup)

    def _copy(self, st: _Stage, ins: Instruction, rootfs: Path, src_root: Path,
              ignore: DockerIgnore | None) -> None:
        """Copy sources under ``src_root`` (the context, or another stage's rootfs; every path
        resolved inside it) to the destination inside ``rootfs``."""
        env = self._expand_env(st)
        words = [expand_word(w, env) for w in ins.json] if ins.json is not None \
            else expand_words(ins.rest, env)
        srcs, dest = words[:-1], words[-1]
        uid, gid = _parse_chown(ins.flags.get("chown"), rootfs, env)
        mode = None
        if "chmod" in ins.flags:
            try:
                mode = int(expand_word(ins.flags["chmod"], env), 8)
            except ValueError:
                raise InvalidArgument(f"invalid --chmod value {ins.flags['chmod']!r}") from None
        wd = st.config.get("WorkingDir") or "/"
        dest_dir_syntax = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
        if not dest.startswith("/"):
            dest = posixpath.join(wd, dest)
        dest = posixpath.normpath(dest)
        sources: list[str] = []
        for s in srcs:
            if "://" in s:
                raise InvalidArgument(f"{ins.cmd} from a URL ({s}) is not supported: "
                                      "aiorun build has no network access")
            sources += self._match_sources(s, src_root, ignore)
        if len(sources) > 1 and not dest_dir_syntax:
            raise InvalidArgument(f"When using {ins.cmd} with more than one source file, the "
                                  "destination must be a directory and end with a /")
        for rel in sources:
            src = resolve_in_root(src_root, rel)
            try:
                sst = os.lstat(src)
            except FileNotFoundError:
                raise InvalidArgument(f"file not found in build context or excluded by "
                                      f".dockerignore: stat {rel}: file does not exist") from None
            if stat.S_ISDIR(sst.st_mode):
                target = _mkdir_in_root(rootfs, dest)
                self._copy_dir(src, target, rel, rootfs, dest, uid, gid, mode, ignore)
            elif ins.cmd == "ADD" and _is_archive(src):
                target = _mkdir_in_root(rootfs, dest)
                _extract_archive(src, target)
            else:
                existing = resolve_in_root(rootfs, dest)
                if dest_dir_syntax or existing.is_dir():
                    target_path = posixpath.join(dest, posixpath.basename(rel))
                else:
                    target_path = dest
                parent = _mkdir_in_root(rootfs, posixpath.dirname(target_path) or "/")
                _copy_file(src, parent / posixpath.basename(target_path), sst, uid, gid, mode)

    def _match_sources(self, pattern: str, root: Path, ignore: DockerIgnore | None
                       ) -> list[str]:
        rel = posixpath.normpath("/" + pattern).lstrip("/") or "."
        if not any(c in rel for c in "*?["):
            if rel != "." and ignore is not None and ignore.excluded(rel):
                raise InvalidArgument(f"file not found in build context or excluded by "
                                      f".dockerignore: stat {pattern}: file does not exist")
            return [rel]
        import glob
        # glob in the source tree: symlinked directories are matched, never left through
        found = sorted(p for p in glob.glob(rel, root_dir=root, include_hidden=True)
                       if ignore is None or not ignore.excluded(p))
        if not found:
            raise InvalidArgument(f"no source files were specified (no match for {pattern!r})")
        return found

    def _copy_dir(self, src: Path, target: Path, rel: str, rootfs: Path, dest: str,
                  uid: int, gid: int, mode: int | None, ignore: DockerIgnore | None) -> None:
        """Copy the content of context dir ``src`` into ``target`` (inside the rootfs)."""
        with os.scandir(src) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            erel = posixpath.join(rel, e.name) if rel != "." else e.name
            if ignore is not None and ignore.excluded(erel):
                continue
            cpath = posixpath.join(dest, e.name)
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = _mkdir_in_root(rootfs, cpath)
                os.chmod(sub, mode if mode is not None else stat.S_IMODE(st.st_mode))
                os.lchown(sub, uid, gid)
                self._copy_dir(Path(e.path), sub, erel, rootfs, cpath, uid, gid, mode, ignore)
                os.utime(sub, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                d = target / e.name
                _copy_file(Path(e.path), d, st, uid, gid, mode)


# --- file helpers (worker threads) ------------------------------------------------------------

def _mkdir_in_root(rootfs: Path, path: str) -> Path:
    """``mkdir -p`` of container path ``path``, every component resolved inside ``rootfs``."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
    cur = "/"
    host = Path(rootfs)
    for p in parts:
        cur = posixpath.join(cur, p)
        host = resolve_in_root(rootfs, cur)
        try:
            os.mkdir(host, 0o755)
        except FileExistsError:
            if not host.is_dir():
                raise InvalidArgument(f"cannot create directory {cur}: a file is in the way")
    return host


def _unlink_existing(d: Path) -> None:
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"cannot copy over directory {d.name}")
    os.unlink(d)


def _copy_file(src: Path, d: Path, st: os.stat_result, uid: int, gid: int,
               mode: int | None) -> None:
    _unlink_existing(d)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), d)
        os.lchown(d, uid, gid)
        return
    if not stat.S_ISREG(st.st_mode):
        return  # sockets, fifos, devices are not copied
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        with open(fd, "rb", closefd=False) as fi, open(d, "xb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
    finally:
        os.close(fd)
    os.chmod(d, mode if mode is not None else stat.S_IMODE(st.st_mode) & 0o777)
    os.chown(d, uid, gid)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))


def _is_archive(p: Path) -> bool:
    try:
        return p.is_file() and tarfile.is_tarfile(p)
    except OSError:
        return False


def _extract_archive(src: Path, target: Path) -> None:
    """ADD of a local tar (plain/gzip/bzip2/xz): unpacked into ``target``; nothing may land
    outside it (the ``tar`` filter refuses ``..``, absolute names and writes through links
    that leave ``target``); device nodes are skipped."""
    try:
        with tarfile.open(src, "r:*") as tar:
            for m in tar:
                if m.ischr() or m.isblk() or m.isfifo():
                    continue
                tar.extract(m, target, filter="tar")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidArgument(f"cannot extract {src.name}: {exc}") from None


def _lookup(rootfs: Path, file: str, name: str) -> int | None:
    try:
        text = resolve_in_root(rootfs, file).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        f = line.split(":")
        if len(f) > 2 and f[0] == name:
            try:
                return int(f[2])
            except ValueError:
                return None
    return None


def _parse_chown(spec: str | None, rootfs: Path, env: dict[str, str]) -> tuple[int, int]:
    """``--chown=user[:group]`` (names looked up in the image's /etc/passwd and /etc/group)."""
    if not spec:
        return 0, 0
    spec = expand_word(spec, env)
    user, _, group = spec.partition(":")

    def one(v: str, file: str, what: str) -> int:
        if v.isdigit():
            return int(v)
        n = _lookup(rootfs, file, v)
        if n is None:
            raise InvalidArgument(f"unable to find {what} {v!r} in the image's {file}")
        return n
    uid = one(user, "/etc/passwd", "user")
    if group:
        gid = one(group, "/etc/group", "group")
    elif user.isdigit():
        gid = uid
    else:
        gid = uid
        try:
            for line in resolve_in_root(rootfs, "/etc/passwd").read_text().splitlines():
                f = line.split(":")
                if len(f) > 3 and f[0] == user:
                    gid = int(f[3])
        except (OSError, ValueError):
            pass
    return uid, gid


def _walk_sorted(top: Path):
    """``top`` itself, then everything below it, in a stable order; links not followed."""
    yield str(top)
    if top.is_dir() and not top.is_symlink():
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for n in sorted(dirnames + filenames):
                yield os.path.join(dirpath, n)
