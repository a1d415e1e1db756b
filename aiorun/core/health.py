"""Health checks: the ``Healthcheck`` config and the health status state machine (pure).

Docker's rules (moby ``daemon/health.go``):

* the container's ``Config.Healthcheck`` is the create request's merged over the image's
  ``HEALTHCHECK``: an empty ``Test`` takes the image's, a zero duration or retry count the
  image's, then the defaults (interval 30 s, timeout 30 s, start period 0, start interval
  5 s, retries 3); ``Test: ["NONE"]`` switches it off (``--no-healthcheck``);
* ``Test`` is ``["CMD", argv...]`` or ``["CMD-SHELL", "command"]`` (run by ``/bin/sh -c``);
* each start resets the status to ``starting``; a probe exiting 0 makes it ``healthy`` and
  resets ``FailingStreak``; any other result adds one to the streak (not during the start
  period while the container was never healthy) and ``Retries`` failures in a row make it
  ``unhealthy``; a probe that outlives ``Timeout`` counts as a failure (ExitCode -1);
* ``Log`` keeps the last 5 results, each ``Output`` at most 4096 bytes;
* a stopped container's status is ``unhealthy``.

:class:`Health` is that state (persisted in the container's state, shown as
``.State.Health``); :meth:`Health.record` returns the new status when it changed, which the
engine turns into a ``health_status: <status>`` event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiorun.errors import InvalidArgument

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
STATUSES = (STARTING, HEALTHY, UNHEALTHY, NONE)

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MIN_DURATION = 1_000_000              # 1 ms: Docker refuses shorter non-zero durations
MAX_LOG_ENTRIES = 5
MAX_OUTPUT_LEN = 4096

DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


# --------------------------------------------------------------------------- config

def check_healthcheck(hc: Any) -> None:
    """InvalidArgument (Docker's words where it has them) for a bad ``Healthcheck``."""
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise InvalidArgument("invalid Healthcheck: expected an object")
    test = hc.get("Test")
    if test is not None:
        if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
            raise InvalidArgument("invalid Healthcheck.Test: expected an array of strings")
        if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise InvalidArgument(f"invalid Healthcheck.Test: unknown type {test[0]!r} "
                                  "(expected NONE, CMD or CMD-SHELL)")
        if test and test[0] != "NONE" and not any(a.strip() for a in test[1:]):
            raise InvalidArgument("invalid Healthcheck.Test: the health check command is "
                                  "empty")
    for key in DURATIONS:
        v = hc.get(key)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool):
            raise InvalidArgument(f"invalid Healthcheck.{key}: expected an integer (ns)")
        if v != 0 and v < MIN_DURATION:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    retries = hc.get("Retries")
    if retries is not None:
        if not isinstance(retries, int) or isinstance(retries, bool):
            raise InvalidArgument("invalid Healthcheck.Retries: expected an integer")
        if retries < 0:
            raise InvalidArgument("Retries in Healthcheck cannot be negative")


def merge_healthcheck(image_hc: dict[str, Any] | None,
                      create_hc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The container's ``Config.Healthcheck``: the request's over the image's (zero values
    inherit), None when neither has one."""
    if not create_hc:
        return dict(image_hc) if image_hc else None
    if not image_hc:
        return dict(create_hc)
    out = dict(create_hc)
    if not out.get("Test"):
        out["Test"] = list(image_hc.get("Test") or [])
    for key in (*DURATIONS, "Retries"):
        if not out.get(key) and image_hc.get(key):
            out[key] = image_hc[key]
    return out


def probe_argv(hc: dict[str, Any] | None) -> list[str] | None:
    """The probe's argv, or None when the container has no (enabled) health check."""
    test = (hc or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return list(test[1:]) or None


@dataclass
class Timing:
    interval: float
    timeout: float
    start_period: float
    start_interval: float
    retries: int


def timing(hc: dict[str, Any]) -> Timing:
    """Seconds and the retry count, defaults filled in."""
    def d(key: str, default: int) -> float:
        return float((hc.get(key) or default) / SECOND)
    return Timing(d("Interval", DEFAULT_INTERVAL), d("Timeout", DEFAULT_TIMEOUT),
                  d("StartPeriod", DEFAULT_START_PERIOD),
                  d("StartInterval", DEFAULT_START_INTERVAL),
                  int(hc.get("Retries") or DEFAULT_RETRIES))


_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": SECOND,
             "m": 60 * SECOND, "h": 3600 * SECOND}


def parse_duration(value: str, flag: str = "duration") -> int:
    """Go's ``time.ParseDuration`` ("1s", "1m30s", "500ms", "0") → nanoseconds."""
    text = value.strip()
    if text == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: time: '
                              f'invalid duration "{value}"')
    return int(sum(float(n) * _UNITS_NS[u] for n, u in parts))


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` for the timeout message ("30s", "1.5s", "500ms")."""
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    out = f"{s:g}s"
    if m or h:
        out = f"{m}m" + out
    if h:
        out = f"{h}h" + out
    return out


# --------------------------------------------------------------------------- state

@dataclass
class ProbeResult:
    start: str                 # RFC 3339 (nano)
    end: str
    exit_code: int
    output: str

    def to_docker(self) -> dict[str, Any]:
        return {"Start": self.start, "End": self.end, "ExitCode": self.exit_code,
                "Output": self.output[:MAX_OUTPUT_LEN]}


@dataclass
class Health:
    """``.State.Health``, plus the start (``State.started_at``) it belongs to."""

    status: str = STARTING
    failing_streak: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    for_start: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Health":
        d = d or {}
        return cls(status=d.get("Status", STARTING), failing_streak=d.get("FailingStreak", 0),
                   log=list(d.get("Log") or []), for_start=int(d.get("ForStart", 0)))

    def to_dict(self) -> dict[str, Any]:
        """What the container's state file keeps."""
        return {**self.to_docker(), "ForStart": self.for_start}

    def to_docker(self) -> dict[str, Any]:
        return {"Status": self.status, "FailingStreak": self.failing_streak,
                "Log": list(self.log)}

    def start(self, started_at: int) -> None:
        """A (re)start: ``starting`` again, streak and log kept (as Docker's)."""
        self.status = STARTING
        self.failing_streak = 0
        self.for_start = started_at

    def record(self, result: ProbeResult, retries: int, in_start_period: bool) -> str | None:
        """Apply one probe's result; the new status if it changed, else None."""
        old = self.status
        self.log = (self.log + [result.to_docker()])[-MAX_LOG_ENTRIES:]
        if result.exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        elif in_start_period and self.status != HEALTHY:
            pass                          # failures in the start period do not count
        else:
            self.failing_streak += 1
            if self.failing_streak >= max(retries, 1):
                self.status = UNHEALTHY
        return self.status if self.status != old else None

    def stopped(self) -> str | None:
        """The container exited: unhealthy (the new status if it changed)."""
        old, self.status = self.status, UNHEALTHY
        return self.status if self.status != old else None


def status_suffix(health: dict[str, Any] | None) -> str:
    """``docker ps``'s addition to "Up 3 minutes"."""
    if not health:
        return ""
    status = health.get("Status")
    if status == STARTING:
        return " (health: starting)"
    if status in (HEALTHY, UNHEALTHY):
        return f" ({status})"
    return ""


def health_filter(health: dict[str, Any] | None, values: list[str]) -> bool:
    """``ps --filter health=<starting|healthy|unhealthy|none>``."""
    for v in values:
        if v not in STATUSES:
            raise InvalidArgument(f"Unrecognised filter value for health: {v}")
    status = (health or {}).get("Status") or NONE
    return status in values
