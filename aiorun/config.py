"""Where aiorun keeps its state.

Two roots: the persistent state root (``/var/lib/aiorun``; ``--root`` / ``AIORUN_ROOT``) and the
runtime root for sockets and pid files (``/run/aiorun``; ``--run-root`` / ``AIORUN_RUN``).
Tests point both at temporary directories so they never touch a user's state.

Layout under the state root::

    images/       image store: configs by digest, repositories.json (tags)
    storage/NAME/ one directory per storage driver (layers, container rw/init layers)
    containers/ID/ container record (config.v2.json: config + state), log, hosts, ...
    volumes/NAME/_data
    networks/     network configs and IPAM allocations
    events/       the event journal
    tmp/          scratch space on the same filesystem, for atomic renames
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "/var/lib/aiorun"
DEFAULT_RUN = "/run/aiorun"


@dataclass(frozen=True)
class Paths:
    root: Path
    run: Path

    @classmethod
    def from_env(cls, root: str | os.PathLike[str] | None = None,
                 run: str | os.PathLike[str] | None = None) -> "Paths":
        """Explicit arguments win, then AIORUN_ROOT / AIORUN_RUN, then the defaults."""
        return cls(
            root=Path(root or os.environ.get("AIORUN_ROOT") or DEFAULT_ROOT).absolute(),
            run=Path(run or os.environ.get("AIORUN_RUN") or DEFAULT_RUN).absolute(),
        )

    # --- persistent state -------------------------------------------------------------
    @property
    def images(self) -> Path:
        return self.root / "images"

    def storage(self, driver: str) -> Path:
        return self.root / "storage" / driver

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def networks(self) -> Path:
        return self.root / "networks"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def daemon_log(self) -> Path:
        return self.root / "daemon.log"

    # --- runtime files ----------------------------------------------------------------
    @property
    def socket(self) -> Path:
        """The Docker-shaped HTTP API socket."""
        return Path(os.environ.get("AIORUN_SOCKET") or self.run / "aiorun.sock")

    @property
    def bus_socket(self) -> Path:
        """The msgpack event bus socket."""
        return self.run / "events.sock"

    @property
    def spawner_socket(self) -> Path:
        return self.run / "spawner.sock"

    @property
    def pidfile(self) -> Path:
        return self.run / "aiorun.pid"

    def ensure(self) -> None:
        for p in (self.root, self.run, self.images, self.containers, self.volumes,
                  self.networks, self.events, self.tmp):
            p.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run, 0o700)
