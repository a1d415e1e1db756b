"""Deleting removed containers' trees off the removal's critical path.

A removal first makes everything a user can see go away — the process, its cgroups, the
rootfs mount, the veth, and the record and storage directories *renamed* out of sight (one
atomic rename each) — and answers; the renamed trees are deleted here, in the background,
by one task at a time that takes every tree queued so far in one worker-thread hop (a burst
of ``rm -f`` then costs one thread, not one hop per tree per container).

Nothing outlives the daemon: :meth:`TrashBin.drain` (daemon shutdown) deletes what is
queued and waits for the batch in progress. A daemon killed with trees queued leaves them
under their trash names, which the next start deletes: ``<containers>/.removed-<id>``
(:mod:`aiorun.engine.containers.lifecycle`) and the storage driver's ``*.tmp-*`` siblings
(its ``cleanup()``).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Coroutine

import anyio
import anyio.to_thread

from aiorun.core.faultpoint import fault_point

log = logging.getLogger("aiorun.containers")

#: Suffix of a record's trash name when the removal was ``rm -v`` (anonymous volumes go too):
#: ``<containers>/.removed-<id>+v``.
TRASH_VOLUMES = "+v"

#: How long the deletion waits for a burst of removals to end, at most (seconds), and how
#: often it looks.
DEFER_MAX = 5.0
DEFER_POLL = 0.05

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


def delete_trees(paths: list[Path]) -> None:
    """rmtree each path (a file is unlinked); what is already gone is fine. Never raises:
    a tree that cannot be deleted is logged and left to the next start's sweep."""
    fault_point("rm.trash")
    for p in paths:
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                os.unlink(p)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot delete %s: %s", p, exc)


class TrashBin:
    """A queue of trees to delete, served by at most one background task (see the module
    docstring). ``spawn`` runs a coroutine function in the daemon's task group."""

    def __init__(self, spawn: Spawn, in_flight: Callable[[], bool] = lambda: False) -> None:
        self._spawn = spawn
        self._in_flight = in_flight
        self._pending: list[Path] = []
        self._busy = False          # a runner task exists
        self._deleting = 0          # batches being deleted in a worker thread

    @property
    def pending(self) -> int:
        """Trees queued, plus one per batch being deleted (a test and shutdown hook)."""
        return len(self._pending) + self._deleting

    def put(self, path: Path) -> None:
        """Queue ``path`` (already renamed to its trash name) for deletion."""
        self._pending.append(path)
        if not self._busy:
            self._busy = True
            try:
                self._spawn(self._run)
            except BaseException:
                self._busy = False
                raise

    async def _run(self) -> None:
        try:
            # Wait (bounded) until no removal is in flight: each block a delete frees costs
            # a synchronous discard on some disks (ext4 without a journal, mounted with
            # ``discard``: 0.2-0.9 ms per file or directory), and a removal's own few
            # unlinks would queue behind a tree's dozens.
            with anyio.move_on_after(DEFER_MAX):
                while self._in_flight() and self._pending:
                    await anyio.sleep(DEFER_POLL)
            while self._pending:
                batch, self._pending = self._pending, []
                # shielded: a batch once taken is finished even when the daemon's task
                # group is cancelled (drain waits for it)
                with anyio.CancelScope(shield=True):
                    self._deleting += 1
                    try:
                        await anyio.to_thread.run_sync(delete_trees, batch)
                    finally:
                        self._deleting -= 1
        finally:
            self._busy = False

    async def drain(self) -> None:
        """Delete everything queued and wait for the batches in progress (daemon shutdown;
        a runner still deferring finds nothing left)."""
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(60):
                while self._pending or self._deleting:
                    if not self._pending:
                        await anyio.sleep(0.01)
                        continue
                    batch, self._pending = self._pending, []
                    self._deleting += 1
                    try:
                        await anyio.to_thread.run_sync(delete_trees, batch)
                    finally:
                        self._deleting -= 1
