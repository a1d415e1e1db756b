"""A container's record under ``--root``: ``<root>/<id>/state.json`` (+ ``exec.fifo`` while
it waits for ``start``), and its OCI status derived from the record and the live process.

Status (runtime-spec "State"): ``creating`` while ``create`` runs, ``created`` while PID 1
waits on the exec FIFO, ``running`` once started (``paused`` when its cgroup is frozen),
``stopped`` once PID 1 is gone. A PID is trusted only together with its start time
(``/proc/PID/stat`` field 22), so a recycled PID never passes for the container.
"""

from __future__ import annotations

import json
import os
import time
TYPE_CHECKING = False                    # not typing's: each call pays its imports
if TYPE_CHECKING:
    from typing import Any

from .errors import StateError

DEFAULT_ROOT = "/run/aiorun-runtime"
ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-")
OCI_VERSION = "1.1.0"


class Record:
    """What ``create`` wrote. A plain class (dataclasses would cost every call its import)."""

    FIELDS = ("id", "bundle", "pid", "pid_start", "created", "annotations", "cgroup_dirs",
              "hooks", "started")

    def __init__(self, id: str, bundle: str, pid: int = 0, pid_start: int = 0,
                 created: str = "", annotations: dict[str, str] | None = None,
                 cgroup_dirs: list[list[Any]] | None = None,
                 hooks: dict[str, list[dict[str, Any]]] | None = None,
                 started: bool = False) -> None:
        self.id = id
        self.bundle = bundle
        self.pid = pid
        self.pid_start = pid_start    # /proc/PID/stat starttime, to tell a recycled PID
        self.created = created        # RFC 3339
        self.annotations = annotations or {}
        self.cgroup_dirs = cgroup_dirs or []      # [version, ctrls, path, parent, own, enable]
        self.hooks = hooks or {}                  # poststart / poststop, as JSON
        self.started = started

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}


def check_id(cid: str) -> str:
    if not cid or len(cid) > 1024 or not cid[0].isalnum() or set(cid) - ID_CHARS:
        raise StateError(f"invalid container id {cid!r}")
    return cid


def container_dir(root: str, cid: str) -> str:
    return os.path.join(root, check_id(cid))


def fifo_path(root: str, cid: str) -> str:
    return os.path.join(container_dir(root, cid), "exec.fifo")


def save(root: str, rec: Record) -> None:
    """Write state.json atomically (a crash never leaves half a record)."""
    d = container_dir(root, rec.id)
    tmp = os.path.join(d, ".state.json.tmp")
    with open(tmp, "w") as f:
        json.dump(rec.to_dict(), f)
    os.replace(tmp, os.path.join(d, "state.json"))


def load(root: str, cid: str) -> Record:
    path = os.path.join(container_dir(root, cid), "state.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise StateError(f"container {cid} does not exist") from None
    except ValueError:
        raise StateError(f"container {cid}: state file {path} is corrupt") from None
    return Record(**{k: v for k, v in data.items() if k in Record.FIELDS})


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names
                  if os.path.exists(os.path.join(root, n, "state.json")))


def proc_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (0 when the process is gone); a zombie counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return 0
    fields_ = text[text.rindex(")") + 2:].split()
    if fields_[0] in ("Z", "X"):
        return 0
    return int(fields_[19])


def alive(rec: Record) -> bool:
    return rec.pid > 0 and proc_start_time(rec.pid) == rec.pid_start


def status(root: str, rec: Record, frozen: bool = False) -> str:
    if not rec.pid:
        return "creating"
    if not alive(rec):
        return "stopped"
    if frozen:
        return "paused"
    if os.path.exists(fifo_path(root, rec.id)):
        return "created"
    return "running"


def rfc3339_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + \
        f".{int((t % 1) * 1e9):09d}Z"


def oci_state(rec: Record, st: str) -> dict[str, Any]:
    """The runtime-spec state object (what ``state`` prints and hooks get on stdin)."""
    out: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": rec.id, "status": st,
                           "bundle": rec.bundle, "annotations": rec.annotations}
    if st != "stopped" and rec.pid:
        out["pid"] = rec.pid
    out["created"] = rec.created
    return out
