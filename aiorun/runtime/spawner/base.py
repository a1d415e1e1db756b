"""The state every room of the spawner shares, declared once so each room (a mixin of
:class:`aiorun.runtime.spawner.Spawner`) is type-checked on its own.

The rooms call each other through ``self``; the few methods one room uses from another are
declared here (the real ones come first in the Spawner's MRO). Spawner.__init__ fills the
fields.
"""

from __future__ import annotations

import selectors
import socket

from .. import cgroups
from .common import Client, PendingOp, Proc, RequestError

TYPE_CHECKING = False                    # not typing's: the spawner does not import typing
if TYPE_CHECKING:
    from .pool import Member


class SpawnerBase:
    run_dir: str
    idle_exit: float
    _idle_since: float | None
    rec_dir: str                        # <run>/runtime: re-adoption records
    listener: socket.socket
    sel: selectors.BaseSelector
    clients: dict[int, Client]          # socket fd -> client
    procs: dict[str, Proc]              # container and exec ids (one namespace)
    by_pid: dict[int, Proc]             # our children, to reap
    by_fd: dict[int, tuple[str, object]]  # watched fds: ("out" | "stdin" | ..., owner)
    paused: dict[int, Proc]             # output fds not read while clients lag
    waiting: dict[int, PendingOp]       # status fd -> create/start in progress
    creating: dict[str, Proc]           # ids whose create is in progress
    #: exit statuses reaped while creates were in flight, of pids nobody claimed yet
    #: (a C1, or a C2 that died before its pid arrived on the status pipe)
    strays: dict[int, int]
    layout: list[cgroups.Hierarchy]
    stopping: bool
    wake_r: int

    # --- provided by the rooms (see Spawner's bases) -------------------------------------
    def handle(self, m: dict, client: Client | None = None) -> object:
        raise NotImplementedError

    def broadcast(self, msg: dict) -> None:
        raise NotImplementedError

    def _send(self, c: Client, msg: dict) -> None:
        raise NotImplementedError

    def _congested(self) -> bool:
        raise NotImplementedError

    def _unwatch(self, fd: int) -> None:
        raise NotImplementedError

    def _get(self, id: str) -> Proc:
        raise NotImplementedError

    def _save_record(self, p: Proc) -> None:
        raise NotImplementedError

    def _drop_record(self, id: str) -> None:
        raise NotImplementedError

    def _exited(self, p: Proc, code: int) -> None:
        raise NotImplementedError

    def _forget(self, p: Proc) -> None:
        raise NotImplementedError

    def reap(self) -> None:
        raise NotImplementedError

    def delete(self, id: str, force: bool = False) -> dict:
        raise NotImplementedError

    def _stdio(self, p: Proc, tty: bool, stdin: bool) -> tuple[int, int, int, list[int]]:
        raise NotImplementedError

    def _take_pty(self, p: Proc, stdin: bool) -> None:
        raise NotImplementedError

    def _close_fds(self, p: Proc) -> None:
        raise NotImplementedError

    def _flush_stdin(self, p: Proc) -> None:
        raise NotImplementedError

    def _read_output(self, fd: int, p: Proc, drain: bool = False) -> None:
        raise NotImplementedError

    def _complete(self, op: PendingOp, error: RequestError | None = None) -> None:
        raise NotImplementedError

    def _status_io(self, op: PendingOp) -> None:
        raise NotImplementedError

    def _check_timeouts(self) -> None:
        raise NotImplementedError

    def _readopt(self) -> None:
        raise NotImplementedError

    def _thaw(self, c: Proc) -> None:
        raise NotImplementedError

    def _adopted_exit(self, p: Proc) -> None:
        raise NotImplementedError

    def pool_timeout(self, default: float) -> float:
        raise NotImplementedError

    def pool_idle(self, had_events: bool) -> None:
        raise NotImplementedError

    def pool_io(self, m: "Member") -> None:
        raise NotImplementedError

    def pool_reaped(self, pid: int) -> bool:
        raise NotImplementedError

    def pool_drain(self) -> None:
        raise NotImplementedError

    def pool_after_create(self) -> None:
        raise NotImplementedError

    def pool_take(self, spec: dict) -> "Member | None":
        raise NotImplementedError

    def pool_send(self, m: "Member", spec: dict, hier: list, fds: list[int]) -> None:
        raise NotImplementedError

    def pool_kill(self, m: "Member") -> None:
        raise NotImplementedError
