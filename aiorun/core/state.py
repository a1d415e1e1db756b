"""The container lifecycle as a pure state machine, and Docker's ways of describing it.

Statuses (Docker's ``State.Status`` strings)::

    created ──start──> running ──exit──> exited ──start──> running
       │                 │  ▲               │
       │               pause│unpause        └──restart policy──> restarting ──> running
       │                 ▼  │
       │               paused
       └──────────────> removing ──> (gone)          any ──> dead (cleanup failed)

    (``rm -f`` may start removing from running/paused: see :data:`TABLE`)

:data:`TABLE` (status, event) -> new status is the single place that says what is legal, and
:class:`State`'s ``to_*`` methods are the only writers of ``status``: an illegal request
(start a running container, pause a paused one) becomes a :class:`~aiorun.errors.Conflict`.
The engine asks predicates derived from the table (``can_start()``, ``has_process``...)
instead of listing statuses.

Times are kept as integer nanoseconds since the epoch (0 = never) and rendered as Docker's
RFC3339Nano strings (``0001-01-01T00:00:00Z`` for "never").
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

from aiorun.core.health import status_suffix
from aiorun.core.timefmt import ZERO_TIME, rfc3339nano  # noqa: F401 (ZERO_TIME re-exported)
from aiorun.errors import Conflict

CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
RESTARTING = "restarting"
REMOVING = "removing"
EXITED = "exited"
DEAD = "dead"

STATUSES = (CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD)

# Lifecycle events: what happened (or what the engine is about to do) to a container.
START = "start"                 # its process was started
PAUSE = "pause"
UNPAUSE = "unpause"
EXIT = "exit"                   # its process ended (or was found gone)
SCHEDULE_RESTART = "schedule_restart"   # the restart policy will start it again
CANCEL_RESTART = "cancel_restart"       # a pending restart was given up (stop, failure)
REMOVE = "remove"               # removal of a container without a process
FORCE_REMOVE = "force_remove"   # forced removal: the kill may not have ended it in time
FAIL = "fail"                   # cleanup failed: the container is dead

EVENTS = (START, PAUSE, UNPAUSE, EXIT, SCHEDULE_RESTART, CANCEL_RESTART, REMOVE, FORCE_REMOVE,
          FAIL)

#: (status, event) -> new status. The one table of legal steps: a pair not in it is illegal.
TABLE: dict[tuple[str, str], str] = {
    (CREATED, START): RUNNING,
    (EXITED, START): RUNNING,
    (RESTARTING, START): RUNNING,
    (RUNNING, PAUSE): PAUSED,
    (PAUSED, UNPAUSE): RUNNING,
    (RUNNING, EXIT): EXITED,
    (PAUSED, EXIT): EXITED,
    (RESTARTING, EXIT): EXITED,
    (EXITED, SCHEDULE_RESTART): RESTARTING,
    (RESTARTING, CANCEL_RESTART): EXITED,
    (CREATED, REMOVE): REMOVING,
    (EXITED, REMOVE): REMOVING,
    (RESTARTING, REMOVE): REMOVING,
    (DEAD, REMOVE): REMOVING,
    # ``rm -f``: SIGKILL, then up to 30 s for the exit; a process that outlives that wait
    # (stuck in the kernel) is removed anyway, so removal starts from running/paused too
    (RUNNING, FORCE_REMOVE): REMOVING,
    (PAUSED, FORCE_REMOVE): REMOVING,
    (CREATED, FORCE_REMOVE): REMOVING,
    (EXITED, FORCE_REMOVE): REMOVING,
    (RESTARTING, FORCE_REMOVE): REMOVING,
    (DEAD, FORCE_REMOVE): REMOVING,
    **{(s, FAIL): DEAD for s in STATUSES if s != DEAD},
}

#: status -> statuses it may move to (derived from :data:`TABLE`).
TRANSITIONS: dict[str, frozenset[str]] = {
    s: frozenset(new for (old, _e), new in TABLE.items() if old == s) for s in STATUSES}

#: Statuses in which the container has a process (it can be signalled, exec'd, inspected).
WITH_PROCESS = frozenset({RUNNING, PAUSED})
#: Docker's ``State.Running``: true while running, paused or restarting.
UP = WITH_PROCESS | {RESTARTING}

#: What the runtime says of a container's process when the daemon starts (its truth).
ACTUAL_RUNNING = "running"
ACTUAL_PAUSED = "paused"
ACTUAL_GONE = "gone"
ACTUALS = (ACTUAL_RUNNING, ACTUAL_PAUSED, ACTUAL_GONE)


def reconcile_events(saved: str, actual: str) -> tuple[str, ...]:
    """The lifecycle events that bring a saved status in line with the runtime's truth at
    daemon start (empty: they agree). A save that failed after the runtime acted (a commit
    unfreezing a container on a full disk) leaves "paused" on disk while it runs; a removal
    cut short by a crash is shown dead and removable, as Docker does (it cannot know whether
    the volumes were to go too). A process the runtime still has for a container whose
    status says it has none is killed by the caller, not recorded."""
    if saved == REMOVING:
        return (FAIL,)
    if saved in WITH_PROCESS:
        if actual == ACTUAL_GONE:
            return (EXIT,)
        if saved == RUNNING and actual == ACTUAL_PAUSED:
            return (PAUSE,)
        if saved == PAUSED and actual == ACTUAL_RUNNING:
            return (UNPAUSE,)
    return ()


def next_status(current: str, event: str, what: str = "container") -> str:
    """The status ``event`` moves ``current`` to; Conflict if the table forbids it."""
    new = TABLE.get((current, event))
    if new is None:
        raise Conflict(f"cannot {event.replace('_', ' ')} {what}: it is {current!r}")
    return new


def check_transition(current: str, new: str, what: str = "container") -> None:
    """Raise Conflict unless some event moves ``current`` to ``new``."""
    if new not in TRANSITIONS.get(current, frozenset()):
        raise Conflict(f"cannot move {what} from {current!r} to {new!r}")


def can_transition(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def rfc3339(ns: int) -> str:
    """Docker's RFC3339Nano rendering: :func:`aiorun.core.timefmt.rfc3339nano`."""
    return rfc3339nano(ns)


def parse_rfc3339(s: str) -> int:
    """Inverse of :func:`rfc3339`; also accepts offsets like ``+00:00``. 0 for the zero time."""
    if not s or s.startswith("0001-01-01"):
        return 0
    s = s.strip()
    main, frac, tz = s, "", "Z"
    if s.endswith("Z"):
        main = s[:-1]
    elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
        main, tz = s[:-6], s[-6:]
    if "." in main:
        main, frac = main.split(".", 1)
    dt = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    secs = int(dt.timestamp())
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        hh, mm = int(tz[1:3]), int(tz[4:6])
        secs -= sign * (hh * 3600 + mm * 60)
    return secs * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``: what ``docker ps`` prints in CREATED and STATUS."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(round(seconds / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"


@dataclass
class State:
    """A container's runtime state, persisted as ``state.json``."""

    status: str = CREATED
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: int = 0          # ns since epoch, 0 = never
    finished_at: int = 0
    restart_count: int = 0
    #: set by an explicit stop/kill from the user: the restart policy must not restart it
    #: (and ``unless-stopped`` remembers it across daemon restarts).
    stopped_by_user: bool = False
    #: paused by the engine itself for a moment (a commit's diff), not by the user: a daemon
    #: restarted after dying in that moment resumes the container instead of leaving it
    #: paused.
    paused_by_engine: bool = False
    #: ``.State.Health`` of a container with a health check (``aiorun.core.health.Health``
    #: as a dict), None without one
    health: dict[str, Any] | None = None

    # -- transitions: every status change goes through :meth:`_apply` ------------------
    def _apply(self, event: str) -> None:
        self.status = next_status(self.status, event)

    def can(self, event: str) -> bool:
        return (self.status, event) in TABLE

    def can_start(self) -> bool:
        return self.can(START)

    def can_pause(self) -> bool:
        return self.can(PAUSE)

    def can_exit(self) -> bool:
        return self.can(EXIT)

    def to_running(self, pid: int, now_ns: int | None = None) -> None:
        self._apply(START)
        self.pid = pid
        self.exit_code = 0
        self.oom_killed = False
        self.error = ""
        self.started_at = now_ns or time.time_ns()
        self.stopped_by_user = False

    def to_exited(self, exit_code: int, oom_killed: bool = False, error: str = "",
                  now_ns: int | None = None) -> None:
        self._apply(EXIT)
        self.pid = 0
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.error = error
        self.finished_at = now_ns or time.time_ns()

    def to_paused(self) -> None:
        self._apply(PAUSE)

    def to_unpaused(self) -> None:
        self._apply(UNPAUSE)

    def to_restarting(self) -> None:
        self._apply(SCHEDULE_RESTART)

    def cancel_restart(self) -> None:
        """A scheduled restart was given up: exited again, the last exit's code kept."""
        self._apply(CANCEL_RESTART)

    def to_removing(self, force: bool = False) -> None:
        self._apply(FORCE_REMOVE if force else REMOVE)

    def to_dead(self) -> None:
        self._apply(FAIL)

    def record_start_failure(self, exit_code: int, error: str) -> None:
        """A start failed before the process ran: the status stays, the error is shown."""
        self.exit_code = exit_code
        self.error = error

    @property
    def has_process(self) -> bool:
        """Running or paused: there is a process to signal, exec into or inspect."""
        return self.status in WITH_PROCESS

    @property
    def running(self) -> bool:
        """Docker's ``State.Running``: running, paused or restarting."""
        return self.status in UP

    # -- rendering -----------------------------------------------------------------
    def to_docker(self) -> dict[str, Any]:
        """Docker's ``State`` object for inspect."""
        return {
            "Status": self.status,
            "Running": self.running,
            "Paused": self.status == PAUSED,
            "Restarting": self.status == RESTARTING,
            "OOMKilled": self.oom_killed,
            "Dead": self.status == DEAD,
            "Pid": self.pid,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": rfc3339(self.started_at),
            "FinishedAt": rfc3339(self.finished_at),
            **({"Health": {k: v for k, v in self.health.items() if k != "ForStart"}}
               if self.health is not None else {}),
        }

    def describe(self, now_ns: int | None = None) -> str:
        """``docker ps``'s STATUS column: "Up 3 minutes", "Exited (0) 2 seconds ago"..."""
        now = now_ns or time.time_ns()
        if self.has_process:
            up = human_duration((now - self.started_at) / 1e9)
            if self.status == PAUSED:
                return f"Up {up} (Paused)"
            return f"Up {up}{status_suffix(self.health)}"
        if self.status == RESTARTING:
            ago = human_duration((now - self.finished_at) / 1e9)
            return f"Restarting ({self.exit_code}) {ago} ago"
        if self.status == REMOVING:
            return "Removal In Progress"
        if self.status == DEAD:
            return "Dead"
        if not self.started_at or self.status == CREATED:
            return "Created"
        if not self.finished_at:
            return ""
        ago = human_duration((now - self.finished_at) / 1e9)
        return f"Exited ({self.exit_code}) {ago} ago"

    # -- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "State":
        names = {f.name for f in fields(cls)}
        st = cls(**{k: v for k, v in d.items() if k in names})
        if st.status not in STATUSES:
            st.status = DEAD
        return st


def created_ago(created_ns: int, now_ns: int | None = None) -> str:
    """``docker ps``'s CREATED column: "2 minutes ago"."""
    now = now_ns or time.time_ns()
    return human_duration((now - created_ns) / 1e9) + " ago"
