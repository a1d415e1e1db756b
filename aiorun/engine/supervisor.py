"""Contain failures: no single task's failure ends the daemon.

The daemon runs everything in one root task group, and an anyio task group ends as soon as
one of its tasks raises. That is right for start-up (a daemon is either fully up or not up)
and wrong afterwards: a DNS relay, an event subscriber, one container's supervisor or one
API connection must never take the other containers' daemon down with it.

:class:`Supervisor` is the one place that decides what a failure costs, the way a supervisor
tree does:

* :meth:`Supervisor.start_service` — a long-lived service (the API server, the event bus
  socket, a network's DNS server). Its *first* start failing propagates (nothing is up yet);
  a later failure is logged, counted, reported as a ``daemon service-failed`` event and in
  :meth:`Supervisor.health` (``aiorun info``), and the service is started again after an
  exponential backoff (reset once it has run for a while).
* :meth:`Supervisor.spawn` — a one-shot task (a container's supervisor, a teardown): its
  failure is logged, counted per kind and reported; nothing is restarted.

Cancellation is never caught: stopping the daemon still stops everything.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Coroutine

import anyio
import anyio.abc

if TYPE_CHECKING:
    from aiorun.core.interfaces import EventSink

log = logging.getLogger("aiorun.supervisor")

#: First and longest wait before a failed service is started again (seconds).
MIN_BACKOFF, MAX_BACKOFF = 0.1, 30.0
#: A service that ran this long before failing starts again after MIN_BACKOFF.
HEALTHY_AFTER = 60.0


@dataclass
class ServiceHealth:
    """What ``aiorun info`` shows of one service."""

    status: str = "starting"        # starting | running | restarting
    failures: int = 0
    last_error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"Status": self.status, "Failures": self.failures, "LastError": self.last_error}


class Supervisor:
    """Runs service and one-shot tasks in ``task_group`` with failures contained."""

    def __init__(self, task_group: anyio.abc.TaskGroup, events: EventSink | None = None, *,
                 min_backoff: float = MIN_BACKOFF, max_backoff: float = MAX_BACKOFF) -> None:
        self._tg = task_group
        self._events = events
        self._min, self._max = min_backoff, max_backoff
        self._services: dict[str, ServiceHealth] = {}
        #: failures of one-shot tasks, by kind
        self._task_failures: dict[str, int] = {}

    # -- services ----------------------------------------------------------------------------
    async def start_service(self, name: str, fn: Callable[..., Coroutine[Any, Any, Any]],
                            *args: Any) -> None:
        """Start ``fn(*args, task_status=...)`` and return once it has called
        ``task_status.started()``; keep it running until the task group is cancelled.

        Raises what the first start raises. ``name`` must be unique among services."""
        if name in self._services:
            raise ValueError(f"service {name!r} is already supervised")
        self._services[name] = ServiceHealth()
        try:
            await self._tg.start(self._keep_running, name, fn, args)
        except BaseException:
            del self._services[name]
            raise

    async def _keep_running(self, name: str, fn: Callable[..., Coroutine[Any, Any, Any]],
                            args: tuple[Any, ...], *,
                            task_status: anyio.abc.TaskStatus[None]) -> None:
        health = self._services[name]
        delay, first = self._min, True
        while True:
            began = time.monotonic()
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(partial(fn, *args))
                    health.status = "running"
                    if first:
                        first = False
                        task_status.started()
            except Exception as exc:
                if first:  # nothing is up yet: the caller's start fails with the real error
                    raise _leaf(exc) from None
                error = _describe(exc)
                if time.monotonic() - began >= HEALTHY_AFTER:
                    delay = self._min
                health.status, health.last_error = "restarting", error
                health.failures += 1
                log.error("service %s failed (%s); starting it again in %.1f s", name, error,
                          delay, exc_info=exc)
                self._report("service-failed", name, {"error": error,
                                                      "failures": health.failures})
                await anyio.sleep(delay)
                delay = min(delay * 2, self._max)
                continue
            # Returned by itself (e.g. a network's name server after its network went away):
            # nothing to restart, and the name may be supervised again later.
            del self._services[name]
            return

    # -- one-shot tasks ----------------------------------------------------------------------
    def spawn(self, kind: str, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the task group; an exception is logged and counted under
        ``kind``, never propagated."""
        self._tg.start_soon(self._guard, kind, fn, args)

    async def _guard(self, kind: str, fn: Callable[..., Coroutine[Any, Any, Any]],
                     args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            error = _describe(exc)
            self._task_failures[kind] = self._task_failures.get(kind, 0) + 1
            log.error("%s task failed: %s", kind, error, exc_info=exc)
            self._report("task-failed", kind, {"error": error})

    # -- reporting ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``{"Services": {name: {...}}, "TaskFailures": {kind: count}}``."""
        return {"Services": {n: h.to_json() for n, h in sorted(self._services.items())},
                "TaskFailures": dict(sorted(self._task_failures.items()))}

    def _report(self, action: str, name: str, attrs: dict[str, object]) -> None:
        if self._events is None:
            return
        try:
            self._events.emit("daemon", action, name, {"name": name, **attrs})
        except Exception:  # reporting a failure must not become one
            log.exception("could not report %s of %s", action, name)


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """One line for a failure."""
    leaf = _leaf(exc)
    return f"{type(leaf).__name__}: {leaf}"
