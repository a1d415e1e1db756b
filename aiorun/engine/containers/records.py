"""The records the container rooms share: a container, an exec, the output hub, the exit
waiter and the post-exit teardown marker; and how a record is written to disk.

State is persisted atomically per container in one file, ``<containers>/<id>/config.v2.json``
(write temp + rename), with the state embedded under ``"State"`` as in Docker's own
config.v2.json: one temp file and one rename per save. Records of earlier versions keep the
state in a separate ``state.json``; :func:`parse_record` reads both layouts and says when a
record is of the old one, which the loader then rewrites (see lifecycle.py).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from aiorun.core import state as st
from aiorun.core.atomicfile import write_atomic as _write_atomic
from aiorun.core.container_views import default_network_settings

log = logging.getLogger("aiorun.containers")

#: A removal first renames ``<containers>/<id>`` to ``<containers>/<TRASH_PREFIX><id>``
#: (atomic), then deletes it: a crash mid-delete never leaves a record that loads as a
#: different container (a config without its state looked "Created").
TRASH_PREFIX = ".removed-"

#: The record (config with the state embedded) and the state file of the old layout.
RECORD_FILE = "config.v2.json"
LEGACY_STATE_FILE = "state.json"

SUBSCRIBER_STALL = 30.0      # seconds an attached client may stop reading before it is dropped


def write_atomic(path: Path, data: bytes, sync: bool = False) -> None:
    """Container records through the one atomic write. ``sync`` adds the fsyncs for
    durability across a power loss; the hot path (every state change of a start/exit) goes
    without."""
    _write_atomic(path, data, durable=sync)


def rewrite_in_place(path: Path, data: bytes) -> None:
    """Write + truncate to the new length: the file is bind-mounted into the container, a
    rename would detach it. Not truncated to zero first: on ext4 a truncate to 0 makes the
    close start the file's writeback (``auto_da_alloc``), a disk write on the start path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        off = 0
        while off < len(data):
            off += os.pwrite(fd, view[off:], off)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def record_bytes(disk: dict[str, Any], state: dict[str, Any]) -> bytes:
    """The record file's content: ``disk`` (``Container.to_disk()``) with ``state`` under
    ``"State"``."""
    return json.dumps({**disk, "State": state}).encode()


def parse_record(record: str, legacy_state: str | None) -> tuple[dict[str, Any],
                                                                  dict[str, Any] | None, bool]:
    """Read a record file (and the old layout's ``state.json``, None when there is none).

    Returns ``(disk, state, legacy)``: ``state`` is None when the record has none (its
    state was lost: the caller marks it dead); ``legacy`` is True for a record of the old
    layout (state in ``state.json``), which the caller rewrites in the new one. A state
    embedded in the record always wins: a ``state.json`` next to it is a leftover of a
    migration cut short. Raises ValueError (bad JSON, not an object) or KeyError/TypeError
    (``Container.from_disk`` of the result) on a corrupt record."""
    disk = json.loads(record)
    if not isinstance(disk, dict):
        raise ValueError("the record is not a JSON object")
    state = disk.pop("State", None)
    if state is not None:
        if not isinstance(state, dict):
            raise ValueError("the record's State is not a JSON object")
        return disk, state, False
    if legacy_state is None:
        return disk, None, True
    old = json.loads(legacy_state)
    if not isinstance(old, dict):
        raise ValueError("state.json is not a JSON object")
    return disk, old, True


class OutputHub:
    """Fans a running process's output out to attached clients.

    Subscribers may register before the process starts (``docker run`` attaches first). Each
    gets a bounded memory stream of ``(stream, bytes)``; delivery is lossless: the pump waits
    for a slow subscriber (the runtime keeps buffering meanwhile, and the container's log is
    written by the spawner regardless). A subscriber that went away is dropped. ``None``
    marks the end of the process's output.
    """

    def __init__(self) -> None:
        self._subs: list[MemoryObjectSendStream[Any]] = []
        self.running = anyio.Event()
        #: a pump task feeds this hub and closes it after the process's last output
        self.pumped = False

    def subscribe(self) -> anyio.abc.ObjectReceiveStream[Any]:
        send, recv = anyio.create_memory_object_stream[Any](256)
        self._subs.append(send)
        return recv

    async def publish(self, item: tuple[int, bytes]) -> None:
        for s in list(self._subs):
            try:
                s.send_nowait(item)
            except anyio.WouldBlock:
                # a client that stops reading altogether (or whose hijack never ran) must
                # not hold the others forever
                with anyio.move_on_after(SUBSCRIBER_STALL) as scope:
                    try:
                        await s.send(item)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        self._drop(s)
                if scope.cancelled_caught:
                    log.warning("dropping an attached client that stopped reading")
                    self._drop(s)
                    s.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(s)

    def _drop(self, s: MemoryObjectSendStream[Any]) -> None:
        if s in self._subs:
            self._subs.remove(s)

    def close(self) -> None:
        subs, self._subs = self._subs, []
        for s in subs:
            try:
                s.send_nowait(None)
            except anyio.WouldBlock:
                pass      # full: closing the send side ends the receiver's iteration too
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            s.close()


class Teardown:
    """The supervisor's teardown after one exit: ``local`` = volumes, runtime state and
    rootfs undone; ``net`` = network detached (mostly a kernel wait, so it runs alongside)."""

    def __init__(self) -> None:
        self.local = anyio.Event()
        self.net = anyio.Event()

    async def wait(self) -> None:
        await self.local.wait()
        await self.net.wait()


class ExitWaiter:
    """One "next exit" of a container: an event plus the exit code it ended with."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.code = 0
        self.error = ""

    def fire(self, code: int, error: str = "") -> None:
        self.code, self.error = code, error
        self.event.set()


@dataclass
class Container:
    """A container as the engine knows it. ``config``/``host_config`` are Docker-shaped."""

    id: str
    name: str
    created_ns: int
    image_id: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    path: str
    args: list[str]
    driver: str = ""
    networking_config: dict[str, Any] = field(default_factory=dict)
    network_settings: dict[str, Any] = field(default_factory=default_network_settings)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    state: st.State = field(default_factory=st.State)
    rootfs: str | None = None
    exec_ids: list[str] = field(default_factory=list)
    # -- not persisted ----------------------------------------------------------------
    lock: anyio.Lock = field(default_factory=anyio.Lock, repr=False)
    save_lock: anyio.Lock = field(default_factory=anyio.Lock, repr=False)
    waiter: ExitWaiter = field(default_factory=ExitWaiter, repr=False)
    removed: anyio.Event = field(default_factory=anyio.Event, repr=False)
    hub: OutputHub = field(default_factory=OutputHub, repr=False)
    restart_scope: anyio.CancelScope | None = field(default=None, repr=False)
    supervised: bool = field(default=False, repr=False)
    backoff: float = field(default=0.0, repr=False)
    gone: bool = field(default=False, repr=False)
    # set while the supervisor tears down after an exit (network, volumes, runtime state,
    # rootfs); start and removal wait for it. None = no teardown in progress.
    teardown: "Teardown | None" = field(default=None, repr=False)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def argv(self) -> list[str]:
        return [self.path, *self.args] if self.path else []

    def to_disk(self) -> dict[str, Any]:
        return {"ID": self.id, "Name": self.name, "Created": self.created_ns,
                "Image": self.image_id, "Config": self.config, "HostConfig": self.host_config,
                "Path": self.path, "Args": self.args, "Driver": self.driver,
                "NetworkingConfig": self.networking_config,
                "NetworkSettings": self.network_settings, "Mounts": self.mounts,
                "Rootfs": self.rootfs}

    @classmethod
    def from_disk(cls, d: dict[str, Any], state: dict[str, Any]) -> "Container":
        return cls(id=d["ID"], name=d["Name"], created_ns=int(d["Created"]),
                   image_id=d["Image"], config=d["Config"], host_config=d["HostConfig"],
                   path=d.get("Path", ""), args=list(d.get("Args") or []),
                   driver=d.get("Driver", ""),
                   networking_config=d.get("NetworkingConfig") or {},
                   network_settings=d.get("NetworkSettings") or default_network_settings(),
                   mounts=d.get("Mounts") or [], state=st.State.from_dict(state),
                   rootfs=d.get("Rootfs"))


@dataclass
class ExecRecord:
    id: str
    container_id: str
    argv: list[str]
    env: list[str]
    workdir: str
    user: str
    tty: bool
    privileged: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    #: ``DetachKeys`` as given at create ("" = the default), shown by inspect
    detach_keys: str = ""
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: anyio.Event = field(default_factory=anyio.Event)
    hub: OutputHub = field(default_factory=OutputHub)

    def to_docker(self) -> dict[str, Any]:
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
                "ProcessConfig": {"tty": self.tty, "entrypoint": self.argv[0] if self.argv else "",
                                  "arguments": self.argv[1:], "privileged": self.privileged,
                                  "user": self.user},
                "OpenStdin": self.attach_stdin, "OpenStderr": self.attach_stderr,
                "OpenStdout": self.attach_stdout, "CanRemove": False,
                "ContainerID": self.container_id, "DetachKeys": self.detach_keys,
                "Pid": self.pid}
