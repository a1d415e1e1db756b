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

The builder reaches the daemon only through :class:`~aiorun.images.build.host.BuildHost`.
Its rooms: :mod:`.stage` (a stage's state), :mod:`.copyfiles` (COPY/ADD file work),
:mod:`.cache` (the build cache), :mod:`.workdirs` (work directories and the crash sweep);
this module drives the steps.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

import anyio
import anyio.to_thread

from aiorun.core.faultpoint import fault_point
from aiorun.errors import AiorunError, InvalidArgument, NotFound
from aiorun.images.build.cache import BuildCache, cache_key
from aiorun.images.build.context import DockerIgnore
from aiorun.images.build.copyfiles import copy_sources, mkdir_in_root
from aiorun.images.build.dockerfile import (METADATA, DockerfileError, Instruction, parse,
                                            apply_metadata, arg_pairs, command_form,
                                            expand_word)
from aiorun.images.build.host import (BuildError, BuildHost, CommandDidNotRun,
                                      RunStep)
from aiorun.images.build.platforms import PLATFORM_ARGS, check_from_platform, platform_args
from aiorun.images.build.runmounts import MountOpts, RunSetup, bind_digest, mounts_of
from aiorun.images.build.stage import Stage, history_entry
from aiorun.images.build.workdirs import ACTIVE, note_snapshot, sweep_stale  # noqa: F401 (re-export)
from aiorun.images.diff import filter_diff, has_excluded, tar_is_empty
from aiorun.images.oci import now_rfc3339 as now_rfc3339nano

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.images.store import Image

#: Build args Docker predefines (usable without an ARG line, never in the image).
PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                   "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


class Builder:
    def __init__(self, host: BuildHost, context_dir: Path, instructions: list[Instruction],
                 *, tags: list[str] | None = None, buildargs: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None, quiet: bool = False,
                 no_cache: bool = False, target: str | None = None,
                 pull: bool = False, build_secrets: dict[str, bytes] | None = None) -> None:
        self.host = host
        self.secrets = dict(build_secrets or {})    # RUN --mount=type=secret (memory only)
        self.pull = pull                            # --pull: FROM images pulled again
        self._pulled: set[str] = set()
        self.target = (target or "").lower() or None
        self.context = Path(context_dir)
        self.instructions = instructions
        self.tags = list(tags or [])
        self.buildargs = dict(buildargs or {})
        self.labels = dict(labels or {})
        self.quiet = quiet
        self.no_cache = no_cache
        self.ignore = DockerIgnore.from_dir(self.context)
        self.cache = BuildCache(host.cache_root, host.images, host.storage, self.context,
                                self.ignore)
        self.image_id: str | None = None
        self._added: list[str] = []                # layers this build added (pinned)
        self._stages: list[Stage] = []             # every stage so far (multi-stage builds)
        self._used_args: set[str] = set()
        self.work = host.work_root / f"build-{secrets.token_hex(6)}"

    # --- helpers ---------------------------------------------------------------------------
    def _msg(self, text: str) -> dict[str, Any]:
        return {"stream": text}

    # --- the run -------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[dict[str, Any]]:
        self.work.mkdir(parents=True, exist_ok=True)
        ACTIVE.add(self.work.name)
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
                ACTIVE.discard(self.work.name)

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
        meta_args: dict[str, str] = platform_args()              # TARGETARCH & co.
        for ins in ins_list[:first_from]:                       # ARG before FROM
            for name, default in arg_pairs(ins):
                self._used_args.add(name)
                if name in self.buildargs:
                    meta_args[name] = self.buildargs[name]
                elif default is not None:
                    meta_args[name] = expand_word(default, meta_args, ins.escape)
        steps = ins_list[first_from:]
        for ins in steps:             # FROM --platform: checked before any step runs
            if ins.cmd == "FROM" and "platform" in ins.flags:
                problem = check_from_platform(
                    expand_word(ins.flags.get("platform", ""), meta_args, ins.escape))
                if problem:
                    raise DockerfileError(problem, ins.line)
        if self.target is not None:   # --target: stop at the end of that stage
            names = [i for i, x in enumerate(steps) if x.cmd == "FROM"
                     and len(x.args) == 3 and x.args[2].lower() == self.target]
            if not names:
                raise DockerfileError(f"target stage {self.target!r} could not be found")
            nxt = [i for i, x in enumerate(steps) if x.cmd == "FROM" and i > names[0]]
            steps = steps[:nxt[0]] if nxt else steps
        total = len(steps)
        self._st = Stage()
        for n, ins in enumerate(steps, 1):
            if not self.quiet:
                yield self._msg(f"Step {n}/{total} : {ins.original}\n")
            async for m in self._exec(ins, meta_args):
                yield m
        unused = sorted(set(self.buildargs) - self._used_args - set(PREDEFINED_ARGS)
                        - set(PLATFORM_ARGS))
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

    async def _finish(self, st: Stage) -> AsyncIterator[dict[str, Any]]:
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

    async def _from(self, ins: Instruction, meta_args: dict[str, str]) -> Stage:
        words = [expand_word(ins.args[0], meta_args, ins.escape)] + ins.args[1:]
        name = words[0]
        prev = self._stage_by_name(name)
        if prev is not None:
            st = prev.fork()
            self._from_id = f"stage {prev.name or self._stages.index(prev)}"
        elif name == "scratch":
            st = Stage()
            self._from_id = "scratch"
        else:
            img = await self._resolve_image(name, ins)
            st = Stage()
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

    def _stage_by_name(self, ref: str) -> "Stage | None":
        ref = ref.lower()
        for i, st in enumerate(self._stages):
            if (st.name and st.name == ref) or str(i) == ref:
                return st
        return None

    async def _resolve_image(self, name: str, ins: Instruction) -> Image:
        """The image ``name``: pulled when missing (or with ``--pull``, once per build)."""
        if not (self.pull and name not in self._pulled):
            try:
                return self.host.images.resolve(name)
            except NotFound:
                pass
        self._pulled.add(name)
        try:
            return await self.host.pull_image(name)
        except AiorunError as exc:
            raise BuildError(f"{ins.cmd} {name} (Dockerfile line {ins.line}): no such image "
                             f"here, and pulling it failed: {exc.message}") from None

    def _arg(self, st: Stage, ins: Instruction, meta_args: dict[str, str]) -> None:
        for name, default in arg_pairs(ins):
            self._used_args.add(name)
            if name in self.buildargs:
                val = self.buildargs[name]
            elif default is not None:
                val = expand_word(default, st.substitution_env(), ins.escape)
            elif name in meta_args:
                val = meta_args[name]      # re-declared meta ARG inherits its value
            else:
                continue                   # declared without a value: stays unset
            st.args[name] = val
        st.history.append(history_entry(f"ARG {ins.rest}", empty=True))

    def _metadata(self, st: Stage, ins: Instruction) -> None:
        if ins.cmd == "MAINTAINER":
            st.author = ins.args[0]          # BuildKit does not expand MAINTAINER
        else:
            apply_metadata(st.config, ins, st.substitution_env())
        if ins.cmd == "CMD":
            st.cmd_set = True
        elif ins.cmd == "ENTRYPOINT" and not st.cmd_set:
            st.config.pop("Cmd", None)  # Docker: ENTRYPOINT resets an inherited CMD
        st.history.append(history_entry(f"/bin/sh -c #(nop) {ins.original}", empty=True))

    # --- layer-making steps ----------------------------------------------------------------
    async def _cache_key(self, st: Stage, ins: Instruction, copy: bool) -> str:
        extra = ""
        if copy and "from" in ins.flags:
            ref = expand_word(ins.flags.get("from", ""), st.substitution_env(), ins.escape)
            src = self._stage_by_name(ref)
            extra = ",".join(src.layers) if src is not None else \
                ",".join((await self._resolve_image(ref, ins)).layers)
        elif copy:
            extra = await anyio.to_thread.run_sync(self.cache.sources_digest, st, ins)
        elif "mount" in ins.flags:     # RUN --mount=type=bind: the content it sees
            mounts = self._mounts(st, ins)
            extra = await anyio.to_thread.run_sync(bind_digest, mounts, self.context,
                                                   self.ignore)
            for ref, layers in sorted((await self._mount_sources(st, ins, mounts)).items()):
                extra += f",{ref}:" + ",".join(layers)
        return cache_key(st, ins, copy, extra)

    def _mounts(self, st: Stage, ins: Instruction) -> list[MountOpts]:
        return mounts_of(ins, st.substitution_env(), st.config.get("WorkingDir") or "/")

    async def _mount_sources(self, st: Stage, ins: Instruction, mounts: list[MountOpts]
                             ) -> dict[str, list[str]]:
        """The layers of each stage or image a RUN's bind mounts come ``from``."""
        out: dict[str, list[str]] = {}
        for m in mounts:
            if m.from_ and m.from_ not in out:
                src = self._stage_by_name(m.from_)
                if src is st:
                    raise DockerfileError(f"RUN --mount from={m.from_}: a stage cannot mount "
                                          "itself", ins.line)
                out[m.from_] = list(src.layers) if src is not None else \
                    list((await self._resolve_image(m.from_, ins)).layers)
        return out

    async def _layer_step(self, st: Stage, ins: Instruction, copy: bool
                          ) -> AsyncIterator[dict[str, Any]]:
        key = await self._cache_key(st, ins, copy)
        if not self.no_cache:
            hit = await anyio.to_thread.run_sync(self.cache.get, key)
            if hit is not None:
                if hit.get("empty"):
                    st.history.append(history_entry(hit["created_by"], empty=True))
                else:
                    st.layers.append(hit["diff_id"])
                    st.history.append(history_entry(hit["created_by"], empty=False))
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
        await anyio.to_thread.run_sync(note_snapshot, self.work, cid)
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
                await anyio.to_thread.run_sync(mkdir_in_root, rootfs, wd)
            if copy and "from" in ins.flags:
                await self._copy_from(st, ins, rootfs)
                created_by = f"/bin/sh -c #(nop) {ins.original}"
            elif copy:
                await anyio.to_thread.run_sync(copy_sources, st, ins, rootfs, self.context,
                                               self.ignore)
                created_by = f"/bin/sh -c #(nop) {ins.original}"
            else:
                argv = command_form(ins, st.config.get("Shell"))
                if not self.quiet:
                    yield self._msg(f" ---> Running in {hostname}\n")
                mounts = self._mounts(st, ins)
                setup = RunSetup(ins, self.work / cid[:12], rootfs, mounts,
                                 cache_root=self.host.cache_root, context=self.context,
                                 ignore=self.ignore, secrets=self.secrets,
                                 sources=await self._mount_sources(st, ins, mounts),
                                 storage=storage,
                                 note=lambda sid: note_snapshot(self.work, sid))
                async for m in self._run_cmd(st, cid, rootfs, argv, hostname, setup):
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
                st.history.append(history_entry(created_by, empty=True))
                await anyio.to_thread.run_sync(self.cache.put, key, "", created_by, True)
                return
            diff_id = await self.host.images.add_layer(filtered)
            self._added.append(diff_id)
            st.layers.append(diff_id)
            st.history.append(history_entry(created_by, empty=False))
            await anyio.to_thread.run_sync(self.cache.put, key, diff_id, created_by)
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

    async def _run_cmd(self, st: Stage, cid: str, rootfs: Path, argv: list[str],
                       hostname: str, setup: RunSetup) -> AsyncIterator[dict[str, Any]]:
        try:
            mounts = await anyio.to_thread.run_sync(setup.prepare)
            step = RunStep(id=cid, rootfs=rootfs, argv=argv, env=st.run_env(),
                           cwd=st.config.get("WorkingDir") or "/",
                           user=st.config.get("User") or "", hostname=hostname,
                           state_dir=self.work / cid[:12], mounts=tuple(mounts),
                           network=setup.network())
            async for m in self._run_step(step, argv):
                yield m
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(setup.cleanup)

    async def _run_step(self, step: RunStep, argv: list[str]) -> AsyncIterator[dict[str, Any]]:
        try:
            async with self.host.run_command(step) as proc:
                async for data in proc.output():
                    if not self.quiet:
                        yield self._msg(data.decode(errors="replace"))
                exit_code = await proc.wait()
                fault_point("build.step")
        except BuildError:
            raise
        except AiorunError as exc:
            code = exc.exit_code if isinstance(exc, CommandDidNotRun) else None
            raise BuildError(f"The command '{' '.join(argv)}' could not run: {exc.message}"
                             + (f" (exit code {code})" if code else "")) from None
        if exit_code != 0:
            raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: "
                             f"{exit_code}")

    # --- COPY --from (the file work itself is in .copyfiles, in a worker thread) ----------
    async def _copy_from(self, st: Stage, ins: Instruction, rootfs: Path) -> None:
        """``COPY --from=<stage|image>``: the source is a read-only snapshot of that stage's
        (or image's) layers, mounted for the copy and removed afterwards."""
        ref = expand_word(ins.flags.get("from", ""), st.substitution_env(), ins.escape)
        src_stage = self._stage_by_name(ref)
        if src_stage is st:
            raise DockerfileError(f"COPY --from={ref}: a stage cannot copy from itself",
                                  ins.line)
        layers = list(src_stage.layers) if src_stage is not None else \
            list((await self._resolve_image(ref, ins)).layers)
        storage = self.host.storage
        sid = secrets.token_hex(32)
        await anyio.to_thread.run_sync(note_snapshot, self.work, sid)
        await anyio.to_thread.run_sync(storage.create_container, sid, layers, {})
        mounted = False
        try:
            src_root = Path(await anyio.to_thread.run_sync(storage.mount, sid))
            mounted = True
            await anyio.to_thread.run_sync(copy_sources, st, ins, rootfs, src_root, None)
        finally:
            with anyio.CancelScope(shield=True):
                def _cleanup() -> None:
                    if mounted:
                        storage.unmount(sid)
                    storage.remove_container(sid)
                await anyio.to_thread.run_sync(_cleanup)
