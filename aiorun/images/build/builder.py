"""The Dockerfile builder (Docker's classic builder semantics).

``Builder(host, context_dir, instructions, ...).run()`` is an async generator of Docker's
build JSON messages (``{"stream": ...}``, ``{"aux": {"ID": ...}}``); on failure it raises
(the route turns that into ``{"error", "errorDetail"}``). The final image id is
``builder.image_id``.

* Each instruction is one history entry. Metadata instructions (CMD ENV EXPOSE LABEL USER
  WORKDIR VOLUME STOPSIGNAL ENTRYPOINT SHELL ARG MAINTAINER) change the config only:
  ``empty_layer: true``. A COPY/ADD/RUN that changed nothing is ``empty_layer: true`` too and
  adds no layer (as BuildKit does).
* COPY/ADD and RUN make a layer on a *snapshot* (:mod:`.snapshot`: a storage-driver
  container over the current layers; no intermediate images). COPY/ADD write into it (every
  path resolved inside it); RUN runs there through the runtime (own namespaces; network
  "none": loopback only, or the host's with ``networkmode=host``; ``RUN --network=none``
  overrides the build's), with its ``--mount``s (:mod:`.runmounts`), and streams its output
  (stderr marked as Docker marks it). The snapshot's diff becomes the layer.
* WORKDIR is created (in the next layer-making step) when it does not exist, like the classic
  builder does.
* Build cache (:mod:`.cache`): a step whose key matches an earlier build's reuses its layer
  ("Using cache"); ``nocache`` skips lookups; ``cachefrom`` images may provide RUN layers.
* Nothing is left behind on failure: snapshots are unmounted and removed, layers added by a
  failed build are unpinned and freed, no image is created.
* Stages (:mod:`.graph`): the global ARGs and every ``FROM --platform`` are checked first;
  only the stages the target needs are built, each in a task of a task group the build runs
  in the daemon's (``BuildHost.spawn``), so independent stages run at once; a stage waits for
  the stages it names (``FROM``, ``--from``, ``RUN --mount=...,from=``). Their messages come
  through one memory stream, prefixed by stage (:mod:`.output`) when several stages build;
  a stage's failure cancels the others and is raised by :meth:`Builder.run`. The images it
  ends with: :mod:`.finish`.

The builder reaches the daemon only through :class:`~aiorun.images.build.host.BuildHost`.
Its other rooms: :mod:`.stage` (a stage's state), :mod:`.copyfiles` (COPY/ADD file work),
:mod:`.fetch` (ADD of a URL), :mod:`.baseimages` (images named, pulled once),
:mod:`.workdirs` (work directories and the crash sweep); this module drives the stages and
their steps.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream

from aiorun.errors import InvalidArgument, NotFound
from aiorun.images.build.baseimages import ImageResolver
from aiorun.images.build.cache import BuildCache, apply_hit, cache_from_hit, cache_key
from aiorun.images.build.context import DockerIgnore
from aiorun.images.build.copyfiles import check_copy_flags, copy_sources, mkdir_in_root
from aiorun.images.build.fetch import fetch_urls, file_digest
from aiorun.images.build.finish import announce, final_image, keep_stage_images
from aiorun.images.build.flags import flag, flag_bool
from aiorun.images.build.graph import (StageDef, check_platforms, global_args, needed,
                                       split_stages, stage_index, target_index)
from aiorun.images.build.output import StageOutput
from aiorun.images.build.snapshot import Snapshot, hosts_file, run_step
from aiorun.images.build.dockerfile import (METADATA, DockerfileError, Instruction, parse,
                                            apply_metadata, arg_pairs, command_form,
                                            expand_word)
from aiorun.images.build.host import BuildError, BuildHost, RunStep
from aiorun.images.build.platforms import PLATFORM_ARGS
from aiorun.images.build.runmounts import MountOpts, RunSetup, bind_digest, mounts_of
from aiorun.images.build.stage import Stage, history_entry
from aiorun.images.build.workdirs import ACTIVE, note_snapshot, sweep_stale  # noqa: F401 (re-export)

#: Build args Docker predefines (usable without an ARG line, never in the image).
PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                   "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


class Builder:
    def __init__(self, host: BuildHost, context_dir: Path, instructions: list[Instruction],
                 *, tags: list[str] | None = None, buildargs: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None, quiet: bool = False,
                 no_cache: bool = False, target: str | None = None,
                 pull: bool = False, dockerfile: str = "Dockerfile",
                 network: str = "none", extra_hosts: list[tuple[str, str]] | None = None,
                 cache_from: list[str] | None = None,
                 build_secrets: dict[str, bytes] | None = None,
                 build_ssh: dict[str, str] | None = None,
                 allow: frozenset[str] = frozenset()) -> None:
        self.host = host
        self.allow = allow                          # entitlements (.entitlements)
        self.secrets = dict(build_secrets or {})    # RUN --mount=type=secret (memory only)
        self.ssh = dict(build_ssh or {})            # RUN --mount=type=ssh: id -> socket
        self.pull = pull                            # --pull: FROM images pulled again
        self.images = ImageResolver(host, pull)     # FROM/--from images, pulled once
        self.target = target or None
        self.context = Path(context_dir)
        self.instructions = instructions
        self.tags = list(tags or [])
        self.buildargs = dict(buildargs or {})
        self.labels = dict(labels or {})
        self.quiet = quiet
        self.no_cache = no_cache
        self.network = network                      # RUN steps: "none" or "host"
        self.extra_hosts = list(extra_hosts or [])  # (name, address) for RUN's /etc/hosts
        self.cache_from = list(cache_from or [])
        self._cache_from_configs: list[dict[str, Any]] = []
        self.ignore = DockerIgnore.from_dir(self.context, dockerfile)
        self.cache = BuildCache(host.cache_root, host.images, host.storage, self.context,
                                self.ignore)
        self.image_id: str | None = None
        self._added: list[str] = []                # layers this build added (pinned)
        self._used_args: set[str] = set()
        self.work = host.work_root / f"build-{secrets.token_hex(6)}"
        # the stage graph (set by _run)
        self._defs: list[StageDef] = []
        self._results: dict[int, Stage] = {}
        self._done: dict[int, anyio.Event] = {}
        self._started: set[int] = set()
        self._running = 0
        self._prefixed = False
        self._meta_args: dict[str, str] = {}
        self._send: MemoryObjectSendStream[tuple[str, int, Any]] | None = None
        self._tg: anyio.abc.TaskGroup | None = None

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
                    await self._free_layers(list(self._added))
                await anyio.to_thread.run_sync(
                    lambda: shutil.rmtree(self.work, ignore_errors=True))
                ACTIVE.discard(self.work.name)

    async def _free_layers(self, layers: list[str]) -> None:
        """Unpin ``layers`` (added by this build, in no image) and free them."""
        images = self.host.images
        for h in layers:
            images.release_layer(h)
        if layers:
            try:
                await images.gc_layers(list(layers))
            except Exception:  # freeing is best effort; start() collects orphans anyway
                pass

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        ins_list = self.instructions
        first_from = next(i for i, x in enumerate(ins_list) if x.cmd == "FROM")
        meta_args = self._meta_args = global_args(ins_list[:first_from], self.buildargs,
                                                  self._used_args)
        check_platforms(ins_list[first_from:], meta_args)     # before any stage starts
        self._defs = split_stages(ins_list[first_from:], meta_args)
        target = target_index(self._defs, self.target)
        need = needed(self._defs, target)
        self._prefixed = len(need) > 1
        self._done = {sd.index: anyio.Event() for sd in self._defs}
        for ref in self.cache_from:
            try:
                self._cache_from_configs.append(self.host.images.resolve(ref).config)
            except NotFound:
                if not self.quiet:      # Docker's classic builder skips it too
                    yield {"stream": f"[Warning] --cache-from image {ref} not found, "
                                     "skipping\n"}
        send, recv = anyio.create_memory_object_stream[tuple[str, int, Any]](64)
        self._send = send
        # The stages run in the daemon's task group, not in this generator: a task group
        # must not stay open across a yield (the generator may be closed from another
        # cancel scope). Stage tasks never raise: a failure comes through the stream, and
        # this generator cancels the others and raises it. However the generator ends, the
        # stages are cancelled and waited for (their clean-up is shielded) before it does.
        scope = anyio.CancelScope()
        finished = anyio.Event()

        async def stages() -> None:
            try:
                with scope:
                    async with anyio.create_task_group() as tg:
                        self._tg = tg
                        for i in need:
                            self._start(i)
            finally:
                finished.set()
        error: BaseException | None = None
        spawned = False
        try:
            self.host.spawn(stages)
            spawned = True
            async for kind, _i, item in recv:
                if kind == "msg":
                    yield item
                elif kind == "error":
                    error = item
                    break
                else:
                    self._running -= 1
                    if self._running == 0:
                        break
        finally:
            scope.cancel()
            if spawned:
                with anyio.CancelScope(shield=True):
                    await finished.wait()
            send.close()
            recv.close()
        if error is not None:
            raise error
        unused = sorted(set(self.buildargs) - self._used_args - set(PREDEFINED_ARGS)
                        - set(PLATFORM_ARGS))
        if unused and not self.quiet:
            yield {"stream": f"[Warning] One or more build-args {unused} were not consumed\n"}
        async for m in self._finish(target):
            yield m

    def _start(self, i: int) -> None:
        """Start building stage ``i`` (once) in the stages' task group."""
        if i in self._started:
            return
        assert self._tg is not None
        self._started.add(i)
        self._running += 1
        self._tg.start_soon(self._stage_task, i)

    async def _stage_task(self, i: int) -> None:
        assert self._send is not None
        sd = self._defs[i]
        out = StageOutput(sd.label, len(sd.instructions), self._prefixed)
        try:
            async for m in self._build_stage(sd, out):
                await self._send.send(("msg", i, m))
            await self._send.send(("end", i, None))
        except Exception as exc:    # cancellation is not caught: it is the build's end
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._send.send(("error", i, exc))

    async def _stage(self, i: int) -> Stage:
        """Stage ``i``, once built (started now if nothing started it: a ``--from`` only a
        stage ARG names)."""
        self._start(i)
        await self._done[i].wait()
        return self._results[i]

    async def _build_stage(self, sd: StageDef, out: StageOutput
                           ) -> AsyncIterator[dict[str, Any]]:
        st = Stage()
        for n, ins in enumerate(sd.instructions, 1):
            if not self.quiet:
                yield out.step(n, ins.original)
            try:
                if ins.cmd == "FROM":
                    st, from_id = await self._from(sd, ins)
                    if not self.quiet:
                        yield out.message(self._msg(f" ---> {from_id}\n"))
                    triggers = list(st.config.get("OnBuild") or [])
                    if triggers:
                        st.config["OnBuild"] = None     # triggers run once, in the child build
                        if not self.quiet:
                            yield out.message(self._msg(
                                f"# Executing {len(triggers)} build trigger"
                                f"{'s' if len(triggers) > 1 else ''}\n"))
                        for t in triggers:
                            trig = parse("FROM scratch\n" + t)[1]
                            trig.line = ins.line
                            async for m in self._exec(st, sd, trig):
                                yield out.message(m)
                else:
                    async for m in self._exec(st, sd, ins):
                        yield out.message(m)
            except DockerfileError:
                raise
            except InvalidArgument as exc:
                raise BuildError(f"{ins.cmd} failed (Dockerfile line {ins.line}): "
                                 f"{exc.message}") from None
        self._results[sd.index] = st
        self._done[sd.index].set()

    # --- helpers ---------------------------------------------------------------------------
    def _msg(self, text: str) -> dict[str, Any]:
        return {"stream": text}

    async def _exec(self, st: Stage, sd: StageDef, ins: Instruction
                    ) -> AsyncIterator[dict[str, Any]]:
        """Run one instruction (not FROM) on stage ``st``."""
        if ins.cmd == "ARG":
            self._arg(st, ins)
        elif ins.cmd in ("COPY", "ADD"):
            async for m in self._layer_step(st, sd, ins, copy=True):
                yield m
        elif ins.cmd == "RUN":
            async for m in self._layer_step(st, sd, ins, copy=False):
                yield m
        elif ins.cmd in METADATA:
            self._metadata(st, ins)
        else:  # pragma: no cover - parse() rejects these
            raise DockerfileError(f"{ins.cmd} is not supported", ins.line)

    async def _finish(self, target: int) -> AsyncIterator[dict[str, Any]]:
        """The images (:mod:`.finish`); the layers no image lists are freed."""
        images = self.host.images
        covered = await keep_stage_images(images, self._results, target, self._added)
        img = await final_image(images, self.cache, self._results[target], self.labels,
                                self.tags, self.no_cache, self._added)
        # create_image unpinned the layers it lists; the others this build made are freed
        await self._free_layers([h for h in self._added if h not in covered])
        self._added = []
        self.image_id = img.id
        for m in announce(self.host, img, self.tags, self.quiet):
            yield m

    # --- instructions ----------------------------------------------------------------------
    async def _from(self, sd: StageDef, ins: Instruction) -> tuple[Stage, str]:
        """The stage's start: an earlier stage, ``scratch`` or an image; and how the output
        names it."""
        dep = stage_index(self._defs, sd.base, sd.index)
        if dep is not None:
            st = (await self._stage(dep)).fork()
            from_id = f"stage {self._defs[dep].name or dep}"
        elif sd.base == "scratch":
            st = Stage()
            from_id = "scratch"
        else:
            img = await self.images.resolve(sd.base, ins)
            st = Stage()
            cfg = img.config
            st.layers = list(img.layers)
            st.config = dict(cfg.get("config") or {})
            st.history = list(cfg.get("history") or [])
            st.arch = cfg.get("architecture") or "amd64"
            st.os = cfg.get("os") or "linux"
            from_id = img.id.removeprefix("sha256:")[:12]
        st.name = sd.name
        return st, from_id

    async def _source_layers(self, sd: StageDef, ins: Instruction, ref: str) -> list[str]:
        """The layers ``--from=ref`` names: an earlier stage's (once it is built) or an
        image's."""
        if ref.lower() in (sd.name, str(sd.index)) and stage_index(
                self._defs, ref, sd.index) is None:
            what = "copy from" if ins.cmd != "RUN" else "mount"
            raise DockerfileError(f"{ins.cmd} {'--mount ' if ins.cmd == 'RUN' else '--'}"
                                  f"from={ref}: a stage cannot {what} itself", ins.line)
        dep = stage_index(self._defs, ref, sd.index)
        if dep is not None:
            return list((await self._stage(dep)).layers)
        return list((await self.images.resolve(ref, ins)).layers)

    def _arg(self, st: Stage, ins: Instruction) -> None:
        for name, default in arg_pairs(ins):
            self._used_args.add(name)
            if name in self.buildargs:
                val = self.buildargs[name]
            elif default is not None:
                val = expand_word(default, st.substitution_env(), ins.escape)
            elif name in self._meta_args:
                val = self._meta_args[name]    # re-declared meta ARG inherits its value
            else:
                continue                       # declared without a value: stays unset
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
    async def _cache_key(self, st: Stage, sd: StageDef, ins: Instruction, copy: bool,
                         downloads: dict[str, Path]) -> str:
        extra = ""
        ref = flag(ins, "from") if copy else None
        if ref is not None:
            ref = expand_word(ref, st.substitution_env(), ins.escape)
            extra = ",".join(await self._source_layers(sd, ins, ref))
        elif copy:
            extra = await anyio.to_thread.run_sync(self.cache.sources_digest, st, ins)
            for p in downloads.values():
                extra += "," + await anyio.to_thread.run_sync(file_digest, p)
        elif "mount" in ins.flags:     # RUN --mount=type=bind: the content it sees
            mounts = self._mounts(st, ins)
            extra = await anyio.to_thread.run_sync(bind_digest, mounts, self.context,
                                                   self.ignore)
            for ref, layers in sorted((await self._mount_sources(sd, ins, mounts)).items()):
                extra += f",{ref}:" + ",".join(layers)
        return cache_key(st, ins, copy, extra)

    def _mounts(self, st: Stage, ins: Instruction) -> list[MountOpts]:
        return mounts_of(ins, st.substitution_env(), st.config.get("WorkingDir") or "/")

    async def _mount_sources(self, sd: StageDef, ins: Instruction, mounts: list[MountOpts]
                             ) -> dict[str, list[str]]:
        """The layers of each stage or image a RUN's bind mounts come ``from`` (a stage once
        it is built: the graph made it a dependency)."""
        out: dict[str, list[str]] = {}
        for m in mounts:
            if m.from_ and m.from_ not in out:
                out[m.from_] = await self._source_layers(sd, ins, m.from_)
        return out

    async def _layer_step(self, st: Stage, sd: StageDef, ins: Instruction, copy: bool
                          ) -> AsyncIterator[dict[str, Any]]:
        link = copy and flag_bool(ins, "link")
        downloads: dict[str, Path] = {}
        if copy:
            check_copy_flags(ins, st.substitution_env())
            if ins.cmd == "ADD":
                downloads = await fetch_urls(ins, st.substitution_env(), self.work)
        key = await self._cache_key(st, sd, ins, copy, downloads)
        if not self.no_cache:
            hit = await anyio.to_thread.run_sync(self.cache.get, key)
            if hit is None:
                hit = cache_from_hit(self._cache_from_configs, st, ins, self.buildargs,
                                     self.host.storage)
                if hit is not None:     # its layer is local now: later builds hit it here
                    await anyio.to_thread.run_sync(self.cache.put, key, hit["diff_id"],
                                                   hit["created_by"])
            if hit is not None:
                text = apply_hit(st, hit)
                if not self.quiet:
                    yield self._msg(text)
                return
        link_layers = [] if link else list(st.layers)
        snap = Snapshot(self.host, self.work, link_layers, {})
        hostname = snap.id[:12]
        if not link:    # COPY --link: a layer made over nothing, stacked on the stage
            snap.init_files = {"/etc/hosts": hosts_file(hostname, self.extra_hosts),
                               "/etc/hostname": f"{hostname}\n".encode(),
                               "/etc/resolv.conf": b""}
        async with snap:
            wd = st.config.get("WorkingDir")
            if wd and not link:
                await anyio.to_thread.run_sync(mkdir_in_root, snap.rootfs, wd)
            ref = flag(ins, "from") if copy else None
            if ref is not None:
                await self._copy_from(st, sd, ins, snap.rootfs, expand_word(
                    ref, st.substitution_env(), ins.escape))
                created_by = f"/bin/sh -c #(nop) {ins.original}"
            elif copy:
                await anyio.to_thread.run_sync(
                    lambda: copy_sources(st, ins, snap.rootfs, self.context, self.ignore,
                                         downloads))
                created_by = f"/bin/sh -c #(nop) {ins.original}"
            else:
                argv = command_form(ins, st.config.get("Shell"))
                if not self.quiet:
                    yield self._msg(f" ---> Running in {hostname}\n")
                async for m in self._run_cmd(st, sd, ins, snap, argv):
                    yield m
                created_by = " ".join(argv)
                if not self.quiet:
                    yield self._msg(f"Removing intermediate container {hostname}\n")
            layer = await snap.diff()
            if layer is None:
                # Nothing changed: no layer, an empty_layer history entry (as BuildKit does).
                # Identical empty layers stacked twice would also be one lower dir twice.
                st.history.append(history_entry(created_by, empty=True))
                await anyio.to_thread.run_sync(self.cache.put, key, "", created_by, True)
                return
            diff_id = await self.host.images.add_layer(layer)
            self._added.append(diff_id)
            st.layers.append(diff_id)
            st.history.append(history_entry(created_by, empty=False))
            await anyio.to_thread.run_sync(self.cache.put, key, diff_id, created_by)
            if not self.quiet:
                yield self._msg(f" ---> {diff_id[:12]}\n")

    async def _run_cmd(self, st: Stage, sd: StageDef, ins: Instruction, snap: Snapshot,
                       argv: list[str]) -> AsyncIterator[dict[str, Any]]:
        """RUN ``argv`` in ``snap`` with the step's mounts (set up on the host and removed
        afterwards, whatever happens); ``RUN --network`` overrides the build's network."""
        mounts = self._mounts(st, ins)
        setup = RunSetup(ins, self.work / snap.id[:12], snap.rootfs, mounts,
                         cache_root=self.host.cache_root, context=self.context,
                         ignore=self.ignore, secrets=self.secrets, ssh=self.ssh,
                         sources=await self._mount_sources(sd, ins, mounts),
                         storage=self.host.storage,
                         note=lambda sid: note_snapshot(self.work, sid))
        try:
            prepared = await anyio.to_thread.run_sync(setup.prepare)
            step = RunStep(id=snap.id, rootfs=snap.rootfs, argv=argv,
                           env=setup.env(st.run_env()), cwd=st.config.get("WorkingDir") or "/",
                           user=st.config.get("User") or "", hostname=snap.id[:12],
                           state_dir=self.work / snap.id[:12], mounts=tuple(prepared),
                           network=setup.network(self.network, self.allow))
            async for m in run_step(self.host, step, self.quiet):
                yield m
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(setup.cleanup)

    # --- COPY --from (the file work itself is in .copyfiles, in a worker thread) ----------
    async def _copy_from(self, st: Stage, sd: StageDef, ins: Instruction, rootfs: Path,
                         ref: str) -> None:
        """``COPY --from=<stage|image>``: the source is a read-only snapshot of that stage's
        (or image's) layers, mounted for the copy and removed afterwards."""
        layers = await self._source_layers(sd, ins, ref)
        async with Snapshot(self.host, self.work, layers, {}) as src:
            await anyio.to_thread.run_sync(copy_sources, st, ins, rootfs, src.rootfs, None)
