"""The manager's own lifecycle: load the records at daemon start and reconcile them with
what the runtime still runs; stop supervising at shutdown; ``system reset``.

A create writes the record (``config.v2.json``) last: at daemon start a directory without
one, or with the ``.creating`` marker of earlier versions, is removed with its storage (a
create interrupted by a crash leaves nothing). A ``.removed-<id>[+v]`` directory is a record
a removal renamed away (its durable step, see remove.py): that removal is finished (network,
storage, volume records, cgroups, the tree; the runtime's process by the stray delete below).
A record of the old layout (state in ``state.json``) is loaded and rewritten in the one-file
layout. Each saved status is then brought in line with the runtime's truth
(``runtime.states()``: running, paused or gone) through the state machine
(:func:`aiorun.core.state.reconcile_events`), every correction logged: a "paused" record of
a running container (a commit that could not save its unpause) becomes running, and the
reverse; containers the runtime still has get a new supervisor; containers that were
running but are gone are marked exited and cleaned (unmount, network detach, cgroup
delete); a record saved as "removing" (by an older daemon) is marked dead and left
removable (Docker's choice), as is a record whose state file was lost; a process the runtime still has for a created/exited
container (a start cut short) is killed; what the runtime still has of a container with
no record (a removal whose runtime delete was cut short) is deleted, cgroups and all.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from aiorun.core import state as st
from aiorun.runtime import cgroups
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers.records import LEGACY_STATE_FILE, RECORD_FILE, TRASH_PREFIX, \
    Container, parse_record
from aiorun.engine.containers.trash import TRASH_VOLUMES
from aiorun.errors import AiorunError, NotFound

log = logging.getLogger("aiorun.containers")


class LifecycleRoom(RoomBase):
    """Daemon start (load + reconcile), shutdown and reset."""

    async def start(self, ref: str | None = None) -> None:
        """Without ``ref``: load state and re-adopt (daemon start). With it: start that
        container (see :meth:`start_container`)."""
        if ref is not None:
            await self.start_container(ref)
            return
        self.home.mkdir(parents=True, exist_ok=True)
        if self.engine.images is not None:
            self.engine.images.in_use = self._image_in_use
        await self._load_and_reconcile()

    async def stop(self, ref: str | None = None, timeout: int | None = None) -> None:
        """Without ``ref``: stop supervising (daemon shutdown); containers keep running and a
        restarted daemon re-adopts them. With it: stop that container."""
        if ref is not None:
            await self.stop_container(ref, timeout)
            return
        self._closing = True
        for scope in list(self._scopes):
            scope.cancel()
        for c in list(self._by_id.values()):
            with anyio.CancelScope(shield=True):
                try:
                    await self._save(c)
                except Exception:
                    log.exception("saving %s failed", c.id)
        # the removed containers' trees still queued: nothing outlives the daemon
        await self._trash.drain()

    async def reset(self) -> None:
        """``aiorun system reset``: kill and remove every container."""
        for c in list(self._by_id.values()):
            try:
                await self.remove(c.id, force=True, volumes=True)
            except AiorunError as exc:
                log.warning("reset: removing %s failed: %s", c.id, exc)

    async def _load_and_reconcile(self) -> None:
        """Bring every saved record in line with the runtime's truth (``runtime.states()``:
        running, paused or gone), through the state machine's transitions
        (:func:`aiorun.core.state.reconcile_events`); each correction is logged."""
        rt = self.engine.runtime
        actual: dict[str, dict[str, Any]] = {}
        asked = False
        if rt is not None:
            try:
                actual = await rt.states()
                asked = True
            except Exception:
                log.exception("runtime.states failed; treating every container as gone")
        await self._load()
        layout: list[cgroups.Hierarchy] | None = None
        # only with the runtime's word that it does not know them: no cgroup of a
        # container it may still run is ever touched
        if asked and any(c.id not in actual for c in self._by_id.values()):
            try:
                layout = await anyio.to_thread.run_sync(cgroups.read_layout)
            except OSError as exc:
                log.warning("cannot read the cgroup layout (%s): no cgroup sweep", exc)
        for c in list(self._by_id.values()):
            await self._reconcile(c, actual.get(c.id), layout)
        if asked:
            await self._delete_strays(actual)

    async def _delete_strays(self, actual: dict[str, dict[str, Any]]) -> None:
        """Delete what the runtime still has of containers this daemon no longer knows: a
        removal whose runtime delete was cut short (the spawner killed while ``rm`` was in
        flight) finishes without it, and the next spawner re-adopts the record and its
        cgroups. The spawner is this daemon's own (one per run dir), and nothing else uses
        the runtime yet (no build runs before the API serves): every container it reports
        that has no record here is a stray. Its delete kills any process left and removes
        its cgroups (exec processes go with their container). A container whose record
        could not be loaded keeps its directory and is never touched."""
        rt = self.engine.runtime
        if rt is None:
            return
        for rid, info in sorted(actual.items()):
            if (info.get("kind") or "container") != "container" or rid in self._by_id \
                    or (self.home / rid).exists():
                continue
            try:
                await rt.delete(rid, force=True)
                log.warning("deleted runtime container %s: the daemon has no record of "
                            "it (e.g. a removal cut short by a crash); its process and "
                            "cgroups are gone", rid)
            except NotFound:
                pass
            except AiorunError as exc:
                log.warning("cannot delete runtime container %s (unknown to the daemon): %s",
                            rid, exc)

    async def _reconcile(self, c: Container, info: dict[str, Any] | None,
                         layout: "list[cgroups.Hierarchy] | None") -> None:
        """One saved record against the runtime's ``state`` of it (None: unknown)."""
        rt = self.engine.runtime
        truth = _truth(info)
        if c.state.paused_by_engine and truth == st.ACTUAL_PAUSED and rt is not None:
            # the daemon died inside a commit's pause: finish what the commit would have
            log.warning("container %s: was paused by a commit the daemon did not finish; "
                        "resuming it", c.id)
            try:
                await rt.resume(c.id)
                truth = st.ACTUAL_RUNNING
            except AiorunError as exc:
                log.warning("container %s: resume failed (%s); it stays paused", c.id, exc)
        if c.state.paused_by_engine and truth != st.ACTUAL_PAUSED:
            c.state.paused_by_engine = False
            await self._save(c)
        if info is None and layout is not None:
            await self._remove_cgroup_leftovers(c, layout)
        saved = c.state.status
        fixes = st.reconcile_events(saved, truth)
        if saved == st.REMOVING:
            # Docker's choice: a removal cut short is shown dead and left to the user
            # (``rm`` works on it); whether the volumes were to go too is not known
            log.warning("container %s: its removal was cut short by a crash; marked "
                        "dead (remove it again)", c.id)
            if info is not None and rt is not None:
                await self._kill_and_delete(c.id)
            await self._cleanup_after_exit(c, runtime=False)
            c.state.to_dead()
            await self._save(c)
        elif c.state.has_process and info is not None:
            if st.PAUSE in fixes:
                log.warning("container %s: saved as running but the runtime has it "
                            "paused; now paused", c.id)
                c.state.to_paused()
            elif st.UNPAUSE in fixes:
                log.warning("container %s: saved as paused but the runtime has it "
                            "running; now running", c.id)
                c.state.to_unpaused()
            if fixes:
                await self._save(c)
            log.info("re-adopting running container %s", c.id)
            c.hub.running.set()
            self._start_pump(c)       # attach works again for re-adopted ones
            self._start_supervisor(c)
        elif c.state.has_process:
            log.warning("container %s: saved as %s but its process was lost while the "
                        "daemon was down; now exited (255)", c.id, saved)
            await self._cleanup_after_exit(c)
            c.state.to_exited(255, error="the container's process was lost while "
                                         "the daemon was down")
            await self._save(c)
            self._emit("die", c, {"exitCode": 255})
            await self._after_exit(c, restart_allowed=True)
        elif c.state.status == st.RESTARTING:
            if info is not None and rt is not None:
                await self._kill_and_delete(c.id)   # a restart cut short mid-start
            c.state.cancel_restart()
            await self._save(c)
            await self._after_exit(c, restart_allowed=True)
        else:
            # created/exited/dead: a start may have been cut short by a crash after the
            # rootfs was mounted, the process made or the network attached: undo it all
            # (every step is idempotent; the runtime only when it knows the id)
            if info is not None and rt is not None:
                if truth != st.ACTUAL_GONE:
                    log.warning("container %s: saved as %s but the runtime still runs "
                                "a process for it; killed", c.id, saved)
                await self._kill_and_delete(c.id)
            await self._cleanup_after_exit(c, runtime=False)
            await self._save(c)

    async def _remove_cgroup_leftovers(self, c: Container,
                                       layout: "list[cgroups.Hierarchy]") -> None:
        """Cgroup directories of a container the runtime does not know: left by a spawner
        killed mid-create before it recorded them (the record now comes first; this also
        covers a record that could not be written, and older leftovers)."""
        parent = c.host_config.get("CgroupParent") or ""
        removed = await anyio.to_thread.run_sync(cgroups.remove_leftovers, c.id,
                                                 parent if isinstance(parent, str) else "",
                                                 layout)
        for path in removed:
            log.warning("removed cgroup %s of container %s (left by a crash)", path, c.id)

    async def _finish_removal(self, d: Path) -> None:
        """A record renamed to its trash name: its removal was under way when the daemon
        died (anywhere from the forced removal's kill on). Finish it: network detach,
        rootfs unmount and storage, volume records (anonymous volumes with ``rm -v``),
        empty cgroups, the tree. What the runtime still runs of it is deleted by
        :meth:`_delete_strays` (no record names it), cgroups and all."""
        cid, volumes = _trash_id(d.name)
        log.warning("finishing the removal of container %s (cut short by a crash)", cid)
        parent = ""
        try:
            cfg = json.loads((d / RECORD_FILE).read_text())
            p = (cfg.get("HostConfig") or {}).get("CgroupParent") or ""
            parent = p if isinstance(p, str) else ""
        except (OSError, ValueError, AttributeError):
            pass
        if self.engine.networks is not None:
            try:
                await self.engine.networks.detach(cid)
            except Exception:
                log.exception("network detach of removed container %s failed", cid)
        await self._discard_storage(cid)
        if self.engine.volumes is not None:
            try:
                await self.engine.volumes.release(cid, remove_anonymous=volumes)
            except Exception:
                log.exception("releasing volumes of removed container %s failed", cid)
        await anyio.to_thread.run_sync(shutil.rmtree, d, True)
        await self._sweep_cgroups(cid, parent)

    async def _load(self) -> None:
        """Read every container directory; remove those a crash left half-created."""
        for d in sorted(self.home.iterdir()) if self.home.is_dir() else []:
            if not d.is_dir():
                continue
            cid = d.name
            if cid.startswith(TRASH_PREFIX):
                await self._finish_removal(d)
                continue
            cfg, stf = d / RECORD_FILE, d / LEGACY_STATE_FILE
            if (d / ".creating").exists() or not cfg.exists():
                log.warning("removing container %s left half-created by a crash", cid)
                await self._discard_storage(cid)
                await anyio.to_thread.run_sync(shutil.rmtree, d, True)
                await self._sweep_cgroups(cid)
                continue
            try:
                disk, state, legacy = parse_record(
                    cfg.read_text(), stf.read_text() if stf.exists() else None)
                c = Container.from_disk(disk, state or {})
            except (ValueError, KeyError, TypeError) as exc:
                log.error("cannot load container %s: %s (skipped)", cid, exc)
                continue
            if state is None:
                # its state was lost (never "created": that would hide a removal or a
                # crash mid-write): dead, and removable
                log.warning("container %s has no saved state; marked dead", cid)
                c.state.to_dead()
            if legacy or stf.exists():
                # the old two-file layout: one record from now on (written before the old
                # state file goes, so a crash in between loses nothing)
                await anyio.to_thread.run_sync(self._migrate_sync, c)
            self._by_id[c.id] = c
            self._names[c.name] = c.id

    def _migrate_sync(self, c: Container) -> None:
        """(worker thread) Rewrite an old-layout record as one file, durably (it is the only
        copy of the state), then remove its ``state.json``."""
        self._save_sync(c, sync=True)
        try:
            (self._dir(c.id) / LEGACY_STATE_FILE).unlink()
        except FileNotFoundError:
            pass
        log.info("container %s: record migrated to the one-file layout", c.id)


def _trash_id(name: str) -> tuple[str, bool]:
    """(container id, ``rm -v``) of a trash name ``.removed-<id>[+v]``."""
    rest = name[len(TRASH_PREFIX):]
    if rest.endswith(TRASH_VOLUMES):
        return rest[:-len(TRASH_VOLUMES)], True
    return rest, False


def _truth(info: dict[str, Any] | None) -> str:
    """The runtime's word on a container's process (its ``state`` dict, None = unknown)."""
    if info is None or not info.get("running"):
        return st.ACTUAL_GONE
    return st.ACTUAL_PAUSED if info.get("paused") else st.ACTUAL_RUNNING
