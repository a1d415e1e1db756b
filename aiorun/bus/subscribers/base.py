"""What every subscriber that ships with aiorun provides (see :mod:`aiorun.bus.subscribers`)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

if TYPE_CHECKING:
    from aiorun.bus.bus import EventBus
    from aiorun.bus.codec import Lost
    from aiorun.core.events import Event


class Subscriber(abc.ABC):
    """One consumer of events, runnable in the daemon or as its own process.

    * :meth:`handle` takes one event or ``Lost`` marker (the process mode feeds it what it
      reads from the bus socket);
    * :meth:`run_plugin` is the in-daemon mode: it follows ``bus`` itself until cancelled;
    * :meth:`serve` is what the subscriber offers besides, in process mode (the metrics
      subscriber's HTTP endpoint), run alongside the feed until cancelled;
    * :meth:`close` releases what the subscriber holds (files), after either mode.
    """

    @abc.abstractmethod
    def handle(self, item: Event | Lost) -> None:
        """Take one event or gap marker."""

    @abc.abstractmethod
    async def run_plugin(self, bus: EventBus, *,
                         task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
                         ) -> None:
        """In the daemon: follow ``bus`` until cancelled (``task_status.started`` once live)."""

    async def serve(self, *, task_status: anyio.abc.TaskStatus[Any] =
                    anyio.TASK_STATUS_IGNORED) -> None:
        """In process mode, serve whatever the subscriber offers besides handling events,
        until cancelled. The default offers nothing: it reports started and returns."""
        task_status.started()

    def close(self) -> None:
        """Release resources; the default holds none."""
