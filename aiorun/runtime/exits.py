"""How processes end, as the engine sees it: :class:`ExecFailed`, the exit status the spawner
reports (on the wire and in ``<state_dir>/exit.json``), and signal names for ``kill``.
"""

from __future__ import annotations

import json
import os
import signal as _signal
from pathlib import Path

from ..errors import AiorunError, InvalidArgument
from .spec import ExitStatus


class ExecFailed(AiorunError):
    """The container's (or exec's) command could not be executed.

    ``exit_code`` is 127 (not found) or 126 (not executable / permission / bad user), the
    code Docker reports; ``message`` reads like Docker's (``exec: "x": executable file not
    found in $PATH``). The process has exited with that code; ``wait`` returns it too.
    """

    status = 400

    def __init__(self, message: str, exit_code: int = 126) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def read_exit_status(state_dir: str | os.PathLike[str]) -> ExitStatus | None:
    """The exit status the spawner wrote to ``<state_dir>/exit.json``, or None."""
    try:
        d = json.loads(Path(state_dir, "exit.json").read_text())
    except (OSError, ValueError):
        return None
    return status_from_dict(d)


def status_from_dict(d: dict) -> ExitStatus:
    return ExitStatus(exit_code=int(d.get("exit_code", 255)),
                      oom_killed=bool(d.get("oom_killed", False)),
                      finished_at_ns=int(d.get("finished_at_ns", 0)),
                      error=d.get("error") or "")


def parse_signal(sig: int | str) -> int:
    """15, "15", "TERM", "SIGTERM", "sigterm" → 15; raises InvalidArgument otherwise."""
    if isinstance(sig, int):
        return sig
    s = str(sig).strip().upper()
    if s.isdigit():
        return int(s)
    if not s.startswith("SIG"):
        s = "SIG" + s
    try:
        return int(_signal.Signals[s])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {sig}") from None
