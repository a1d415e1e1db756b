"""What the bench needs from an engine (a peer or aiorun), and shared helpers.

An :class:`Engine` is prepared once (image imported, daemon started), then asked for:

* ``latency_variants()`` – named callables, each doing one complete start of ``true`` with
  ``--rm`` semantics; the harness times them;
* ``start_detached(ids)`` / ``remove_detached(ids)`` – concurrent start-up of ``sleep``
  containers and their teardown;
* ``close()`` – stop everything it started (by PID), remove its temp state.

Engines raise :class:`Unavailable` from ``prepare`` with a reason a user can act on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class Unavailable(Exception):
    """The engine is not installed or cannot run here; the message says why."""


@dataclass
class Variant:
    """One way to start a container once: ``fn`` does a whole start-to-exit-and-removed.

    ``fn`` may return ``{name: ns}`` sub-timings (e.g. "create+start"), summarised too.
    ``network`` ("none" | "bridge" | "host") and ``via`` ("cli" | "api") say which peer
    variants it is compared with.
    """
    label: str
    fn: Callable[[], object]
    network: str
    via: str = "cli"


class Workspace:
    """The bench's scratch directory (short path: unix sockets must stay < 108 bytes)."""

    def __init__(self, root: Path, quick: bool) -> None:
        self.root = root
        self.quick = quick
        self._rootfs: Path | None = None
        self._tar: Path | None = None

    def dir(self, name: str) -> Path:
        p = self.root / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def busybox_tar(self) -> Path:
        """The busybox rootfs tarball every engine imports (same bytes for all)."""
        if self._tar is None:
            from aiorun.testing.images import write_busybox_rootfs_tar
            self._tar = write_busybox_rootfs_tar(self.dir("images") / "busybox.tar")
        return self._tar

    @property
    def busybox_rootfs(self) -> Path:
        """The same rootfs extracted, for the OCI bundles of runc and crun."""
        if self._rootfs is None:
            dest = self.dir("images") / "busybox-rootfs"
            dest.mkdir(exist_ok=True)
            with tarfile.open(self.busybox_tar) as tar:
                tar.extractall(dest, numeric_owner=True)
            self._rootfs = dest
        return self._rootfs


class Engine:
    name = "engine"
    # how the concurrent start is driven ("api" / "cli"), shown in the report
    detached_method = "cli"

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def prepare(self) -> None:
        raise NotImplementedError

    def latency_variants(self) -> list[Variant]:
        return []

    def version(self) -> str:
        return ""

    def prepare_detached(self, ids: list[str]) -> None:
        """Untimed set-up before ``start_detached`` (e.g. one OCI bundle per container)."""

    def start_detached(self, ids: list[str], parallel: int) -> list[str | None]:
        """Start one detached ``sleep`` container per id, all at once (up to ``parallel`` in
        flight). Returns one error message (or None) per id."""
        raise NotImplementedError

    def running(self, ids: list[str]) -> int:
        """How many of ``ids`` are running now."""
        raise NotImplementedError

    def remove_detached(self, ids: list[str], parallel: int) -> list[str | None]:
        raise NotImplementedError

    def start_phases(self, since_ns: int, ids: list[str]) -> dict[str, float]:
        """Median per-phase timings (ms) the engine reports for the starts of ``ids`` since
        ``since_ns`` (wall clock); {} when it reports none."""
        return {}

    def daemon_pids(self) -> list[int]:
        """Long-lived engine processes (empty for daemonless engines)."""
        return []

    def close(self) -> None:
        pass


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 120,
        check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a command quietly; on failure raise RuntimeError quoting its stderr."""
    p = subprocess.run(cmd, env=env, timeout=timeout, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        err = (p.stderr or p.stdout).decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {p.returncode}: "
                           f"{err[-1] if err else ''}")
    return p


def parallel_map(fn: Callable[[str], None], items: list[str], parallel: int) -> list[str | None]:
    """Apply ``fn`` to every item with up to ``parallel`` threads; per-item error or None."""
    def one(x: str) -> str | None:
        try:
            fn(x)
            return None
        except Exception as exc:  # a failure is a measured result, not a crash
            return f"{type(exc).__name__}: {exc}"
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
        return list(pool.map(one, items))


def which(name: str) -> str | None:
    return shutil.which(name)


def env_with(**kv: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(kv)
    return env
