"""The container manager: create, start, supervise, stop and remove containers; exec records.

``ContainerManager`` (the engine's ``containers``; public methods follow docs/contracts.md)
is composed of rooms with one job each, all sharing the records and helpers of
:mod:`.base`:

=================  ==============================================================
``records``        Container / ExecRecord records, output hub, waiters, disk writes
``base``           shared state, lookup, persistence, events; the seams between rooms
``lifecycle``      daemon start (load + reconcile with the runtime), shutdown, reset
``create``         ``create``
``start``          the start sequence with its undo stack
``network``        every network-mode decision (none / host / container: / networks)
``supervise``      exit handling, teardown, restart policy
``verbs``          stop, kill, restart, update, pause, unpause, wait, rename
``remove``         remove, prune
``exec``           exec, resize, stdin
``views``          inspect, list, top, logs (``logs`` reads the files, ``/proc``)
=================  ==============================================================

Pure pieces live in ``aiorun.core``: the lifecycle table (``state``), HostConfig → limits
(``host_config``), /etc file texts (``etc_files``) and the Docker-shaped views
(``container_views``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiorun.core.container_views import default_network_settings
from aiorun.core.host_config import DEFAULT_PATH
from aiorun.engine.containers.create import CreateRoom, validate_mounts_and_ports
from aiorun.engine.containers.exec import ExecRoom
from aiorun.engine.containers.lifecycle import LifecycleRoom
from aiorun.engine.containers.logs import _tail_offset, read_log, top_of_pid
from aiorun.engine.containers.records import Container, ExecRecord, ExitWaiter, OutputHub, \
    Teardown, rewrite_in_place, write_atomic
from aiorun.engine.containers.remove import RemoveRoom
from aiorun.engine.containers.start import StartRoom, exit_code_for_start_error, \
    start_timings
from aiorun.engine.containers.supervise import BACKOFF_MAX, BACKOFF_RESET_AFTER, \
    BACKOFF_START, SuperviseRoom
from aiorun.engine.containers.verbs import DEFAULT_STOP_TIMEOUT, VerbsRoom
from aiorun.engine.containers.views import ViewsRoom

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.daemon import Engine

__all__ = ["ContainerManager", "Container", "ExecRecord", "ExitWaiter", "OutputHub",
           "Teardown", "default_network_settings", "exit_code_for_start_error",
           "start_timings", "validate_mounts_and_ports", "write_atomic", "rewrite_in_place",
           "read_log", "top_of_pid", "_tail_offset", "DEFAULT_PATH", "DEFAULT_STOP_TIMEOUT",
           "BACKOFF_START", "BACKOFF_MAX", "BACKOFF_RESET_AFTER"]


class ContainerManager(LifecycleRoom, CreateRoom, StartRoom, SuperviseRoom, VerbsRoom,
                       RemoveRoom, ExecRoom, ViewsRoom):
    """See the package docstring. Each base is one room; they share :class:`RoomBase`."""

    def __init__(self, engine: "Engine") -> None:
        super().__init__(engine)
