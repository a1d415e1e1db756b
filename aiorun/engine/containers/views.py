"""Read-only views: inspect, list, top and logs (the Docker shapes are in
``aiorun.core.container_views``; reading the log file and ``/proc`` in ``logs.py``)."""

from __future__ import annotations

from typing import Any, AsyncIterator

import anyio.to_thread

from aiorun.core import container_views as views
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers import top as toptable
from aiorun.engine.containers.logs import read_log
from aiorun.engine.containers.records import Container
from aiorun.errors import Conflict


class ViewsRoom(RoomBase):
    """inspect / summary / list / top / logs."""

    def _mounts(self, c: Container) -> list[dict[str, Any]]:
        """The volume manager's live view of the mounts, else what was recorded."""
        if self.engine.volumes is not None:
            return self.engine.volumes.mounts_of(c.id) or c.mounts
        return c.mounts

    def inspect(self, ref: str) -> dict[str, Any]:
        c = self.get(ref)
        d = self._dir(c.id)
        graph: dict[str, Any] = {}
        if self.engine.storage is not None:
            try:
                graph = self.engine.storage.container_metadata(c.id)
            except Exception:
                graph = {}
        files = {"ResolvConfPath": str(d / "resolv.conf"), "HostnamePath": str(d / "hostname"),
                 "HostsPath": str(d / "hosts"), "LogPath": str(self.log_path(c.id))}
        return views.inspect_view(c, files=files, graph=graph, mounts=self._mounts(c),
                                  network_settings=self._current_network_settings(c))

    def summary(self, c: Container) -> dict[str, Any]:
        """One entry of ``GET /containers/json``."""
        return views.summary_view(c, network_settings=self._current_network_settings(c),
                                  mounts=self._mounts(c))

    def list(self, all: bool = False, filters: dict[str, Any] | None = None,
             limit: int | None = None) -> list[dict[str, Any]]:
        out = []
        for c in self.all():
            if not all and not views.listed_by_default(c, filters):
                continue
            if filters and not views.matches(c, filters, self._created_at):
                continue
            out.append(self.summary(c))
            if limit and len(out) >= limit:
                break
        return out

    def _created_at(self, ref: str) -> int:
        return self.get(ref).created_ns

    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        """``docker top`` (``ps_args``: the host ``ps``'s options, see :mod:`.top`)."""
        c = self.get(ref)
        if not c.state.has_process:
            raise Conflict(f"Container {c.id} is not running")
        try:
            pids = list((await self._need_runtime().stats(c.id)).get("pids") or [])
        except Exception:
            pids = []                     # no cgroup to ask: the PID namespace decides
        return await anyio.to_thread.run_sync(toptable.top, c.state.pid, pids, ps_args)

    async def logs(self, ref: str, *, follow: bool = False, stdout: bool = True,
                   stderr: bool = True, tail: int | None = None, since: float = 0,
                   until: float = 0) -> AsyncIterator[tuple[str, str, str]]:
        """Yield ``(stream, text, time)`` from the JSON-lines log; ``follow`` continues
        until the container stops (then returns once the file is drained)."""
        c = self.get(ref)
        return read_log(c, self.log_path(c.id), follow, stdout, stderr, tail, since, until)
